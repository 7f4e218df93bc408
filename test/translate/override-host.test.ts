// The `skiff.dev/override-host` DestinationRule annotation beyond the golden (fixtures/override-host): what
// validation refuses, which rule's annotation counts when Istio merges rules, gateways, and the warning where it
// cannot take effect. test/scenarios/outlier-detector.test.ts shows it steering traffic in Envoy.
import { afterAll, describe, expect, it } from "vitest";
import { configFolder, gatewayProxy, removeConfigFolders, sidecarProxy } from "./config.js";

afterAll(removeConfigFolders);

const SERVICE = (resolution = "STATIC") => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: default }
spec:
  hosts: [catalog.default.svc.cluster.local]
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  resolution: ${resolution}
${resolution === "NONE" ? "" : "  endpoints: [{ address: 10.0.0.1, ports: { http: 9080 } }, { address: 10.0.0.2, ports: { http: 9080 } }]\n"}`;

function rule(name: string, annotations: Record<string, string>, spec = "{}", kind = "DestinationRule"): string {
  const lines = Object.entries(annotations).map(([key, value]) => `    ${key}: ${JSON.stringify(value)}`);
  return `apiVersion: networking.istio.io/v1
kind: ${kind}
metadata:
  name: ${name}
  namespace: default
${lines.length ? `  annotations:\n${lines.join("\n")}\n` : ""}spec:
  host: catalog.default.svc.cluster.local
  trafficPolicy: ${spec}
`;
}

const CLUSTER = "outbound|8080||catalog.default.svc.cluster.local";

/** A gateway routing to catalog (gateways get only the clusters their routes use). */
const GATEWAY_ROUTE = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8000, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: default }
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: catalog.default.svc.cluster.local } }] }]
`;

/** The header the cluster's override-host policy reads and the name of its fallback policy, or its lb_policy. */
function balancing(cluster: Record<string, any>): { header?: string; fallback?: string; lb_policy?: string } {
  const policy = cluster.load_balancing_policy?.policies[0].typed_extension_config;
  if (!policy) return { lb_policy: cluster.lb_policy };
  expect(policy.name).toBe("envoy.load_balancing_policies.override_host");
  return { header: policy.typed_config.override_host_sources[0].header, fallback: policy.typed_config.fallback_policy.policies[0].typed_extension_config.name };
}

describe("skiff.dev/ annotations", () => {
  it("refuses an unknown skiff.dev/ key, naming what the kind takes", () => {
    const folder = configFolder({ "a.yaml": SERVICE() + "---\n" + rule("catalog", { "skiff.dev/overide-host": "x-h" }) });
    expect(folder.messages).toEqual([
      'a.yaml: DestinationRule default/catalog: metadata.annotations["skiff.dev/overide-host"]: not a Skiff annotation of DestinationRule (it takes skiff.dev/override-host)',
    ]);
  });

  it("refuses a value that is not a lowercase header name", () => {
    const folder = configFolder({ "a.yaml": SERVICE() + "---\n" + rule("catalog", { "skiff.dev/override-host": "X-Outlier Host" }) });
    expect(folder.messages).toEqual(['a.yaml: DestinationRule default/catalog: metadata.annotations["skiff.dev/override-host"]: a lowercase HTTP header name']);
  });

  it("refuses it on a kind that takes no Skiff annotation", () => {
    const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: default, annotations: { skiff.dev/override-host: x-h } }
spec: { hosts: [catalog], http: [{ route: [{ destination: { host: catalog } }] }] }
`;
    expect(configFolder({ "a.yaml": SERVICE() + "---\n" + vs }).messages).toEqual([
      'a.yaml: VirtualService default/catalog: metadata.annotations["skiff.dev/override-host"]: not a Skiff annotation of VirtualService',
    ]);
  });

  it("leaves every other annotation alone, as Istio does", () => {
    const folder = configFolder({ "a.yaml": SERVICE() + "---\n" + rule("catalog", { "kubectl.kubernetes.io/last-applied-configuration": "{}", "example.com/x": "y" }) });
    expect(folder.messages).toEqual([]);
    expect(balancing(folder.translate(sidecarProxy()).clusters.get(CLUSTER)!)).toEqual({ lb_policy: "LEAST_REQUEST" });
  });
});

describe("skiff.dev/override-host", () => {
  it("gives the rule's clusters the override-host policy with the rule's balancing as fallback, on sidecars and gateways", () => {
    const folder = configFolder({
      "a.yaml": SERVICE() + "---\n" + rule("catalog", { "skiff.dev/override-host": "x-pick" }, "{ loadBalancer: { simple: RANDOM } }"),
      "gateway.yaml": GATEWAY_ROUTE,
    });
    expect(folder.messages).toEqual([]);
    for (const proxy of [sidecarProxy(), gatewayProxy(undefined, "default")]) {
      const cluster = folder.translate(proxy).clusters.get(CLUSTER)!;
      expect(balancing(cluster)).toEqual({ header: "x-pick", fallback: "envoy.load_balancing_policies.random" });
      expect(cluster.lb_policy).toBeUndefined();
    }
  });

  it("follows Istio's merge of rules for one host: the first rule's annotation wins, else the one a later rule has", () => {
    const both = configFolder({
      "a.yaml": SERVICE() + "---\n" + rule("first", { "skiff.dev/override-host": "x-first" }) + "---\n" + rule("second", { "skiff.dev/override-host": "x-second" }),
    });
    expect(balancing(both.translate(sidecarProxy()).clusters.get(CLUSTER)!).header).toBe("x-first");
    const later = configFolder({ "a.yaml": SERVICE() + "---\n" + rule("first", {}) + "---\n" + rule("second", { "skiff.dev/override-host": "x-second" }) });
    expect(balancing(later.translate(sidecarProxy()).clusters.get(CLUSTER)!).header).toBe("x-second");
  });

  it("warns that a resolution NONE service's sidecar clusters have no hosts to override", () => {
    const none = configFolder({ "a.yaml": SERVICE("NONE") + "---\n" + rule("catalog", { "skiff.dev/override-host": "x-pick" }) });
    expect(none.messages).toEqual([]);
    expect(none.warnings()).toEqual([
      'a.yaml: DestinationRule default/catalog: metadata.annotations["skiff.dev/override-host"]: has no effect on sidecars: catalog.default.svc.cluster.local has resolution NONE, so a sidecar connects to the address the application dialed (an ORIGINAL_DST cluster, no hosts to choose among); gateways, which balance over its endpoints, do use it',
    ]);
    expect(none.translate(sidecarProxy()).clusters.get(CLUSTER)!.lb_policy).toBe("CLUSTER_PROVIDED");
    const resolved = configFolder({ "a.yaml": SERVICE() + "---\n" + rule("catalog", { "skiff.dev/override-host": "x-pick" }) });
    expect(resolved.warnings()).toEqual([]);
  });
});
