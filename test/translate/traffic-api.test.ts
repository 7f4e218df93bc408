// Istio's traffic API where goldens would bury the point (issue 13): each case is what Istio does with a resource,
// or a refusal that names file, resource and field and says why.
import { afterAll, describe, expect, it } from "vitest";
import { GRPC_STATUS } from "../../control/sources/schema/index.js";
import { configFolder, removeConfigFolders, sidecarProxy } from "./config.js";

afterAll(removeConfigFolders);

const catalogEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 3000, name: http }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 9000 } }]
`;

function routeWithRetries(retries: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog]
  http:
  - route: [{ destination: { host: catalog } }]
    retries: ${retries}
`;
}

describe("case 3: retryOn", () => {
  it("refuses a condition Envoy does not know, naming it (Istio's validation refuses it too)", () => {
    const config = configFolder({ "vs.yaml": routeWithRetries("{ attempts: 2, retryOn: '5xx,bogus-condition' }"), "se.yaml": catalogEntry });
    expect(config.messages).toEqual([expect.stringMatching(/^vs\.yaml: VirtualService shop\/catalog: spec\.http\[0\]\.retries\.retryOn: "bogus-condition" is not a retry condition; use a comma-separated list of 5xx, /)]);
  });

  it("takes Envoy's conditions and HTTP status codes", () => {
    const config = configFolder({ "vs.yaml": routeWithRetries("{ attempts: 2, retryOn: 'gateway-error,connect-failure,retriable-4xx,503' }"), "se.yaml": catalogEntry });
    expect(config.messages).toEqual([]);
    const policy = config.translate(sidecarProxy()).routes.get("3000")!.virtual_hosts[0].routes[0].route.retry_policy;
    expect(policy).toMatchObject({ retry_on: "gateway-error,connect-failure,retriable-4xx,retriable-status-codes", retriable_status_codes: [503], num_retries: 2 });
  });

  it("refuses retry settings beside attempts: 0, which turns retries off", () => {
    const config = configFolder({ "vs.yaml": routeWithRetries("{ attempts: 0, retryOn: 5xx }"), "se.yaml": catalogEntry });
    expect(config.messages).toEqual([
      "vs.yaml: VirtualService shop/catalog: spec.http[0].retries: attempts: 0 turns retries off, so perTryTimeout, retryOn and retryRemoteLocalities would do nothing (Istio refuses them too)",
    ]);
  });
});

describe("case 12: resources without metadata.namespace", () => {
  const entry = catalogEntry.replace("namespace: shop", "").replace("{ name: catalog,  }", "{ name: catalog }");

  it("land in the reader's namespace (default: default), as kubectl's -n", () => {
    expect(configFolder({ "se.yaml": entry }).mesh.serviceEntries[0]!.namespace).toBe("default");
    expect(configFolder({ "se.yaml": entry }, { namespace: "shop" }).mesh.serviceEntries[0]!.namespace).toBe("shop");
    // A namespace the resource names wins.
    expect(configFolder({ "se.yaml": catalogEntry }, { namespace: "other" }).mesh.serviceEntries[0]!.namespace).toBe("shop");
  });
});

describe("installation resources in a config folder", () => {
  it("are reported as such with the Skiff command that plays their part, and block nothing", () => {
    const config = configFolder({
      "operator.yaml": `apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: { name: my-user-gateway-install, namespace: istioinaction }
spec:
  profile: empty
  components:
    ingressGateways:
    - name: istio-ingressgateway
      enabled: false
    - name: my-user-gateway
      namespace: istioinaction
      enabled: true
      label:
        istio: my-user-gateway
`,
      "deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: { name: my-user-gateway-injected, namespace: istioinaction }
spec:
  selector:
    matchLabels: { ingress: my-user-gateway-injected }
  template:
    metadata:
      annotations:
        sidecar.istio.io/inject: "true"
        inject.istio.io/templates: gateway
      labels: { ingress: my-user-gateway-injected }
    spec:
      containers: [{ name: istio-proxy, image: auto }]
---
${catalogEntry}`,
    });
    expect(config.messages).toEqual([]);
    expect(config.mesh.serviceEntries).toHaveLength(1);
    expect(config.warnings()).toEqual([
      "deployment.yaml: Deployment istioinaction/my-user-gateway-injected: an installation resource, not mesh configuration: it is a gateway whose Envoy Istio injects, which Skiff does not do from a config folder; the Skiff equivalent: `skiff bootstrap --node my-user-gateway-injected --role gateway --namespace istioinaction --label ingress=my-user-gateway-injected` and an Envoy on it",
      "operator.yaml: IstioOperator istioinaction/my-user-gateway-install: an installation resource, not mesh configuration: it installs Istio (istiod and its gateways), which Skiff does not do from a config folder; the Skiff equivalent: `skiff control-plane --config <this folder>` for istiod; `skiff bootstrap --node my-user-gateway --role gateway --namespace istioinaction --label istio=my-user-gateway` and an Envoy on it for each enabled gateway",
    ]);
  });
});

const entry = (name: string, namespace: string, spec: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;

const rule = (name: string, namespace: string, spec: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;

const endpointsOf = (config: ReturnType<typeof configFolder>, cluster: string, proxy = sidecarProxy()) => {
  const out = config.translate(proxy);
  const body = out.clusters.get(cluster);
  const assignment = body?.type === "EDS" ? out.endpoints.get(cluster) : body?.load_assignment;
  return (assignment?.endpoints[0].lb_endpoints ?? []).map((e: any) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`);
};

describe("case 1: a DNS ServiceEntry without endpoints", () => {
  it("resolves each host itself (strict DNS), on the port's targetPort if it has one", () => {
    const config = configFolder({
      "se.yaml": entry("api", "shop", `  hosts: [api.example.com, www.example.com]\n  ports: [{ number: 8080, name: http, targetPort: 80 }]\n  resolution: DNS\n`),
    });
    expect(config.messages).toEqual([]);
    const cluster = config.translate(sidecarProxy()).clusters.get("outbound|8080||api.example.com")!;
    expect(cluster.cluster_type).toMatchObject({ name: "envoy.cluster.dns", typed_config: { respect_dns_ttl: true } });
    expect(cluster.cluster_type.typed_config.all_addresses_in_single_endpoint).toBeUndefined();
    expect(endpointsOf(config, "outbound|8080||api.example.com")).toEqual(["api.example.com:80"]);
    expect(endpointsOf(config, "outbound|8080||www.example.com")).toEqual(["www.example.com:80"]);
  });

  it("DNS_ROUND_ROBIN is logical DNS (one address at a time)", () => {
    const config = configFolder({ "se.yaml": entry("api", "shop", `  hosts: [api.example.com]\n  ports: [{ number: 80, name: http }]\n  resolution: DNS_ROUND_ROBIN\n`) });
    expect(config.translate(sidecarProxy()).clusters.get("outbound|80||api.example.com")!.cluster_type.typed_config.all_addresses_in_single_endpoint).toBe(true);
    expect(endpointsOf(config, "outbound|80||api.example.com")).toEqual(["api.example.com:80"]);
  });
});

describe("case 2: several DestinationRules for one host", () => {
  const files = {
    "se.yaml": catalogEntry,
    "a.yaml": rule("catalog-v1", "shop", `  host: catalog\n  trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }\n  subsets: [{ name: v1, labels: { version: v1 } }]\n`),
    "b.yaml": rule("catalog-v2", "shop", `  host: catalog.shop.svc.cluster.local\n  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n  subsets: [{ name: v2, labels: { version: v2 } }, { name: v1, labels: { version: old } }]\n`),
  };

  it("merge as Istio merges them: subsets of both, the first traffic policy", () => {
    const out = configFolder(files).translate(sidecarProxy());
    expect([...out.clusters.keys()].filter((name) => name.includes("catalog"))).toEqual([
      "outbound|3000||catalog.shop.svc.cluster.local",
      "outbound|3000|v1|catalog.shop.svc.cluster.local",
      "outbound|3000|v2|catalog.shop.svc.cluster.local",
    ]);
    expect(out.clusters.get("outbound|3000|v2|catalog.shop.svc.cluster.local")!.lb_policy).toBe("ROUND_ROBIN");
  });

  it("and warn, naming both rules", () => {
    expect(configFolder(files).warnings()).toEqual([
      "b.yaml: DestinationRule shop/catalog-v2: merged into DestinationRule shop/catalog-v1 (a.yaml), the first rule for catalog.shop.svc.cluster.local in this namespace, as Istio merges them: its subsets v2 are added to it; its subsets v1 are dropped (the first rule has subsets of those names); its trafficPolicy is ignored (the first rule's applies)",
    ]);
  });

  it("rules in other namespaces do not merge: a proxy's own namespace's rule wins, then the service's", () => {
    const config = configFolder({
      "se.yaml": catalogEntry,
      "shop.yaml": rule("catalog", "shop", `  host: catalog.shop.svc.cluster.local\n  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n`),
      "web.yaml": rule("catalog", "web", `  host: catalog.shop.svc.cluster.local\n  trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }\n`),
    });
    expect(config.warnings()).toEqual([]);
    const lb = (namespace: string) => config.translate(sidecarProxy({ app: "x" }, namespace)).clusters.get("outbound|3000||catalog.shop.svc.cluster.local")!.lb_policy;
    expect(lb("web")).toBe("ROUND_ROBIN");
    expect(lb("shop")).toBe("RANDOM");
    expect(lb("other")).toBe("RANDOM");
  });
});

describe("DestinationRule exportTo and workloadSelector", () => {
  it("exportTo limits the namespaces whose proxies the rule applies to", () => {
    const config = configFolder({
      "se.yaml": catalogEntry,
      "dr.yaml": rule("catalog", "shop", `  host: catalog\n  exportTo: [".", web]\n  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n`),
    });
    const lb = (namespace: string) => config.translate(sidecarProxy({ app: "x" }, namespace)).clusters.get("outbound|3000||catalog.shop.svc.cluster.local")!.lb_policy;
    expect([lb("shop"), lb("web"), lb("other")]).toEqual(["RANDOM", "RANDOM", "LEAST_REQUEST"]);
  });

  it("workloadSelector applies the rule to the proxies of its namespace with those labels, before a rule without one", () => {
    const config = configFolder({
      "se.yaml": catalogEntry,
      "all.yaml": rule("catalog", "shop", `  host: catalog\n  trafficPolicy: { loadBalancer: { simple: RANDOM } }\n`),
      "canary.yaml": rule("catalog-canary", "shop", `  host: catalog\n  workloadSelector: { matchLabels: { app: canary } }\n  trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } }\n`),
    });
    const lb = (labels: Record<string, string>, namespace = "shop") => config.translate(sidecarProxy(labels, namespace)).clusters.get("outbound|3000||catalog.shop.svc.cluster.local")!.lb_policy;
    expect(lb({ app: "canary" })).toBe("ROUND_ROBIN");
    expect(lb({ app: "webapp" })).toBe("RANDOM");
    // Private to its namespace: a canary elsewhere gets the exported rule.
    expect(lb({ app: "canary" }, "web")).toBe("RANDOM");
  });
});

describe("case 9: a second ServiceEntry for the same host", () => {
  const second = (ports: string) => entry("catalog-more", "shop", `  hosts: [catalog.shop.svc.cluster.local]\n  ports: ${ports}\n  resolution: STATIC\n  endpoints: [{ address: 127.0.0.2, ports: { http: 9001 } }]\n`);

  it("adds its endpoints to the service, as Istio merges entries by namespace and host", () => {
    const config = configFolder({ "a.yaml": catalogEntry, "b.yaml": second("[{ number: 3000, name: http }]") });
    expect(endpointsOf(config, "outbound|3000||catalog.shop.svc.cluster.local")).toEqual(["127.0.0.1:9000", "127.0.0.2:9001"]);
    expect(config.warnings()).toEqual([
      "b.yaml: ServiceEntry shop/catalog-more: host catalog.shop.svc.cluster.local is also defined by ServiceEntry shop/catalog (a.yaml): as in Istio, both are one service, whose endpoints are those of both and whose definition is the first's",
    ]);
  });

  it("warns about what it defines differently, which is ignored", () => {
    const config = configFolder({ "a.yaml": catalogEntry, "b.yaml": second("[{ number: 3000, name: http }, { number: 4000, name: admin }]") });
    expect(config.translate(sidecarProxy()).clusters.has("outbound|4000||catalog.shop.svc.cluster.local")).toBe(false);
    expect(config.warnings()[0]).toMatch(/; this entry's ports is ignored$/);
  });
});

describe("case 10: a destination port the service does not have", () => {
  it("is warned about, naming the service's ports", () => {
    const config = configFolder({
      "se.yaml": catalogEntry,
      "vs.yaml": routeWithRetries("{ attempts: 1 }").replace("destination: { host: catalog }", "destination: { host: catalog, port: { number: 8080 } }"),
    });
    expect(config.warnings()).toEqual([
      "vs.yaml: VirtualService shop/catalog: spec.http[0].route[0].destination.port: port 8080 is not a port of catalog.shop.svc.cluster.local (its ports: 3000), so there is no cluster for it (requests get 503)",
    ]);
  });
});

describe("case 8: ServiceEntry location", () => {
  it("MESH_INTERNAL turns auto mTLS on for the service's endpoints with a sidecar; MESH_EXTERNAL, Istio's default, does not", () => {
    const withSidecar = catalogEntry.replace("ports: { http: 9000 } }", "ports: { http: 9000 }, serviceAccount: catalog }");
    const matches = (location: string) => {
      const config = configFolder({ "se.yaml": withSidecar.replace("spec:\n", location ? `spec:\n  location: ${location}\n` : "spec:\n") });
      expect(config.messages).toEqual([]);
      expect(config.warnings()).toEqual([]);
      const cluster = config.translate(sidecarProxy()).clusters.get("outbound|3000||catalog.shop.svc.cluster.local")!;
      return (cluster.transport_socket_matches as Array<{ name: string }> | undefined)?.map((m) => m.name);
    };
    expect(matches("MESH_INTERNAL")).toEqual(["tlsMode-istio", "tlsMode-disabled"]);
    expect(matches("MESH_EXTERNAL")).toBeUndefined();
    expect(matches("")).toBeUndefined();
  });
});

describe("ServiceEntry resolution, addresses, exportTo, workloadSelector and endpoints", () => {
  it("resolution defaults to NONE, as in Istio, and refuses endpoints then", () => {
    const config = configFolder({ "se.yaml": catalogEntry.replace("  resolution: STATIC\n", "") });
    expect(config.messages).toEqual([
      "se.yaml: ServiceEntry shop/catalog: spec.endpoints: resolution NONE (the default) passes traffic on to the address the application dialed and takes no endpoints (Istio refuses them too); set resolution: STATIC or DNS to use these endpoints",
    ]);
  });

  it("NONE: a capturing sidecar connects to the address the application dialed (ORIGINAL_DST); a loopback one gets no listener", () => {
    const config = configFolder({ "se.yaml": entry("api", "shop", `  hosts: [api.example.com]\n  ports: [{ number: 8081, name: http, targetPort: 8443 }]\n`) });
    const captured = config.translate({ ...sidecarProxy(), ips: ["198.18.0.2"], interceptionMode: "REDIRECT" });
    expect(captured.clusters.get("outbound|8081||api.example.com")).toMatchObject({ type: "ORIGINAL_DST", lb_policy: "CLUSTER_PROVIDED", original_dst_lb_config: { upstream_port_override: 8443 } });
    expect(captured.listeners.has("0.0.0.0_8081")).toBe(true);
    const loopback = config.translate({ ...sidecarProxy(), interceptionMode: "NONE" });
    expect([loopback.listeners.has("127.0.0.1_8081"), loopback.routes.has("8081")]).toEqual([false, false]);
  });

  it("addresses name the service too (virtual host domains)", () => {
    const config = configFolder({ "se.yaml": catalogEntry.replace("spec:\n", "spec:\n  addresses: [10.0.0.7, 10.1.0.0/16, 'fd00::7']\n") });
    const domains = config.translate(sidecarProxy()).routes.get("3000")!.virtual_hosts[0].domains;
    expect(domains).toEqual(expect.arrayContaining(["10.0.0.7", "10.0.0.7:3000", "[fd00::7]", "[fd00::7]:3000"]));
    expect(domains.some((domain: string) => domain.includes("/"))).toBe(false);
  });

  it("exportTo limits the namespaces whose proxies see the service", () => {
    const config = configFolder({ "se.yaml": catalogEntry.replace("spec:\n", "spec:\n  exportTo: ['.']\n") });
    const sees = (namespace: string) => config.translate(sidecarProxy({ app: "x" }, namespace)).clusters.has("outbound|3000||catalog.shop.svc.cluster.local");
    expect([sees("shop"), sees("default")]).toEqual([true, false]);
  });

  it("workloadSelector takes the WorkloadEntries of its namespace with those labels as endpoints", () => {
    const workload = (name: string, namespace: string, spec: string) => `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec:\n${spec}`;
    const config = configFolder({
      "se.yaml": entry("vm-catalog", "shop", `  hosts: [catalog.shop.svc.cluster.local]\n  ports: [{ number: 3000, name: http, targetPort: 9000 }]\n  resolution: STATIC\n  workloadSelector: { labels: { app: catalog } }\n`),
      "vms.yaml": [
        workload("vm-1", "shop", `  address: 10.0.0.1\n  labels: { app: catalog }\n  serviceAccount: catalog\n`),
        workload("vm-2", "shop", `  address: 10.0.0.2\n  labels: { app: catalog }\n  ports: { http: 9100 }\n  weight: 3\n`),
        workload("vm-other", "shop", `  address: 10.0.0.3\n  labels: { app: other }\n`),
        workload("vm-elsewhere", "web", `  address: 10.0.0.4\n  labels: { app: catalog }\n`),
      ].join("---\n"),
    });
    expect(config.messages).toEqual([]);
    expect(endpointsOf(config, "outbound|3000||catalog.shop.svc.cluster.local")).toEqual(["10.0.0.1:9000", "10.0.0.2:9100"]);
    const [first, second] = config.translate(sidecarProxy()).endpoints.get("outbound|3000||catalog.shop.svc.cluster.local")!.endpoints[0].lb_endpoints;
    // A workload with a service account is marked for Istio's mutual TLS, as istiod marks it.
    expect(first.metadata.filter_metadata["envoy.transport_socket_match"]).toEqual({ tlsMode: "istio" });
    expect(second).toMatchObject({ load_balancing_weight: 3 });
    expect(second.metadata.filter_metadata).not.toHaveProperty("envoy.transport_socket_match");
    // Every endpoint also carries istiod's istio.workload metadata (for istio-stats' destination labels).
    expect(first.metadata.filter_metadata.istio.workload).toMatch(/;shop;/);
  });
});

describe("DestinationRule refusals", () => {
  it("duplicate subset names, and exportTo beside a workloadSelector, name the field", () => {
    const config = configFolder({
      "dr.yaml": rule("catalog", "shop", `  host: catalog\n  workloadSelector: { matchLabels: { app: web } }\n  exportTo: ["*"]\n  subsets: [{ name: v1, labels: { v: "1" } }, { name: v1, labels: { v: "2" } }]\n`),
    });
    expect(config.messages).toEqual([
      "dr.yaml: DestinationRule shop/catalog: spec.subsets[1].name: subset v1 is already defined (Istio refuses duplicate subset names)",
      'dr.yaml: DestinationRule shop/catalog: spec.exportTo: a rule with a workloadSelector applies only in its own namespace, so exportTo can only be ["."] (Istio refuses others)',
    ]);
  });
});

describe("VirtualService fault injection", () => {
  it("fault.abort.grpcStatus: every gRPC status name aborts with its code", () => {
    const codes = GRPC_STATUS.map((status) => {
      const config = configFolder({ "se.yaml": catalogEntry, "vs.yaml": routeWithRetries("{ attempts: 1 }").replace("    retries:", `    fault: { abort: { grpcStatus: ${status}, percentage: { value: 100 } } }\n    retries:`) });
      expect(config.messages).toEqual([]);
      return config.translate(sidecarProxy()).routes.get("3000")!.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.fault"].abort.grpc_status;
    });
    // https://github.com/grpc/grpc/blob/master/doc/statuscodes.md: the names in code order, OK = 0 to UNAUTHENTICATED = 16.
    expect(Object.fromEntries(GRPC_STATUS.map((status, index) => [status, codes[index]]))).toEqual({
      OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
      RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
      DATA_LOSS: 15, UNAUTHENTICATED: 16,
    });
  });

  it("a delay or abort without a percentage injects nothing, as Istio's API says, and validate warns", () => {
    const config = configFolder({ "se.yaml": catalogEntry, "vs.yaml": routeWithRetries("{ attempts: 1 }").replace("    retries:", "    fault: { delay: { fixedDelay: 1s }, abort: { httpStatus: 500 } }\n    retries:") });
    const fault = config.translate(sidecarProxy()).routes.get("3000")!.virtual_hosts[0].routes[0].typed_per_filter_config["envoy.filters.http.fault"];
    expect(fault).toMatchObject({ delay: { fixed_delay: "1s", percentage: { numerator: 0, denominator: "HUNDRED" } }, abort: { http_status: 500 } });
    expect(fault.abort.percentage).toBeUndefined();
    expect(config.warnings()).toEqual([
      expect.stringContaining("spec.http[0].fault.delay.percentage: without a percentage no request is delayed"),
      expect.stringContaining("spec.http[0].fault.abort.percentage: without a percentage no request is aborted"),
    ]);
  });
});
