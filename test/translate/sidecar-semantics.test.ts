// Istio's sidecar semantics that goldens would bury (issue 8 item 2): the two interception modes, outboundTrafficPolicy,
// the Sidecar resource's scoping, the inbound side, VirtualServices bound to `mesh`, and gateways that get only the
// clusters their VirtualServices use. Real Envoys run this configuration in test/scenarios/ and test/pods/.
import { afterAll, describe, expect, it } from "vitest";
import type { ProxyIdentity } from "../../control/resources.js";
import { configFolder, gatewayProxy, removeConfigFolders } from "./config.js";

afterAll(removeConfigFolders);

type Body = Record<string, any>; // Envoy JSON, read field by field.

const serviceEntry = (name: string, namespace: string, ports: string, endpoints: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: [${name}.${namespace}.svc.cluster.local]
  ports: [${ports}]
  resolution: STATIC
  endpoints: [${endpoints}]
`;

const SERVICES = [
  serviceEntry("webapp", "default", "{ number: 80, name: http, targetPort: 8080 }", "{ address: 198.18.0.2 }"),
  serviceEntry("catalog", "shop", "{ number: 80, name: http, targetPort: 3000 }", "{ address: 198.18.0.3, labels: { version: v1 } }, { address: 198.18.0.4, labels: { version: v2 } }"),
  serviceEntry("reviews", "shop", "{ number: 9080, name: http }", "{ address: 198.18.0.5 }"),
  serviceEntry("ledger", "bank", "{ number: 5432, name: tcp, protocol: TCP }", "{ address: 198.18.0.6 }"),
].join("---\n");

const sidecar = (interceptionMode: "REDIRECT" | "NONE", labels: Record<string, string> = { app: "webapp" }): ProxyIdentity => ({
  nodeId: "webapp",
  role: "sidecar",
  labels,
  namespace: "default",
  ips: ["198.18.0.2"],
  interceptionMode,
});

const names = (map: Map<string, unknown>) => [...map.keys()];
const virtualHostNames = (route: Body | undefined) => (route?.virtual_hosts as Body[]).map((host) => host.name);

describe("interception modes", () => {
  const config = configFolder({ "services.yaml": SERVICES });

  it("with capture (REDIRECT): 0.0.0.0_<port> listeners that bind nothing, virtualOutbound and virtualInbound", () => {
    const out = config.translate(sidecar("REDIRECT"));
    expect(names(out.listeners)).toEqual(["0.0.0.0_80", "0.0.0.0_5432", "0.0.0.0_9080", "virtualOutbound", "virtualInbound"]);
    expect(out.listeners.get("0.0.0.0_80")).toMatchObject({ bind_to_port: false, address: { socket_address: { address: "0.0.0.0", port_value: 80 } } });
    expect(out.listeners.get("virtualOutbound")).toMatchObject({ use_original_dst: true, address: { socket_address: { port_value: 15001 } } });
    expect(out.listeners.get("virtualInbound")).toMatchObject({ address: { socket_address: { port_value: 15006 } }, traffic_direction: "INBOUND" });
    // The inbound side: the app's port of the service whose endpoint is this pod, as its own cluster. Without a
    // PeerAuthentication the mode is PERMISSIVE: each chain twice or thrice, mTLS beside plain text (security tests).
    const chains = (out.listeners.get("virtualInbound")!.filter_chains as Body[]).map((chain) => chain.name);
    expect(chains).toEqual([
      "virtualInbound-blackhole",
      ...["virtualInbound-catchall-http", "virtualInbound-catchall-http", "virtualInbound", "virtualInbound", "virtualInbound"],
      ...["0.0.0.0_8080", "0.0.0.0_8080"],
    ]);
    expect(out.clusters.get("inbound|8080||")).toMatchObject({ type: "ORIGINAL_DST", upstream_bind_config: { source_address: { address: "127.0.0.6" } } });
  });

  it("without capture (NONE): listeners bound on 127.0.0.1 per service port, no virtual listeners, no inbound side", () => {
    const out = config.translate(sidecar("NONE"));
    expect(names(out.listeners)).toEqual(["127.0.0.1_80", "127.0.0.1_5432", "127.0.0.1_9080"]);
    expect(out.listeners.get("127.0.0.1_80")!.bind_to_port).toBeUndefined();
    expect(names(out.clusters).filter((name) => name.startsWith("inbound|"))).toEqual([]);
  });

  it("a TCP service's listener is a tcp_proxy to its cluster", () => {
    const [chain] = config.translate(sidecar("REDIRECT")).listeners.get("0.0.0.0_5432")!.filter_chains as Body[];
    expect(tcpProxy(chain!).typed_config).toMatchObject({ stat_prefix: "outbound|5432||ledger.bank.svc.cluster.local", cluster: "outbound|5432||ledger.bank.svc.cluster.local" });
  });
});

/** A chain's tcp_proxy (Istio's stats filter goes just before it). */
const tcpProxy = (chain: Body): Body => (chain.filters as Body[]).find((filter) => filter.name === "envoy.filters.network.tcp_proxy")!;

describe("outboundTrafficPolicy", () => {
  const catchAll = (out: ReturnType<ReturnType<typeof configFolder>["translate"]>) => ({
    virtualHost: (out.routes.get("80")!.virtual_hosts as Body[]).at(-1)!.name,
    defaultChain: tcpProxy(out.listeners.get("0.0.0.0_80")!.default_filter_chain).typed_config.cluster,
    virtualOutbound: tcpProxy((out.listeners.get("virtualOutbound")!.filter_chains as Body[])[1]!).typed_config.cluster,
  });

  it("ALLOW_ANY (Istio's default) passes unknown hosts and ports through to where they were going", () => {
    expect(catchAll(configFolder({ "services.yaml": SERVICES }).translate(sidecar("REDIRECT")))).toEqual({
      virtualHost: "allow_any",
      defaultChain: "PassthroughCluster",
      virtualOutbound: "PassthroughCluster",
    });
  });

  it("REGISTRY_ONLY in meshconfig.yaml refuses them: 502 for HTTP, the blackhole for the rest", () => {
    const config = configFolder({ "services.yaml": SERVICES, "meshconfig.yaml": "outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n" });
    expect(catchAll(config.translate(sidecar("REDIRECT")))).toEqual({ virtualHost: "block_all", defaultChain: "BlackHoleCluster", virtualOutbound: "BlackHoleCluster" });
  });

  it("a Sidecar's own policy wins over the mesh's", () => {
    const config = configFolder({
      "services.yaml": SERVICES,
      "meshconfig.yaml": "outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n",
      "sidecar.yaml": `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: { name: default, namespace: default }\nspec:\n  outboundTrafficPolicy: { mode: ALLOW_ANY }\n`,
    });
    expect(catchAll(config.translate(sidecar("REDIRECT"))).virtualHost).toBe("allow_any");
  });

  it("without capture there is no original destination to pass through to: unknown hosts get 502, and the proxy is told", () => {
    const config = configFolder({ "services.yaml": SERVICES });
    expect(virtualHostNames(config.translate(sidecar("NONE")).routes.get("80")).at(-1)).toBe("block_all");
    expect(config.notes(sidecar("NONE"))).toEqual([expect.stringMatching(/ALLOW_ANY.*INTERCEPTION_MODE NONE.*502/)]);
    expect(config.notes(sidecar("REDIRECT"))).toEqual([]);
  });
});

describe("the Sidecar resource", () => {
  const sidecarResource = (name: string, namespace: string, spec: string) => `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec:\n${spec}`;

  it("egress hosts scope the services, listeners and route configurations a sidecar gets", () => {
    const all = configFolder({ "services.yaml": SERVICES }).translate(sidecar("REDIRECT"));
    const scoped = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  egress:\n  - hosts: ["./*", "shop/catalog.shop.svc.cluster.local"]\n`),
    }).translate(sidecar("REDIRECT"));
    const outbound = (out: typeof all) => names(out.clusters).filter((name) => name.startsWith("outbound|"));
    expect(outbound(all)).toEqual([
      "outbound|80||webapp.default.svc.cluster.local",
      "outbound|80||catalog.shop.svc.cluster.local",
      "outbound|9080||reviews.shop.svc.cluster.local",
      "outbound|5432||ledger.bank.svc.cluster.local",
    ]);
    expect(outbound(scoped)).toEqual(["outbound|80||webapp.default.svc.cluster.local", "outbound|80||catalog.shop.svc.cluster.local"]);
    expect(names(scoped.listeners)).toEqual(["0.0.0.0_80", "virtualOutbound", "virtualInbound"]);
    expect(virtualHostNames(scoped.routes.get("80"))).toEqual(["webapp.default.svc.cluster.local:80", "catalog.shop.svc.cluster.local:80", "allow_any"]);
  });

  it("`~` excludes hosts, `*/` imports from every namespace", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  egress:\n  - hosts: ["*/*", "~shop/reviews.shop.svc.cluster.local"]\n`),
    }).translate(sidecar("REDIRECT"));
    expect(names(out.clusters).filter((name) => name.includes("reviews"))).toEqual([]);
    expect(names(out.clusters).filter((name) => name.includes("ledger"))).toEqual(["outbound|5432||ledger.bank.svc.cluster.local"]);
  });

  it("a workloadSelector picks the Sidecar for matching workloads; the namespace's default applies to the others", () => {
    const config = configFolder({
      "services.yaml": SERVICES,
      "sidecars.yaml": [
        sidecarResource("default", "default", `  egress:\n  - hosts: ["./*"]\n`),
        sidecarResource("reviewers", "default", `  workloadSelector: { labels: { app: reviewer } }\n  egress:\n  - hosts: ["shop/reviews.shop.svc.cluster.local"]\n`),
      ].join("---\n"),
    });
    const outbound = (labels: Record<string, string>) => names(config.translate(sidecar("REDIRECT", labels)).clusters).filter((name) => name.startsWith("outbound|"));
    expect(outbound({ app: "reviewer" })).toEqual(["outbound|9080||reviews.shop.svc.cluster.local"]);
    expect(outbound({ app: "webapp" })).toEqual(["outbound|80||webapp.default.svc.cluster.local"]);
  });

  it("the root namespace's Sidecar applies where a namespace has none", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "istio-system", `  egress:\n  - hosts: ["bank/*"]\n`),
    }).translate(sidecar("REDIRECT"));
    expect(names(out.clusters).filter((name) => name.startsWith("outbound|"))).toEqual(["outbound|5432||ledger.bank.svc.cluster.local"]);
  });

  it("the destinations of imported VirtualServices get clusters (not listeners) too", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  egress:\n  - hosts: ["./*"]\n`),
      "vs.yaml": `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: webapp, namespace: default }\nspec:\n  hosts: [webapp]\n  http:\n  - route: [{ destination: { host: catalog.shop.svc.cluster.local } }]\n`,
    }).translate(sidecar("REDIRECT"));
    expect(names(out.clusters).filter((name) => name.startsWith("outbound|"))).toEqual(["outbound|80||webapp.default.svc.cluster.local", "outbound|80||catalog.shop.svc.cluster.local"]);
    expect(virtualHostNames(out.routes.get("80"))).toEqual(["webapp.default.svc.cluster.local:80", "allow_any"]);
  });

  it("an egress listener with a port (and captureMode NONE) gets a listener bound on 127.0.0.1 with its own services", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  egress:\n  - port: { number: 9080, protocol: HTTP, name: http }\n    captureMode: NONE\n    hosts: ["shop/*"]\n  - hosts: ["./*"]\n`),
    }).translate(sidecar("REDIRECT"));
    expect(names(out.listeners)).toEqual(["0.0.0.0_80", "127.0.0.1_9080", "virtualOutbound", "virtualInbound"]);
    expect(virtualHostNames(out.routes.get("9080"))).toEqual(["reviews.shop.svc.cluster.local:9080", "allow_any"]);
    expect(virtualHostNames(out.routes.get("80"))).toEqual(["webapp.default.svc.cluster.local:80", "allow_any"]);
  });

  it("ingress ports replace the service's: with a defaultEndpoint the app is reached on loopback", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  ingress:\n  - port: { number: 9090, protocol: HTTP, name: http }\n    defaultEndpoint: 127.0.0.1:8080\n`),
    }).translate(sidecar("REDIRECT"));
    const chains = (out.listeners.get("virtualInbound")!.filter_chains as Body[]).map((chain) => chain.name);
    expect(chains.at(-1)).toBe("0.0.0.0_9090");
    expect(out.clusters.get("inbound|9090||")).toMatchObject({ type: "STATIC", load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 8080 } } } }] }] } });
    expect(out.clusters.get("inbound|9090||")!.upstream_bind_config).toBeUndefined();
    expect(out.clusters.has("inbound|8080||")).toBe(false);
  });

  it("without capture, ingress ports are listeners of their own on the pod's address", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "sidecar.yaml": sidecarResource("default", "default", `  ingress:\n  - port: { number: 9090, protocol: HTTP, name: http }\n    defaultEndpoint: 127.0.0.1:8080\n`),
    }).translate(sidecar("NONE"));
    expect(out.listeners.get("198.18.0.2_9090")).toMatchObject({ traffic_direction: "INBOUND", address: { socket_address: { address: "198.18.0.2", port_value: 9090 } } });
  });

  it("is refused with the field named when its hosts lack a namespace, or a catch-all listener is not last", () => {
    const config = configFolder({
      "sidecar.yaml": sidecarResource("bad", "default", `  egress:\n  - hosts: ["catalog.shop.svc.cluster.local"]\n  - port: { number: 80 }\n    hosts: ["./*"]\n`),
    });
    expect(config.messages).toEqual([
      expect.stringMatching(/^sidecar\.yaml: Sidecar default\/bad: spec\.egress\[0\]\.hosts\[0\]: a host as "namespace\/dnsName"/),
      expect.stringMatching(/^sidecar\.yaml: Sidecar default\/bad: spec\.egress: only the last egress listener may be without a port/),
    ]);
  });
});

describe("VirtualServices on sidecars", () => {
  const vs = (gateways: string) => `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: catalog, namespace: shop }\nspec:\n  hosts: [catalog]\n${gateways}  http:\n  - route: [{ destination: { host: catalog, port: { number: 80 } } }]\n    timeout: 3s\n`;
  const catalogTimeout = (gateways: string) => {
    const route = configFolder({ "services.yaml": SERVICES, "vs.yaml": vs(gateways) }).translate(sidecar("REDIRECT")).routes.get("80")!;
    return (route.virtual_hosts as Body[]).find((host) => host.name === "catalog.shop.svc.cluster.local:80")!.routes[0].route.timeout;
  };

  it("apply when bound to mesh, explicitly or by leaving gateways out; not when bound only to a Gateway", () => {
    expect(catalogTimeout("")).toBe("3s");
    expect(catalogTimeout("  gateways: [mesh]\n")).toBe("3s");
    expect(catalogTimeout("  gateways: [mesh, shop/gw]\n")).toBe("3s");
    expect(catalogTimeout("  gateways: [shop/gw]\n")).toBe("0s");
  });
});

describe("gateways", () => {
  it("get only the clusters their VirtualServices route to (PILOT_FILTER_GATEWAY_CLUSTER_CONFIG)", () => {
    const out = configFolder({
      "services.yaml": SERVICES,
      "gw.yaml": `apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: { name: gw, namespace: istio-system }\nspec:\n  selector: { istio: ingressgateway }\n  servers:\n  - port: { number: 8080, name: http, protocol: HTTP }\n    hosts: ["*"]\n`,
      "vs.yaml": `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: catalog, namespace: shop }\nspec:\n  hosts: [catalog.example.com]\n  gateways: [istio-system/gw]\n  http:\n  - route: [{ destination: { host: catalog } }]\n    mirror: { host: reviews }\n`,
    }).translate(gatewayProxy());
    // skiff-modules: where the proxy fetches the istio-stats module (Istio's standard metrics are on by default).
    expect(names(out.clusters)).toEqual(["outbound|80||catalog.shop.svc.cluster.local", "outbound|9080||reviews.shop.svc.cluster.local", "BlackHoleCluster", "skiff-modules"]);
  });
});
