// The seed's scenarios with Kubernetes as the only source: every Gateway, VirtualService, DestinationRule and
// WasmPlugin, every Service and EndpointSlice is written to a real API server (kubectl-style), the control plane
// watches it, and traffic goes through a real gateway Envoy to apps in pods on a mesh network.
import { join } from "node:path";
import { Agent } from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send, sendMany } from "../harness/client.js";
import { describePods } from "../harness/e2e.js";
import { eventually, freePort } from "../scenarios/mesh.js";
import { type ClusterMesh, endpointSlice, NAMESPACE, startClusterMesh } from "./cluster-mesh.js";

describePods("Kubernetes: the seed scenarios from API writes only", () => {
  let mesh: ClusterMesh;
  let port: number;
  const request = (host: string, headers: Record<string, string> = {}) => send(port, { headers: { host, ...headers } });
  const many = (host: string, count: number, headers: Record<string, string> = {}) => sendMany(port, { count, concurrency: 4, request: () => ({ headers: { host, ...headers } }) });
  const routes = (host: string, http: string, name = host.split(".")[0]) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: ${NAMESPACE} }
spec:
  hosts: ["${host}"]
  gateways: [gateway]
  http:
${http}`;

  beforeAll(async () => {
    port = await freePort();
    mesh = await startClusterMesh();
    await mesh.addWorkloads([
      { name: "catalog-v1", labels: { app: "catalog", version: "v1" } },
      { name: "catalog-v2", labels: { app: "catalog", version: "v2" } },
      { name: "catalog-v3", labels: { app: "catalog", version: "v3" } },
      { name: "ratings-1", labels: { app: "ratings" } },
      { name: "ratings-2", labels: { app: "ratings" } },
      { name: "ratings-bad", labels: { app: "ratings" }, status: 500 },
    ]);
    await mesh.service("catalog", ["catalog-v1", "catalog-v2"]);
    await mesh.service("ratings", ["ratings-1", "ratings-2", "ratings-bad"]);
    // The same pods behind a second Service, whose DestinationRule ejects outliers (kept apart from the retries case).
    await mesh.service("reviews", ["ratings-1", "ratings-2", "ratings-bad"]);
    await mesh.cluster.apply(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gateway, namespace: ${NAMESPACE} }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: http, protocol: HTTP }
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: ${NAMESPACE} }
spec:
  host: catalog
  subsets:
  - { name: version-v1, labels: { version: v1 } }
  - { name: version-v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: ${NAMESPACE} }
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 100 }
`);
  }, 400_000);

  afterAll(async () => {
    await mesh?.stop();
  });

  it("virtual hosting: two hosts on one gateway port, routed by Host to their Services; other hosts 404", async () => {
    await mesh.cluster.apply([
      routes("catalog.example.com", "  - route: [{ destination: { host: catalog } }]"),
      routes("ratings.example.com", "  - route: [{ destination: { host: ratings.shop.svc.cluster.local } }]"),
    ].join("\n---\n"));
    await eventually(async () => {
      const [catalog, ratings] = [await request("catalog.example.com"), await request("ratings.example.com")];
      expect({ status: catalog.status, upstream: catalog.headers["x-upstream"] }).toEqual({ status: 200, upstream: expect.stringMatching(/^catalog-v[12]$/) });
      expect({ status: ratings.status, upstream: ratings.headers["x-upstream"] }).toEqual({ status: 200, upstream: expect.stringMatching(/^ratings-/) });
    }, 45_000);
    const catalog = await many("catalog.example.com", 20);
    expect(Object.keys(catalog.byUpstream).sort()).toEqual(["catalog-v1", "catalog-v2"]);
    expect((await request("nobody.example.com")).status).toBe(404);
  });

  it("cohort routing: x-istio-cohort internal goes to the v2 subset, everyone else to v1", async () => {
    await mesh.cluster.apply(
      routes(
        "cohort.example.com",
        `  - match: [{ headers: { x-istio-cohort: { exact: internal } } }]
    route: [{ destination: { host: catalog, subset: version-v2 } }]
  - route: [{ destination: { host: catalog, subset: version-v1 } }]`,
      ),
    );
    await eventually(async () => expect((await request("cohort.example.com", { "x-istio-cohort": "internal" })).headers["x-upstream"]).toBe("catalog-v2"), 45_000);
    expect((await many("cohort.example.com", 20, { "x-istio-cohort": "internal" })).byUpstream).toEqual({ "catalog-v2": 20 });
    expect((await many("cohort.example.com", 20)).byUpstream).toEqual({ "catalog-v1": 20 });
  });

  it("traffic shift: 90/10 between the subsets", async () => {
    await mesh.cluster.apply(
      routes(
        "shift.example.com",
        `  - route:
    - { destination: { host: catalog, subset: version-v1 }, weight: 90 }
    - { destination: { host: catalog, subset: version-v2 }, weight: 10 }`,
      ),
    );
    await eventually(async () => expect((await request("shift.example.com")).status).toBe(200), 45_000);
    const tally = await many("shift.example.com", 1000);
    expect(tally.byStatus).toEqual({ 200: 1000 });
    // Binomial(1000, 0.1): the standard deviation is 9.5, so 100 +- 40 is over four of them.
    expect(tally.byUpstream["catalog-v2"]).toBeGreaterThan(60);
    expect(tally.byUpstream["catalog-v2"]).toBeLessThan(140);
  });

  it("mirroring: v1 answers, v2 receives a copy of each request", async () => {
    await mesh.cluster.apply(
      routes(
        "mirror.example.com",
        `  - route: [{ destination: { host: catalog, subset: version-v1 }, weight: 100 }]
    mirror: { host: catalog, subset: version-v2 }`,
      ),
    );
    await eventually(async () => expect((await request("mirror.example.com")).headers["x-upstream"]).toBe("catalog-v1"), 45_000);
    const v2 = mesh.workloads.get("catalog-v2")!.app;
    const mirrored = async () => (await v2.received(8080)).filter((r) => r.headers.host === "mirror.example.com-shadow").length;
    const before = await mirrored();
    expect((await many("mirror.example.com", 30)).byUpstream).toEqual({ "catalog-v1": 30 });
    await eventually(async () => expect(await mirrored()).toBe(before + 30), 15_000);
  });

  it("retries: with retries on 5xx every request succeeds although one endpoint always fails; without, some fail", async () => {
    await mesh.cluster.apply(routes("retries.example.com", "  - route: [{ destination: { host: ratings } }]\n    retries: { attempts: 0 }"));
    await eventually(async () => expect((await many("retries.example.com", 30)).byStatus[500]).toBeGreaterThan(0), 45_000);
    await mesh.cluster.apply(routes("retries.example.com", "  - route: [{ destination: { host: ratings } }]\n    retries: { attempts: 3, retryOn: 5xx }"));
    await eventually(async () => expect((await many("retries.example.com", 60)).byStatus).toEqual({ 200: 60 }), 45_000);
  });

  it("outlier ejection: the always-500 endpoint is ejected, then every request reaches a healthy one", async () => {
    await mesh.cluster.apply(routes("outlier.example.com", "  - route: [{ destination: { host: reviews } }]\n    retries: { attempts: 0 }"));
    await eventually(async () => expect((await request("outlier.example.com")).status).not.toBe(404), 45_000);
    // The bad endpoint answers 500 until the outlier detector ejects it (after its first 5xx).
    await eventually(async () => expect((await many("outlier.example.com", 30)).byStatus).toEqual({ 200: 30 }), 30_000);
    const bad = mesh.workloads.get("ratings-bad")!.app;
    const seen = (await bad.received(8080)).length;
    expect((await many("outlier.example.com", 60)).byUpstream["ratings-bad"]).toBeUndefined();
    expect((await bad.received(8080)).length).toBe(seen);
  });

  it("a WasmPlugin selecting the gateway runs with its pluginConfig", async () => {
    await mesh.cluster.apply(`apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: hello, namespace: ${NAMESPACE} }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: file://${join(PROJECT_ROOT, "build", "filters", "hello.wasm")}
  pluginConfig: { greeting: from-kubernetes }
`);
    // A listener update applies to new connections: each request opens its own.
    await eventually(
      async () => expect((await send(port, { headers: { host: "catalog.example.com" }, agent: new Agent({ keepAlive: false }) })).headers["x-skiff-hello"]).toBe('{"greeting":"from-kubernetes"}'),
      60_000,
    );
    await mesh.cluster.delete({ apiVersion: "extensions.istio.io/v1alpha1", kind: "WasmPlugin", metadata: { name: "hello", namespace: NAMESPACE } });
    await eventually(async () => expect((await send(port, { headers: { host: "catalog.example.com" }, agent: new Agent({ keepAlive: false }) })).headers["x-skiff-hello"]).toBeUndefined(), 45_000);
  });

  it("an endpoint added to the EndpointSlice gets traffic, and one removed gets none", async () => {
    const workload = (name: string) => mesh.workloads.get(name)!;
    await mesh.cluster.apply(endpointSlice("catalog", [workload("catalog-v1"), workload("catalog-v2"), workload("catalog-v3")]));
    await eventually(async () => expect(Object.keys((await many("catalog.example.com", 30)).byUpstream)).toContain("catalog-v3"), 45_000);
    await mesh.cluster.apply(endpointSlice("catalog", [workload("catalog-v3")]));
    await eventually(async () => expect((await many("catalog.example.com", 30)).byUpstream).toEqual({ "catalog-v3": 30 }), 45_000);
  });
});
