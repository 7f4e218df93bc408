// Traces in a real Jaeger: the gateway reports spans by Zipkin (meshconfig.yaml's extensionProviders and a
// Telemetry at 100%), the webapp calls catalog through the gateway passing the B3 headers on, and one trace holds the
// gateway -> webapp span and, as its child, the webapp -> catalog span; the b3-propagation WasmPlugin keeps working
// beside Envoy's tracer (its counters count, and the trace ids reaching the services are the ones Jaeger stores).
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Jaeger, JaegerSpan, JaegerTrace } from "../../control/backends/jaeger.js";
import { startJaeger } from "../harness/backends.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

const PROPAGATED = ["x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"];

const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;

describeE2E("traces in a real Jaeger", () => {
  let jaeger: Jaeger;
  let catalog: Upstream;
  let webapp: Upstream;
  let mesh: Mesh;
  let gatewayPort: number;

  beforeAll(async () => {
    jaeger = await startJaeger();
    gatewayPort = await freePort();
    catalog = await startUpstream({ name: "catalog" });
    // webapp calls catalog through the gateway, passing the trace headers on as an application must.
    webapp = await startUpstream({
      name: "webapp",
      script: async (request) => {
        const headers = Object.fromEntries(PROPAGATED.filter((name) => request.headers[name]).map((name) => [name, request.headers[name]!]));
        const answer = await send(gatewayPort, { path: "/items", headers: { host: "catalog.example.com", ...headers } });
        return { status: answer.status, body: JSON.stringify({ received: headers, catalog: JSON.parse(answer.body) as unknown }) };
      },
    });
    const [webappPort, catalogPort] = [await freePort(), await freePort()];
    mesh = await startMesh(
      {
        "meshconfig.yaml": `defaultProviders: { tracing: [jaeger] }
extensionProviders:
- name: jaeger
  zipkin: { service: 127.0.0.1, port: ${jaeger.ports.zipkin} }
`,
        "telemetry.yaml": `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ randomSamplingPercentage: 100, customTags: { test: { literal: { value: jaeger-e2e } } } }]
`,
        "services.yaml": [serviceEntry("webapp", webappPort, { v1: webapp.port }), serviceEntry("catalog", catalogPort, { v1: catalog.port })].join("---\n"),
        "gateway.yaml": `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: gw, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${gatewayPort}, name: http, protocol: HTTP }
    hosts: ["webapp.example.com", "catalog.example.com"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: webapp, namespace: shop }
spec:
  hosts: ["webapp.example.com"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: webapp } }] }]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: ["catalog.example.com"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: catalog } }] }]
`,
        "plugins.yaml": `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: b3-propagation, namespace: shop }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: file://${process.cwd()}/build/filters/b3-propagation.wasm
  phase: AUTHN
  pluginConfig: { samplingPercent: 100 }
`,
      },
      GATEWAY,
    );
    await eventually(async () => expect((await send(gatewayPort, { path: "/", headers: { host: "catalog.example.com" } })).status).toBe(200), 15_000);
  });

  afterAll(async () => {
    await mesh?.stop();
    await webapp?.stop();
    await catalog?.stop();
    await jaeger?.stop();
  });

  it("holds gateway -> webapp -> catalog in one trace, the catalog span a child of the webapp span", async () => {
    const response = await send(gatewayPort, { path: "/api/catalog", headers: { host: "webapp.example.com" } });
    expect(response.status).toBe(200);
    const seen = JSON.parse(response.body) as { received: Record<string, string>; catalog: { headers: Record<string, string> } };
    const traceId = seen.received["x-b3-traceid"]!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    // Both services saw the same trace.
    expect(seen.catalog.headers["x-b3-traceid"]).toBe(traceId);

    let trace: JaegerTrace | undefined;
    await eventually(async () => {
      trace = await jaeger.trace(traceId);
      expect(trace?.spans.length).toBeGreaterThanOrEqual(2);
    }, 20_000);
    const spans = trace!.spans;
    const toWebapp = spans.find((span) => String(tag(span, "upstream_cluster") ?? "").includes("webapp.shop.svc.cluster.local"));
    const toCatalog = spans.find((span) => String(tag(span, "upstream_cluster") ?? "").includes("catalog.shop.svc.cluster.local"));
    expect(toWebapp, JSON.stringify(spans.map((s) => s.tags))).toBeDefined();
    expect(toCatalog).toBeDefined();
    // The webapp hop starts the trace; the catalog hop is its child (webapp passed the gateway's span id on).
    expect(toWebapp!.references.filter((ref) => ref.refType === "CHILD_OF")).toEqual([]);
    expect(toCatalog!.references).toContainEqual(expect.objectContaining({ refType: "CHILD_OF", spanID: toWebapp!.spanID }));
    // Istio's tags and the Telemetry's custom tag are on the spans; the service is the gateway's.
    expect(tag(toWebapp!, "istio.canonical_service")).toBe("istio-ingressgateway");
    expect(tag(toCatalog!, "test")).toBe("jaeger-e2e");
    expect(trace!.processes[toWebapp!.processID]?.serviceName).toBe("istio-ingressgateway.default");
    expect(await jaeger.services()).toContain("istio-ingressgateway.default");
  });

  it("keeps the b3-propagation filter working beside Envoy's tracer", async () => {
    const before = await mesh.envoy.stats("b3_propagation");
    await send(gatewayPort, { path: "/", headers: { host: "catalog.example.com" } });
    const after = await mesh.envoy.stats("b3_propagation");
    const sum = (stats: Map<string, number>) => [...stats.values()].reduce((a, b) => a + b, 0);
    expect(sum(after)).toBeGreaterThan(sum(before));
    // A request that arrives with a trace keeps it: Envoy continues the incoming trace, the filter keeps the id.
    const traceId = "463ac35c9f6413ad48485a3953bb6124";
    const answer = await send(gatewayPort, { path: "/", headers: { host: "catalog.example.com", "x-b3-traceid": traceId, "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1" } });
    const echoed = JSON.parse(answer.body) as { headers: Record<string, string> };
    expect(echoed.headers["x-b3-traceid"]).toBe(traceId);
    expect(echoed.headers["x-b3-parentspanid"]).toBeDefined();
    await eventually(async () => expect((await jaeger.trace(traceId))?.spans.length).toBeGreaterThanOrEqual(1), 20_000);
  });
});
