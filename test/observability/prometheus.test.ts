// Metrics in a real Prometheus scraping the control plane's /metrics and the gateway's /stats/prometheus every
// second: the request rate by destination version during the 90/10 shift, a convergence time quantile after a config
// change, the NACK count after a bad push, and every query of the Grafana dashboard in examples/grafana answering.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Prometheus } from "../../control/backends/prometheus.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { startPrometheus } from "../harness/backends.js";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type CatalogVersions, eventually, freePort, GATEWAY, gatewayRoute, type Mesh, NINETY_TEN, startCatalogVersions, startMesh } from "../scenarios/mesh.js";

const HOST = "catalog.example.com";

const gatewayYaml = (port: number, timeout = "0s") => gatewayRoute(port, HOST, "catalog", `${NINETY_TEN}    timeout: ${timeout}\n`);

/** A Gateway server on a port another process holds: Envoy cannot bind it and refuses the listener update (NACK). */
const takenPortGateway = (port: number) => `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: taken, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: http-taken, protocol: HTTP }
    hosts: ["taken.example.com"]
`;

describeE2E("metrics in a real Prometheus", () => {
  let catalog: CatalogVersions;
  let mesh: Mesh;
  let prometheus: Prometheus;
  let gatewayPort: number;
  const value = async (promql: string) => (await prometheus.query(promql)).reduce((sum, sample) => sum + sample.value, 0);

  beforeAll(async () => {
    gatewayPort = await freePort();
    catalog = await startCatalogVersions(await freePort());
    mesh = await startMesh({ "catalog.yaml": catalog.yaml, "gateway.yaml": gatewayYaml(gatewayPort) }, GATEWAY);
    await eventually(async () => expect((await sendMany(gatewayPort, { count: 1, request: () => ({ headers: { host: HOST } }) })).byStatus).toEqual({ 200: 1 }));
    prometheus = await startPrometheus([
      { job: "skiff-control-plane", address: `127.0.0.1:${mesh.controlPlane.modules.port}`, path: "/metrics" },
      { job: "envoy", address: `127.0.0.1:${mesh.envoy.adminPort}`, path: "/stats/prometheus" },
    ]);
    await eventually(async () => expect(await prometheus.targetsUp()).toBe(true), 30_000);
  });

  afterAll(async () => {
    await prometheus?.stop();
    await mesh?.stop();
    await catalog?.stop();
  });

  it("shows the 90/10 shift as the request rate by destination version", async () => {
    // 1000 requests over about five seconds, so that several scrapes see the counters grow.
    for (let round = 0; round < 5; round++) {
      const tally = await sendMany(gatewayPort, { count: 200, concurrency: 4, request: () => ({ headers: { host: HOST } }) });
      expect(tally.byStatus).toEqual({ 200: 200 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    const byVersion = 'sum by (destination_version) (increase(istio_requests_total{reporter="source",destination_service_name="catalog",response_code="200"}[1m]))';
    await eventually(async () => {
      const samples = await prometheus.query(byVersion);
      const rate = Object.fromEntries(samples.map((sample) => [sample.metric.destination_version, sample.value]));
      const total = (rate.v1 ?? 0) + (rate.v2 ?? 0);
      expect(total).toBeGreaterThan(900);
      // 10% of about 1000: a binomial's standard deviation is about 1 point here; 6 to 14% is far beyond noise.
      expect(rate.v2! / total).toBeGreaterThan(0.06);
      expect(rate.v2! / total).toBeLessThan(0.14);
    }, 20_000);
    const rate = await prometheus.query('sum by (destination_version) (rate(istio_requests_total{reporter="source",destination_service_name="catalog"}[30s]))');
    expect(rate.map((sample) => sample.metric.destination_version).sort()).toEqual(["v1", "v2"]);
  });

  it("answers a convergence time quantile after a config change", async () => {
    const before = await value("sum(pilot_proxy_convergence_time_count)");
    // A change the gateway's own configuration sees (its route's timeout): gateways get only what their
    // VirtualServices reference, so a new service elsewhere would not be pushed to it at all.
    mesh.write("gateway.yaml", gatewayYaml(gatewayPort, "5s"));
    await eventually(async () => expect(await value("sum(pilot_proxy_convergence_time_count)")).toBeGreaterThan(before), 20_000);
    const p99 = await value("histogram_quantile(0.99, sum by (le) (pilot_proxy_convergence_time_bucket))");
    // The debounce alone takes 100 ms; the gateway answers within a few seconds even on a loaded machine.
    expect(p99).toBeGreaterThanOrEqual(0.1);
    expect(p99).toBeLessThanOrEqual(10);
  });

  it("counts the NACK of a bad push", async () => {
    expect(await value("sum(pilot_total_xds_rejects)")).toBe(0);
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      mesh.write("taken.yaml", takenPortGateway((taken.address() as { port: number }).port));
      await eventually(async () => expect(await value('sum(pilot_total_xds_rejects{type="lds"})')).toBeGreaterThanOrEqual(1), 20_000);
    } finally {
      mesh.write("taken.yaml", "");
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it("answers every query of the Grafana dashboard", async () => {
    const dashboard = JSON.parse(readFileSync(join(PROJECT_ROOT, "examples/grafana/skiff-mesh.json"), "utf8")) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
    expect(queries.length).toBeGreaterThanOrEqual(10);
    for (const { panel, expr } of queries) {
      const samples = await prometheus.query(expr);
      expect(samples.length, `${panel}: ${expr}`).toBeGreaterThan(0);
    }
  });
});
