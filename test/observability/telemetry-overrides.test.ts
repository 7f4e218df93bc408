// Telemetry overrides in a real Envoy, configured only by the control plane: a gateway (a client, in Istio's terms)
// in front of catalog, reporting spans by Zipkin to a real Jaeger. A metric disabled by a Telemetry override is absent
// from /stats/prometheus while Istio's other metrics are there, and a label a tagOverride removes is off that metric only; a tracing entry for the SERVER side sends no span from
// the gateway, and one for CLIENT does, at defaultConfig.tracing.sampling (no Telemetry sets a percentage); skiff
// validate refuses a Telemetry naming a provider meshconfig.yaml does not define.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Jaeger } from "../../control/backends/jaeger.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { startJaeger } from "../harness/backends.js";
import { send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { parseMetrics, type Sample } from "../harness/metrics-text.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

const HOST = "catalog.example.com";

// No default tracing provider: a side is traced only where a Telemetry entry names one for it.
const meshConfig = (zipkinPort: number) => `defaultConfig: { tracing: { sampling: 100 } }
extensionProviders:
- name: jaeger
  zipkin: { service: 127.0.0.1, port: ${zipkinPort} }
`;

/** The mesh-wide Telemetry: tracing to `provider` for the sides `mode` names; on the client side requests_total
 * dropped and request_bytes without its response_code label. */
const telemetry = (mode: string, provider = "jaeger") => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ providers: [{ name: ${provider} }], match: { mode: ${mode} } }]
  metrics:
  - overrides:
    - { match: { metric: REQUEST_COUNT, mode: CLIENT }, disabled: true }
    - { match: { metric: REQUEST_SIZE, mode: CLIENT }, tagOverrides: { response_code: { operation: REMOVE } } }
`;

describeE2E("Telemetry overrides in Envoy", () => {
  let jaeger: Jaeger;
  let catalog: Upstream;
  let mesh: Mesh;
  let gatewayPort: number;
  const prometheus = async (): Promise<Sample[]> => parseMetrics(await mesh.envoy.admin("/stats/prometheus"));

  beforeAll(async () => {
    jaeger = await startJaeger();
    catalog = await startUpstream({ name: "catalog" });
    gatewayPort = await freePort();
    mesh = await startMesh(
      {
        "meshconfig.yaml": meshConfig(jaeger.ports.zipkin),
        "telemetry.yaml": telemetry("SERVER"),
        "services.yaml": serviceEntry("catalog", await freePort(), { v1: catalog.port }),
        "gateway.yaml": gatewayRoute(gatewayPort, HOST, "catalog"),
      },
      GATEWAY,
    );
    await eventually(async () => expect((await send(gatewayPort, { path: "/", headers: { host: HOST } })).status).toBe(200), 15_000);
  });

  afterAll(async () => {
    await mesh?.stop();
    await catalog?.stop();
    await jaeger?.stop();
  });

  it("drops the metric a Telemetry override disables from /stats/prometheus, keeps Istio's others, and takes a removed label off its metric", async () => {
    const tally = await sendMany(gatewayPort, { count: 20, request: () => ({ headers: { host: HOST } }) });
    expect(tally.byStatus).toEqual({ 200: 20 });
    const labels = { reporter: "source", source_workload: "istio-ingressgateway", destination_service: "catalog.shop.svc.cluster.local", response_code: "200" };
    // The histograms reach /stats/prometheus at Envoy's stats flush (every 5 s).
    await eventually(async () => {
      const samples = await prometheus();
      const count = samples.filter((s) => s.name === "istio_request_duration_milliseconds_count" && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      expect(count.reduce((sum, s) => sum + s.value, 0)).toBeGreaterThanOrEqual(20);
      expect(samples.some((s) => s.name === "istio_request_bytes_count")).toBe(true);
      expect(samples.some((s) => s.name === "istio_response_bytes_count")).toBe(true);
    }, 15_000);
    const samples = await prometheus();
    expect(samples.filter((s) => s.name === "istio_requests_total")).toEqual([]);
    // tagOverrides REMOVE: request_bytes has no response_code; response_bytes keeps it.
    const requestBytes = samples.filter((s) => s.name === "istio_request_bytes_count");
    expect(requestBytes.length).toBeGreaterThan(0);
    expect(requestBytes.every((s) => !("response_code" in s.labels) && s.labels.source_workload === "istio-ingressgateway")).toBe(true);
    expect(samples.filter((s) => s.name === "istio_response_bytes_count").every((s) => s.labels.response_code === "200")).toBe(true);
  });

  it("sends no span from the gateway for tracing of the SERVER side, and spans for CLIENT at defaultConfig's 100%", async () => {
    // SERVER: the gateway is a client, so it neither traces nor adds B3 headers upstream.
    const before = catalog.requests.length;
    await sendMany(gatewayPort, { count: 5, request: () => ({ headers: { host: HOST } }) });
    const untraced = catalog.requests.slice(before);
    expect(untraced).toHaveLength(5);
    expect(untraced.filter((request) => request.headers["x-b3-traceid"])).toEqual([]);

    mesh.write("telemetry.yaml", telemetry("CLIENT"));
    // CLIENT: every request (sampling 100 from defaultConfig, no Telemetry percentage) gets a trace id upstream...
    const traceIds = await eventually(async () => {
      const from = catalog.requests.length;
      await sendMany(gatewayPort, { count: 5, request: () => ({ headers: { host: HOST } }) });
      const traced = catalog.requests.slice(from);
      expect(traced.map((request) => request.headers["x-b3-sampled"])).toEqual(["1", "1", "1", "1", "1"]);
      const ids = traced.map((request) => request.headers["x-b3-traceid"]);
      expect(ids.every((id) => typeof id === "string" && /^[0-9a-f]{32}$/.test(id))).toBe(true);
      return ids as string[];
    }, 15_000);
    // ... and Jaeger holds the gateway's span of each.
    for (const traceId of traceIds) {
      await eventually(async () => {
        const trace = await jaeger.trace(traceId);
        expect(trace?.spans.length).toBeGreaterThanOrEqual(1);
        expect(trace!.processes[trace!.spans[0]!.processID]?.serviceName).toBe("istio-ingressgateway.default");
      }, 20_000);
    }
  });

  it("skiff validate refuses a Telemetry naming a provider meshconfig.yaml does not define", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-telemetry-validate-"));
    try {
      writeFileSync(join(dir, "meshconfig.yaml"), meshConfig(9411));
      writeFileSync(join(dir, "telemetry.yaml"), telemetry("CLIENT", "zipkin"));
      const result = spawnSync(process.execPath, ["--import", "tsx", "control/cli/main.ts", "validate", dir], { cwd: PROJECT_ROOT, encoding: "utf8" });
      expect(result.status).toBe(1);
      expect(result.stderr + result.stdout).toContain('telemetry.yaml: Telemetry istio-system/mesh-default: spec.tracing[0].providers[0].name: no extensionProvider named "zipkin" in meshconfig.yaml');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
