// Telemetry and MeshConfig's telemetry fields beside the `telemetry` golden: what each field does to the Envoy
// configuration, as istiod resolves it (pilot/pkg/model/telemetry.go `applicableTelemetries`, `Tracing`,
// `mergeMetrics`; pilot/pkg/networking/core/tracing.go `configureTracingFromTelemetry`), and what skiff validate
// refuses or warns about. A client side is a gateway or a sidecar's outbound listener, a server side its inbound one.
import { afterAll, describe, expect, it } from "vitest";
import type { ProxyIdentity } from "../../control/resources.js";
import { configFolder, gatewayProxy, removeConfigFolders } from "./config.js";

afterAll(removeConfigFolders);

type Body = Record<string, any>;

/** The catalog workload in a pod with capture: an outbound (client) and an inbound (server) side. */
const catalog: ProxyIdentity = { nodeId: "catalog", role: "sidecar", labels: { app: "catalog", version: "v1" }, namespace: "shop", ips: ["198.18.0.5"], interceptionMode: "REDIRECT" };

const SERVICES = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{ number: 3000, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 198.18.0.5, labels: { app: catalog, version: v1 } }]
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: gw, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: [catalog.example.com] }]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.example.com]
  gateways: [gw]
  http: [{ route: [{ destination: { host: catalog.shop.svc.cluster.local } }] }]
`;

const PROVIDERS = `extensionProviders:
- name: zipkin
  zipkin: { service: zipkin.observability.svc.cluster.local, port: 9411 }
- name: otel
  opentelemetry: { service: otel.observability.svc.cluster.local, port: 4317, maxTagLength: 64 }
`;

const telemetry = (name: string, namespace: string, spec: string) => `---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec.replace(/^/gm, "  ")}
`;

/** Every HTTP connection manager of one side of a proxy's listeners. */
function managers(listeners: Map<string, Body>, side: "client" | "server"): Body[] {
  const out: Body[] = [];
  for (const listener of listeners.values()) {
    if ((listener.traffic_direction === "INBOUND") !== (side === "server")) continue;
    for (const chain of [...(listener.filter_chains ?? []), ...(listener.default_filter_chain ? [listener.default_filter_chain] : [])]) {
      for (const filter of chain.filters ?? []) if (filter.name === "envoy.filters.network.http_connection_manager") out.push(filter.typed_config);
    }
  }
  return out;
}

/** The one tracing block of a side (every HCM of the side has the same), or undefined when none traces. */
function tracing(listeners: Map<string, Body>, side: "client" | "server"): Body | undefined {
  const blocks = managers(listeners, side).map((manager) => manager.tracing);
  expect(blocks.length, `${side} side has HTTP connection managers`).toBeGreaterThan(0);
  expect(new Set(blocks.map((block) => JSON.stringify(block))).size, `one tracing setting on the ${side} side`).toBe(1);
  return blocks[0];
}

/** The istio-stats configuration of a side (parsed), or undefined when that side has no stats filter. */
function stats(translated: { resources: Record<string, Array<{ name: string; body: unknown }>> }, side: "client" | "server"): Body | undefined {
  const name = side === "client" ? "istio.stats.outbound" : "istio.stats.inbound";
  const configs = translated.resources["type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"]!;
  const config = configs.find((c) => c.name === name)?.body as Body | undefined;
  return config && JSON.parse(config.typed_config.config.configuration.value);
}

describe("tracing providers by name", () => {
  it("a provider name picks among meshconfig's extensionProviders (defaultProviders and Telemetry alike), case aside", () => {
    const mesh = configFolder({
      "meshconfig.yaml": `defaultProviders: { tracing: [Zipkin] }\n${PROVIDERS}`,
      "services.yaml": SERVICES + telemetry("catalog", "shop", "selector: { matchLabels: { app: catalog } }\ntracing: [{ providers: [{ name: OTEL }], match: { mode: SERVER } }]"),
    });
    expect(mesh.messages).toEqual([]);
    const { listeners } = mesh.translate(catalog);
    expect(tracing(listeners, "client")!.provider.name).toBe("envoy.tracers.zipkin");
    expect(tracing(listeners, "server")!.provider.name).toBe("envoy.tracers.opentelemetry");
    expect(tracing(listeners, "server")!.provider.typed_config.grpc_service.envoy_grpc.cluster_name).toBe("opentelemetry|4317||otel.observability.svc.cluster.local");
  });

  it("a reference to no provider, or to one of the wrong kind, is refused naming file, resource and field", () => {
    const unknown = configFolder({
      "meshconfig.yaml": PROVIDERS,
      "t.yaml": telemetry("t", "shop", "tracing: [{ providers: [{ name: jaeger }] }]\nmetrics: [{ providers: [{ name: zipkin }] }]"),
    });
    expect(unknown.messages).toEqual([
      't.yaml: Telemetry shop/t: spec.tracing[0].providers[0].name: no extensionProvider named "jaeger" in meshconfig.yaml',
      't.yaml: Telemetry shop/t: spec.metrics[0].providers[0].name: provider "zipkin" is not a metrics provider',
    ]);
  });
});

describe("tracing merged as istiod merges it", () => {
  it("each tracing entry sets only the sides its match.mode names, over the root's and the namespace's", () => {
    const mesh = configFolder({
      "meshconfig.yaml": `defaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`,
      "services.yaml":
        SERVICES +
        telemetry("mesh-default", "istio-system", "tracing: [{ randomSamplingPercentage: 20, match: { mode: CLIENT_AND_SERVER } }]") +
        telemetry("shop-default", "shop", "tracing: [{ disableSpanReporting: true, match: { mode: CLIENT } }]") +
        telemetry("catalog", "shop", "selector: { matchLabels: { app: catalog } }\ntracing:\n- { randomSamplingPercentage: 100, match: { mode: SERVER } }\n- { providers: [{ name: otel }], match: { mode: CLIENT } }"),
    });
    expect(mesh.messages).toEqual([]);
    const { listeners } = mesh.translate(catalog);
    // Client: shop's CLIENT entry turned it off, catalog's CLIENT entry changed the provider but not that.
    expect(tracing(listeners, "client")).toBeUndefined();
    // Server: the root's 20% replaced by catalog's SERVER entry; the default provider.
    expect(tracing(listeners, "server")).toMatchObject({ random_sampling: { value: 100 }, provider: { name: "envoy.tracers.zipkin" } });
    // A gateway is a client (istiod's workloadMode for gateways): the root's entry for both sides reaches it.
    expect(tracing(mesh.translate(gatewayProxy()).listeners, "client")).toMatchObject({ random_sampling: { value: 20 } });
  });

  it("CLIENT traces only a sidecar's outbound side and gateways; CLIENT_AND_SERVER both sides", () => {
    const only = (mode: string) =>
      configFolder({
        "meshconfig.yaml": PROVIDERS,
        "services.yaml": SERVICES + telemetry("mesh-default", "istio-system", `tracing: [{ providers: [{ name: zipkin }], match: { mode: ${mode} } }]`),
      });
    const client = only("CLIENT");
    expect(tracing(client.translate(catalog).listeners, "client")?.provider.name).toBe("envoy.tracers.zipkin");
    expect(tracing(client.translate(catalog).listeners, "server")).toBeUndefined();
    expect(tracing(client.translate(gatewayProxy()).listeners, "client")?.provider.name).toBe("envoy.tracers.zipkin");
    const both = only("CLIENT_AND_SERVER");
    expect(tracing(both.translate(catalog).listeners, "client")?.provider.name).toBe("envoy.tracers.zipkin");
    expect(tracing(both.translate(catalog).listeners, "server")?.provider.name).toBe("envoy.tracers.zipkin");
    const server = only("SERVER");
    expect(tracing(server.translate(catalog).listeners, "client")).toBeUndefined();
    expect(tracing(server.translate(gatewayProxy()).listeners, "client")).toBeUndefined();
  });

  it("samples defaultConfig.tracing.sampling where no Telemetry sets a percentage; 0 is istiod's unset (1%), with a warning", () => {
    const sampled = (sampling: string) =>
      configFolder({ "meshconfig.yaml": `${sampling}defaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`, "services.yaml": SERVICES });
    expect(tracing(sampled("defaultConfig: { tracing: { sampling: 12.5 } }\n").translate(catalog).listeners, "server")!.random_sampling).toEqual({ value: 12.5 });
    expect(tracing(sampled("").translate(catalog).listeners, "server")!.random_sampling).toEqual({ value: 1 });
    const zero = sampled("defaultConfig: { tracing: { sampling: 0 } }\n");
    expect(tracing(zero.translate(catalog).listeners, "server")!.random_sampling).toEqual({ value: 1 });
    expect(zero.warnings()).toEqual([expect.stringMatching(/^meshconfig\.yaml: defaultConfig\.tracing\.sampling: 0 is istiod's "unset": proxies sample the default 1%/)]);
    // A Telemetry's percentage, 0 included, wins.
    const telemetryZero = configFolder({
      "meshconfig.yaml": `defaultConfig: { tracing: { sampling: 30 } }\ndefaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`,
      "services.yaml": SERVICES + telemetry("mesh-default", "istio-system", "tracing: [{ randomSamplingPercentage: 0 }]"),
    });
    expect(tracing(telemetryZero.translate(catalog).listeners, "server")!.random_sampling).toEqual({ value: 0 });
  });

  it("maxTagLength becomes max_path_tag_length; unset or 0 leaves Envoy's default", () => {
    const mesh = configFolder({
      "meshconfig.yaml": `defaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`,
      "services.yaml": SERVICES + telemetry("catalog", "shop", "selector: { matchLabels: { app: catalog } }\ntracing: [{ providers: [{ name: otel }], match: { mode: SERVER } }]"),
    });
    const { listeners } = mesh.translate(catalog);
    expect(tracing(listeners, "server")!.max_path_tag_length).toBe(64);
    expect(tracing(listeners, "client")).not.toHaveProperty("max_path_tag_length");
  });

  it("custom tags: an environment tag reads the proxy's variable with defaultValue, all tags sorted with Istio's", () => {
    const mesh = configFolder({
      "meshconfig.yaml": `defaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`,
      "services.yaml": SERVICES + telemetry("mesh-default", "istio-system", "tracing: [{ customTags: { pod: { environment: { name: POD_NAME, defaultValue: no-pod } }, host: { environment: { name: HOSTNAME } } } }]"),
    });
    expect(tracing(mesh.translate(catalog).listeners, "server")!.custom_tags).toEqual([
      { tag: "host", environment: { name: "HOSTNAME", default_value: "" } },
      { tag: "istio.canonical_revision", literal: { value: "v1" } },
      { tag: "istio.canonical_service", literal: { value: "catalog" } },
      { tag: "istio.namespace", literal: { value: "shop" } },
      { tag: "pod", environment: { name: "POD_NAME", default_value: "no-pod" } },
    ]);
  });

  it("enableTracing: istiod reads it only where no tracing provider applies, which Skiff cannot trace; validate warns when it misleads", () => {
    const off = configFolder({ "meshconfig.yaml": `enableTracing: false\ndefaultProviders: { tracing: [zipkin] }\n${PROVIDERS}`, "services.yaml": SERVICES });
    // istiod's tracing_test.go "both tracing disabled (with provider)": tracing stays on.
    expect(tracing(off.translate(catalog).listeners, "client")?.provider.name).toBe("envoy.tracers.zipkin");
    expect(off.warnings()).toEqual([expect.stringMatching(/^meshconfig\.yaml: enableTracing: has no effect where defaultProviders\.tracing or a Telemetry's tracing applies/)]);
    const on = configFolder({ "meshconfig.yaml": `enableTracing: true\n${PROVIDERS}`, "services.yaml": SERVICES });
    expect(tracing(on.translate(catalog).listeners, "client")).toBeUndefined();
    expect(on.warnings()).toEqual([expect.stringMatching(/^meshconfig\.yaml: enableTracing: traces nothing: no tracing provider is named/)]);
  });
});

describe("metrics overrides", () => {
  it("a metric disabled by an override is dropped on the sides its mode names; all metrics disabled removes the filter", () => {
    const mesh = configFolder({
      "services.yaml":
        SERVICES +
        telemetry("mesh-default", "istio-system", "metrics:\n- overrides:\n  - { match: { metric: ALL_METRICS, mode: SERVER }, disabled: true }\n  - { match: { metric: REQUEST_SIZE, mode: CLIENT }, disabled: true }") +
        telemetry(
          "catalog",
          "shop",
          "selector: { matchLabels: { app: catalog } }\nmetrics:\n- overrides:\n  - { match: { metric: REQUEST_COUNT, mode: SERVER }, disabled: true }\n  - { match: { metric: TCP_SENT_BYTES, mode: CLIENT }, disabled: true }\n  - { match: { metric: REQUEST_SIZE, mode: CLIENT_AND_SERVER }, disabled: false }",
        ),
    });
    expect(mesh.messages).toEqual([]);
    const translated = mesh.translate(catalog);
    expect(stats(translated, "client")!.drop).toEqual(["istio_tcp_sent_bytes_total"]);
    // The root's "all off on the server side" is lifted by catalog's later server-side override (istiod's
    // disabledAllMetricsProviders), which drops requests_total there.
    expect(stats(translated, "server")!.drop).toEqual(["istio_requests_total"]);
    // Another workload keeps the root's settings: no server-side filter, request bytes dropped on the client side.
    const other = mesh.translate({ ...catalog, nodeId: "other", labels: { app: "other" } });
    expect(stats(other, "server")).toBeUndefined();
    expect(managers(other.listeners, "server").flatMap((m) => m.http_filters.map((f: Body) => f.name))).not.toContain("istio.stats.inbound");
    expect(stats(other, "client")!.drop).toEqual(["istio_request_bytes"]);
  });

  it("tagOverrides REMOVE: the labels each metric goes without, per side, in the istio-stats configuration", () => {
    const mesh = configFolder({
      "services.yaml":
        SERVICES +
        telemetry("mesh-default", "istio-system", "metrics:\n- overrides:\n  - { match: { metric: REQUEST_COUNT }, tagOverrides: { response_flags: { operation: REMOVE } } }") +
        telemetry("catalog", "shop", "selector: { matchLabels: { app: catalog } }\nmetrics:\n- overrides:\n  - { match: { mode: SERVER }, tagOverrides: { request_protocol: { operation: REMOVE } } }"),
    });
    expect(mesh.messages).toEqual([]);
    const translated = mesh.translate(catalog);
    expect(stats(translated, "client")!.tagsToRemove).toEqual([{ metric: "istio_requests_total", tags: ["response_flags"] }]);
    // ALL_METRICS (no metric named) on the server side: every metric, merged with the root's for requests_total.
    expect(stats(translated, "server")!.tagsToRemove).toContainEqual({ metric: "istio_requests_total", tags: ["request_protocol", "response_flags"] });
    expect(stats(translated, "server")!.tagsToRemove).toContainEqual({ metric: "istio_tcp_sent_bytes_total", tags: ["request_protocol"] });
    const upsert = configFolder({ "t.yaml": telemetry("t", "shop", "metrics: [{ overrides: [{ tagOverrides: { request_host: { operation: UPSERT, value: request.host } } }] }]") });
    expect(upsert.messages).toEqual([
      expect.stringMatching(/^t\.yaml: Telemetry shop\/t: spec\.metrics\[0\]\.overrides\[0\]\.tagOverrides\.request_host\.operation: only "REMOVE" is implemented \(UPSERT's value is a CEL expression/),
      "t.yaml: Telemetry shop/t: spec.metrics[0].overrides[0].tagOverrides.request_host.value: unknown field, or one Skiff does not implement",
    ]);
    const unknown = configFolder({ "t.yaml": telemetry("t", "shop", "metrics: [{ overrides: [{ tagOverrides: { pod: { operation: REMOVE } } }] }]") });
    expect(unknown.messages).toEqual([expect.stringMatching(/^t\.yaml: Telemetry shop\/t: spec\.metrics\[0\]\.overrides\[0\]\.tagOverrides\.pod: not a label of Istio's metrics \(reporter, /)]);
  });

  it("metrics providers by name: a Telemetry naming prometheus turns Istio's metrics on where defaultProviders.metrics is empty", () => {
    const mesh = configFolder({
      "meshconfig.yaml": "defaultProviders: { metrics: [] }\n",
      "services.yaml": SERVICES + telemetry("catalog", "shop", "selector: { matchLabels: { app: catalog } }\nmetrics: [{ providers: [{ name: prometheus }] }]"),
    });
    expect(stats(mesh.translate(catalog), "server")).toMatchObject({ reporter: "destination", app: "catalog" });
    expect(stats(mesh.translate({ ...catalog, nodeId: "other", labels: { app: "other" } }), "server")).toBeUndefined();
  });

  it("refuses an override of the gRPC message counts, which istio-stats does not record", () => {
    const mesh = configFolder({ "t.yaml": telemetry("t", "shop", "metrics: [{ overrides: [{ match: { metric: GRPC_REQUEST_MESSAGES }, disabled: true }] }]") });
    expect(mesh.messages).toEqual([expect.stringMatching(/^t\.yaml: Telemetry shop\/t: spec\.metrics\[0\]\.overrides\[0\]\.match\.metric: one of ALL_METRICS, .* \(the istio-stats filter records no gRPC message counts\)/)]);
  });

  it("warns about a second namespace-wide Telemetry in a namespace, which istiod ignores", () => {
    const mesh = configFolder({ "t.yaml": telemetry("a", "shop", "metrics: [{ overrides: [{ disabled: true }] }]") + telemetry("b", "shop", "tracing: [{ randomSamplingPercentage: 5 }]") });
    expect(mesh.warnings()).toEqual(["t.yaml: Telemetry shop/b: another namespace-wide Telemetry in shop comes first (a); istiod uses only the oldest, Skiff the first by name, so this one has no effect"]);
  });
});
