// Istio's standard metrics in real Envoys, attached by the control plane by default: a gateway (reporter=source)
// sends 90/10 to catalog v1 and v2, where v2 sits behind an Envoy running istio-stats as the destination (as its
// sidecar's inbound side would). Envoy's /stats/prometheus shows `istio_requests_total{...}` with Istio's names and
// labels; the two Envoys learn each other's workload from the x-envoy-peer-metadata exchange; a destination without
// a sidecar is named from istiod-style endpoint metadata; `defaultProviders.metrics: []` turns it all off.
import { afterAll, beforeAll, expect, it } from "vitest";
import { istioStatsConfig } from "../../control/bootstrap/bootstrap.js";
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { metricValue, parseMetrics, type Sample } from "../harness/metrics-text.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { destinationRule, eventually, freePort, GATEWAY, gatewayRoute, type Mesh, NINETY_TEN, serviceEntry, startMesh } from "../scenarios/mesh.js";

const HOST = "catalog.example.com";

describeE2E("istio-stats: Istio's standard metrics from Envoy", () => {
  let v1: Upstream;
  let v2: Upstream;
  let v2Sidecar: Envoy;
  let mesh: Mesh;
  let gatewayPort: number;
  const prometheus = async (envoy: Envoy): Promise<Sample[]> => parseMetrics(await envoy.admin("/stats/prometheus"));

  beforeAll(async () => {
    v1 = await startUpstream({ name: "catalog-v1" });
    v2 = await startUpstream({ name: "catalog-v2" });
    // catalog v2's "sidecar": an Envoy in front of it with istio-stats as the destination, named as a pod would be.
    v2Sidecar = await startEnvoy({
      bootstrap: {
        ...staticBootstrap({
          clusters: { app: { ports: [v2.port] } },
          httpFilters: [wasmFilter("istio-stats", { configuration: { reporter: "destination", workload: "catalog-v2-7d4f9", namespace: "shop", app: "catalog", version: "v2" } })],
        }),
        stats_config: istioStatsConfig(),
      },
    });
    gatewayPort = await freePort();
    const servicePort = await freePort();
    mesh = await startMesh(
      {
        "catalog.yaml": [
          serviceEntry("catalog", servicePort, { v1: v1.port, v2: await v2Sidecar.listenerPort() }),
          destinationRule("catalog", ["v1", "v2"]),
        ].join("---\n"),
        "gateway.yaml": gatewayRoute(gatewayPort, HOST, "catalog", NINETY_TEN),
      },
      GATEWAY,
    );
    await eventually(async () => expect((await sendMany(gatewayPort, { count: 1, request: () => ({ headers: { host: HOST } }) })).byStatus).toEqual({ 200: 1 }));
  });

  afterAll(async () => {
    await mesh?.stop();
    await v2Sidecar?.stop();
    await v1?.stop();
    await v2?.stop();
  });

  it("counts istio_requests_total by destination version with Istio's labels on /stats/prometheus", async () => {
    const before = await prometheus(mesh.envoy);
    const tally = await sendMany(gatewayPort, { count: 400, concurrency: 8, request: () => ({ headers: { host: HOST } }) });
    expect(tally.byStatus).toEqual({ 200: 400 });
    const after = await prometheus(mesh.envoy);
    const delta = (labels: Record<string, string>) => metricValue(after, "istio_requests_total", labels) - metricValue(before, "istio_requests_total", labels);
    const common = { reporter: "source", source_workload: "istio-ingressgateway", source_workload_namespace: "default", destination_service: "catalog.shop.svc.cluster.local", destination_service_name: "catalog", destination_service_namespace: "shop", response_code: "200", response_flags: "-", request_protocol: "http" };
    const toV1 = delta({ ...common, destination_version: "v1", destination_workload: "catalog-v1" });
    const toV2 = delta({ ...common, destination_version: "v2" });
    expect(toV1 + toV2).toBe(400);
    // 90/10 within a wide margin (a binomial with n = 400 has a standard deviation of 6 requests at p = 0.1).
    expect(toV2).toBeGreaterThan(15);
    expect(toV2).toBeLessThan(70);
    // The histograms are there with Istio's names, as many observations as requests (Envoy merges histograms at each stats
    // flush, every 5 s).
    await eventually(async () => {
      const flushed = await prometheus(mesh.envoy);
      const requests = metricValue(flushed, "istio_requests_total", common);
      const count = (name: string) => metricValue(flushed, name, common);
      expect([count("istio_request_duration_milliseconds_count"), count("istio_request_bytes_count"), count("istio_response_bytes_count")]).toEqual([requests, requests, requests]);
      expect(flushed.some((s) => s.name === "istio_request_duration_milliseconds_bucket" && s.labels.le === "+Inf")).toBe(true);
    }, 15_000);
    // Nothing is left under Envoy's own prefix.
    expect(after.some((s) => s.name.includes("wasmcustom") || s.name.startsWith("envoy_reporter"))).toBe(false);
  });

  it("learns the workload behind a sidecar from the metadata exchange, and the sidecar learns the gateway", async () => {
    const gateway = await prometheus(mesh.envoy);
    // From the v2 Envoy's x-envoy-peer-metadata answer: its pod-like name, not the endpoint metadata's "catalog-v2".
    expect(metricValue(gateway, "istio_requests_total", { destination_workload: "catalog-v2-7d4f9", destination_version: "v2" })).toBeGreaterThan(0);
    expect(metricValue(gateway, "istio_requests_total", { destination_workload: "catalog-v2" })).toBe(0);
    const sidecar = await prometheus(v2Sidecar);
    expect(metricValue(sidecar, "istio_requests_total", { reporter: "destination", source_workload: "istio-ingressgateway", source_app: "istio-ingressgateway", destination_workload: "catalog-v2-7d4f9", connection_security_policy: "none" })).toBe(
      metricValue(gateway, "istio_requests_total", { destination_workload: "catalog-v2-7d4f9" }),
    );
    // The exchange headers stay between the proxies: the app behind the sidecar never sees them.
    expect(v2.requests.at(-1)?.headers).not.toHaveProperty("x-envoy-peer-metadata");
    // catalog v1 has no sidecar, so it sees the gateway's (as Istio's plain-text workloads do).
    expect(v1.requests.at(-1)?.headers["x-envoy-peer-metadata-id"]).toBe("istio-ingressgateway.default");
  });

  it("is attached by default and turned off mesh-wide by defaultProviders.metrics: []", async () => {
    // What the control plane holds for the gateway (GET /debug/config_dump, what `skiff proxy-config` reads).
    const extensionConfigs = async () => {
      const dump = (await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/debug/config_dump?proxy=${GATEWAY.nodeId}`)).json()) as { types: Record<string, Array<{ name: string }>> };
      return dump.types["type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"]!.map((config) => config.name);
    };
    expect(await extensionConfigs()).toContain("istio.stats.outbound");
    mesh.write("meshconfig.yaml", "defaultProviders:\n  metrics: []\n");
    await eventually(async () => expect(await extensionConfigs()).not.toContain("istio.stats.outbound"), 15_000);
    await eventually(async () => {
      const before = metricValue(await prometheus(mesh.envoy), "istio_requests_total");
      await sendMany(gatewayPort, { count: 20, request: () => ({ headers: { host: HOST } }) });
      expect(metricValue(await prometheus(mesh.envoy), "istio_requests_total")).toBe(before);
    }, 15_000);
  });
});
