// The control plane's /metrics, as a Prometheus scrape sees it, while a real Envoy connects, receives a config change
// and rejects a bad one: connected proxies by mode and role, pushes by type, convergence (istiod's
// pilot_proxy_convergence_time), translation time, NACKs by type (with the reason in proxy-status), config errors by
// kind. test/observability/prometheus.test.ts asks the same of a real Prometheus.
import { createServer } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { age, statusTable } from "../../control/cli/proxy-status.js";
import type { StreamStatus } from "../../control/xds/streams.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { metricValue, parseMetrics, type Sample } from "../harness/metrics-text.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

/** A second Gateway server on a port another process holds: valid configuration that Envoy refuses when it cannot
 * bind the listener, the NACK that no validation before the push can rule out. */
function gatewayOnTakenPort(port: number): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: taken, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: http-taken, protocol: HTTP }
    hosts: ["taken.example.com"]
`;
}

/** Holds a port on 127.0.0.1, as another program would. */
async function holdPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as { port: number }).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describeE2E("control plane metrics at /metrics", () => {
  let blue: Upstream;
  let mesh: Mesh;
  let gatewayPort: number;
  let servicePort: number;
  const scrape = async (): Promise<Sample[]> => parseMetrics(await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/metrics`)).text());
  const status = async () => (await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/status`)).json()) as StreamStatus[];

  beforeAll(async () => {
    blue = await startUpstream({ name: "blue" });
    gatewayPort = await freePort();
    servicePort = await freePort();
    mesh = await startMesh(
      { "gateway.yaml": gatewayRoute(gatewayPort, "catalog.example.com", "catalog"), "services.yaml": serviceEntry("catalog", servicePort, { v1: blue.port }) },
      GATEWAY,
      { controlPlane: { envoyPath: false } },
    );
    await eventually(async () => expect((await send(gatewayPort, { headers: { host: "catalog.example.com" } })).status).toBe(200));
  });

  afterAll(async () => {
    await mesh?.stop();
    await blue?.stop();
  });

  it("serves Prometheus text with the connected proxy by mode and role, and pushes by type", async () => {
    const response = await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/metrics`);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = parseMetrics(await response.text());
    expect(metricValue(samples, "pilot_xds", { mode: "sotw", role: "gateway" })).toBe(1);
    for (const type of ["cds", "eds", "lds", "rds"]) expect(metricValue(samples, "pilot_xds_pushes", { type })).toBeGreaterThanOrEqual(1);
    expect(metricValue(samples, "pilot_xds_push_time_count", { type: "lds" })).toBe(metricValue(samples, "pilot_xds_pushes", { type: "lds" }));
    expect(metricValue(samples, "skiff_translation_seconds_count", { role: "gateway" })).toBeGreaterThanOrEqual(1);
    expect(metricValue(samples, "pilot_services")).toBe(1);
    expect(metricValue(samples, "skiff_config_errors")).toBe(0);
  });

  it("measures convergence from a config change to the proxy's ACK of everything", async () => {
    await expect.poll(async () => metricValue(await scrape(), "pilot_proxy_convergence_time_count")).toBeGreaterThanOrEqual(1);
    const before = await scrape();
    mesh.write("services.yaml", serviceEntry("catalog", servicePort, { v1: blue.port, v2: blue.port }));
    await expect.poll(async () => metricValue(await scrape(), "pilot_proxy_convergence_time_count"), { timeout: 15_000 }).toBe(
      metricValue(before, "pilot_proxy_convergence_time_count") + 1,
    );
    const after = await scrape();
    const seconds = metricValue(after, "pilot_proxy_convergence_time_sum") - metricValue(before, "pilot_proxy_convergence_time_sum");
    // At least istiod's 100 ms debounce (the clock starts at the file event), and well under the 10 s maximum.
    expect(seconds).toBeGreaterThanOrEqual(0.1);
    expect(seconds).toBeLessThan(10);
    expect(metricValue(after, "pilot_debounce_time_count")).toBeGreaterThanOrEqual(2);
    expect(metricValue(after, "pilot_xds_pushes", { type: "eds" })).toBeGreaterThan(metricValue(before, "pilot_xds_pushes", { type: "eds" }));
  });

  it("counts a NACK by type, logs Envoy's reason, and shows it in proxy-status with its age", async () => {
    expect(metricValue(await scrape(), "pilot_total_xds_rejects")).toBe(0);
    const taken = await holdPort();
    try {
      mesh.write("taken.yaml", gatewayOnTakenPort(taken.port));
      await expect.poll(async () => metricValue(await scrape(), "pilot_total_xds_rejects", { type: "lds" }), { timeout: 15_000 }).toBeGreaterThanOrEqual(1);
      expect(mesh.log.some((line) => /ingressgateway: NACK Listener .*(cannot bind|Address already in use)/.test(line))).toBe(true);
      const [proxy] = await status();
      expect(proxy.types.Listener).toMatchObject({ status: "ERROR" });
      expect(proxy.types.Listener?.nackedAt).toBeDefined();
      const table = statusTable([proxy]);
      expect(table).toMatch(/ingressgateway LDS rejected version \w+ \d+s ago: .*(cannot bind|Address already in use)/);
      expect(table).toMatch(/ingressgateway\s+gateway\s+sotw\s+[0-9a-f]{16}\s+.*ERROR.*\d+s ago$/m);
      // The gateway keeps serving with its last good listeners.
      expect((await send(gatewayPort, { headers: { host: "catalog.example.com" } })).status).toBe(200);
    } finally {
      mesh.write("taken.yaml", "");
      await taken.close();
    }
  });

  it("counts config errors by kind while a file is invalid", async () => {
    mesh.write("bad-vs.yaml", "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: { name: bad, namespace: shop }\nspec:\n  hosts: [x]\n  http: [{ route: [{ destination: { host: x }, weight: 50 }] }]\n  bogus: 1\n");
    await expect.poll(async () => metricValue(await scrape(), "skiff_config_errors", { kind: "VirtualService" }), { timeout: 15_000 }).toBeGreaterThanOrEqual(1);
    mesh.write("bad-vs.yaml", "");
    await expect.poll(async () => metricValue(await scrape(), "skiff_config_errors", { kind: "VirtualService" }), { timeout: 15_000 }).toBe(0);
  });

  it("prints ages as istioctl does", () => {
    expect([age(4_200), age(192_000), age(7_500_000), age(3 * 86_400_000 + 4 * 3_600_000)]).toEqual(["4s", "3m12s", "2h5m", "3d4h"]);
  });
});
