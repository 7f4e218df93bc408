// Locality load balancing as istiod computes it per proxy (issue 8 item 4, issue 13 case 11): endpoint localities
// from ServiceEntry endpoints and WorkloadEntries, the proxy's locality, DestinationRule localityLbSetting
// (failover, failoverPriority, distribute), and the checks and warnings around them. Envoy's behaviour with these
// priorities and weights is shown in test/scenarios/locality.test.ts.
import { afterAll, describe, expect, it } from "vitest";
import type { ProxyIdentity } from "../../control/resources.js";
import { configFolder, removeConfigFolders, sidecarProxy } from "./config.js";

afterAll(removeConfigFolders);

const CLUSTER = "outbound|3000||catalog.shop.svc.cluster.local";

/** Four endpoints: two in the proxy's zone r1/z1 (one in another subzone), one in r1/z2, one in r2/z1, one in r3. */
const entry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 3000, name: http }]
  endpoints:
  - { address: 10.0.0.1, locality: r1/z1/s1, labels: { version: v1 } }
  - { address: 10.0.0.2, locality: r1/z1/s2, labels: { version: v2 } }
  - { address: 10.0.0.3, locality: r1/z2, labels: { version: v1 } }
  - { address: 10.0.0.4, locality: r2/z1, labels: { version: v1 } }
  - { address: 10.0.0.5, labels: { version: v2, istio-locality: r3.z9 } }
`;

const rule = (trafficPolicy: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: catalog.shop.svc.cluster.local
  trafficPolicy: ${trafficPolicy}
`;

const OUTLIER = "outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s }";

const proxy = (locality?: ProxyIdentity["locality"], labels: Record<string, string> = { app: "webapp" }): ProxyIdentity => ({ ...sidecarProxy(labels, "shop"), ...(locality ? { locality } : {}) });

/** address -> [priority, locality weight] of the cluster's endpoints as `viewer` gets them. */
function assignment(files: Record<string, string>, viewer: ProxyIdentity) {
  const config = configFolder(files);
  expect(config.messages).toEqual([]);
  const resources = config.translate(viewer);
  const groups = resources.endpoints.get(CLUSTER)!.endpoints as { priority?: number; load_balancing_weight?: number; locality?: Record<string, string>; lb_endpoints: any[] }[];
  const out: Record<string, [number, number | undefined]> = {};
  for (const group of groups) {
    for (const endpoint of group.lb_endpoints) out[endpoint.endpoint.address.socket_address.address] = [group.priority ?? 0, group.load_balancing_weight];
  }
  return { out, groups, cluster: resources.clusters.get(CLUSTER)!, config };
}

describe("locality failover (outlier detection on, Istio's default localityLbSetting)", () => {
  it("gives the proxy's own subzone priority 0, then its zone, its region, other regions", () => {
    const { out, groups, cluster } = assignment({ "se.yaml": entry, "dr.yaml": rule(`{ ${OUTLIER} }`) }, proxy({ region: "r1", zone: "z1", subZone: "s1" }));
    expect(out).toEqual({ "10.0.0.1": [0, 1], "10.0.0.2": [1, 1], "10.0.0.3": [2, 1], "10.0.0.4": [3, 1], "10.0.0.5": [3, 1] });
    // Envoy's LocalityLbEndpoints carry the locality (the istio-locality label's dots read as slashes).
    expect(groups.map((group) => group.locality)).toEqual([
      { region: "r1", zone: "z1", sub_zone: "s1" },
      { region: "r1", zone: "z1", sub_zone: "s2" },
      { region: "r1", zone: "z2" },
      { region: "r2", zone: "z1" },
      { region: "r3", zone: "z9" },
    ]);
    expect(cluster.common_lb_config).toEqual({ healthy_panic_threshold: { value: 0 }, locality_weighted_lb_config: {} });
  });

  it("`failover` sends a region's traffic to the named region before any other", () => {
    const { out } = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { enabled: true, failover: [{ from: r1, to: r3 }] } }, ${OUTLIER} }`) },
      proxy({ region: "r1", zone: "z1", subZone: "s1" }),
    );
    expect(out).toEqual({ "10.0.0.1": [0, 1], "10.0.0.2": [1, 1], "10.0.0.3": [2, 1], "10.0.0.5": [3, 1], "10.0.0.4": [4, 1] });
  });

  it("takes the proxy's locality from its istio-locality or topology labels when the node has none", () => {
    const byLabel = assignment({ "se.yaml": entry, "dr.yaml": rule(`{ ${OUTLIER} }`) }, proxy(undefined, { app: "webapp", "istio-locality": "r2.z1" })).out;
    expect(byLabel["10.0.0.4"]).toEqual([0, 1]);
    const byTopology = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ ${OUTLIER} }`) },
      proxy(undefined, { app: "webapp", "topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "z2" }),
    ).out;
    expect(byTopology["10.0.0.3"]).toEqual([0, 1]);
  });

  it("failoverPriority orders by the labels an endpoint shares with the proxy, in the order listed", () => {
    // version first, then region: v1 in r1 (0), v1 elsewhere (1), v2 (2).
    const { out } = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { localityLbSetting: { failoverPriority: [version, topology.kubernetes.io/region] } }, ${OUTLIER} }`) },
      proxy({ region: "r1", zone: "z1", subZone: "s1" }, { app: "webapp", version: "v1" }),
    );
    expect(out).toEqual({ "10.0.0.1": [0, 1], "10.0.0.3": [0, 1], "10.0.0.4": [1, 1], "10.0.0.2": [2, 1], "10.0.0.5": [2, 1] });
    // `label=value` compares with that value instead of the proxy's.
    const pinned = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { localityLbSetting: { failoverPriority: ["version=v2"] } }, ${OUTLIER} }`) },
      proxy({ region: "r1" }, { app: "webapp", version: "v1" }),
    ).out;
    expect(Object.entries(pinned).filter(([, [priority]]) => priority === 0).map(([address]) => address).sort()).toEqual(["10.0.0.2", "10.0.0.5"]);
  });

  it("does nothing without outlier detection, or with enabled: false (locally or mesh-wide)", () => {
    const noOutlier = assignment({ "se.yaml": entry, "dr.yaml": rule("{ loadBalancer: { simple: ROUND_ROBIN } }") }, proxy({ region: "r1", zone: "z1" }));
    expect(Object.values(noOutlier.out).every(([priority, weight]) => priority === 0 && weight === undefined)).toBe(true);
    expect(noOutlier.cluster.common_lb_config).toBeUndefined();
    const disabled = assignment({ "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { localityLbSetting: { enabled: false } }, ${OUTLIER} }`) }, proxy({ region: "r1", zone: "z1" }));
    expect(Object.values(disabled.out).every(([priority]) => priority === 0)).toBe(true);
    const meshWide = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ ${OUTLIER} }`), "meshconfig.yaml": "localityLbSetting: { enabled: false }\n" },
      proxy({ region: "r1", zone: "z1" }),
    );
    expect(Object.values(meshWide.out).every(([priority]) => priority === 0)).toBe(true);
  });
});

describe("locality distribute", () => {
  it("weighs localities for proxies in `from`, and leaves out localities no `to` names", () => {
    const { out, cluster } = assignment(
      { "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { localityLbSetting: { distribute: [{ from: "r2/*", to: { "r1/z1/*": 80, "r1/z2/*": 20 } }, { from: r1/*, to: { "r1/*": 100 } }] } } }`) },
      proxy({ region: "r2", zone: "z1" }),
    );
    // r1/z1 has two groups (s1, s2) sharing its 80; r2 and r3 get nothing.
    expect(out).toEqual({ "10.0.0.1": [0, 40], "10.0.0.2": [0, 40], "10.0.0.3": [0, 20] });
    expect(cluster.common_lb_config).toEqual({ locality_weighted_lb_config: {} });
  });
});

describe("localityLbSetting validation (Istio's ValidateLocalityLbSetting)", () => {
  const messages = (setting: string) => configFolder({ "se.yaml": entry, "dr.yaml": rule(`{ loadBalancer: { localityLbSetting: ${setting} }, ${OUTLIER} }`) }).messages;
  it.each([
    ["{ distribute: [{ from: r1, to: { r2: 100 } }], failover: [{ from: r1, to: r2 }] }", "failover: can not simultaneously specify 'distribute' and 'failover'"],
    ["{ distribute: [{ from: r1, to: { r2: 60, r3: 30 } }] }", "distribute[0].to: total locality weight 90 != 100"],
    ["{ distribute: [{ from: r1, to: { r2: 100 } }, { from: r1/z1, to: { r2: 100 } }] }", "distribute: locality r1/z1 overlaps with previous ones"],
    ['{ distribute: [{ from: "r1/*/z", to: { r2: 100 } }] }', "the wildcard '*' may appear once, at the end"],
    ["{ failover: [{ from: r1, to: r1 }] }", "must specify different regions"],
    ["{ failover: [{ from: r1/z1, to: r2 }] }", "only specifies regions"],
    ["{ failover: [{ from: r1, to: r2 }], failoverPriority: [topology.kubernetes.io/zone] }", "can not simultaneously set 'failover' and topology label 'topology.kubernetes.io/zone'"],
  ])("refuses %s", (setting, message) => {
    expect(messages(setting)).toEqual([expect.stringMatching(new RegExp(`^dr\\.yaml: DestinationRule shop/catalog: spec\\.trafficPolicy\\.loadBalancer\\.localityLbSetting.*${message.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`))]);
  });

  it("refuses a malformed endpoint locality", () => {
    const config = configFolder({ "se.yaml": entry.replace("locality: r1/z2", "locality: r1//z2") });
    expect(config.messages).toEqual([expect.stringMatching(/^se\.yaml: ServiceEntry shop\/catalog: spec\.endpoints\[2\]\.locality: region\[\/zone\[\/subzone\]\], without empty parts$/)]);
  });
});

describe("warnings", () => {
  it("failover without outlier detection does nothing (Istio warns too)", () => {
    const config = configFolder({ "se.yaml": entry, "dr.yaml": rule("{ loadBalancer: { localityLbSetting: { failover: [{ from: r1, to: r2 }] } } }") });
    expect(config.warnings()).toEqual([expect.stringMatching(/^dr\.yaml: DestinationRule shop\/catalog: spec\.trafficPolicy\.loadBalancer\.localityLbSetting: failover needs outlierDetection/)]);
  });

  it("distribute's weights need round robin or least request", () => {
    const config = configFolder({ "se.yaml": entry, "dr.yaml": rule('{ loadBalancer: { simple: RANDOM, localityLbSetting: { distribute: [{ from: r1, to: { r1: 70, r2: 30 } }] } } }') });
    expect(config.warnings()).toEqual([expect.stringMatching(/localityLbSetting: distribute's weights take effect with ROUND_ROBIN or LEAST_REQUEST only .*with RANDOM only its choice of localities applies$/)]);
    const cluster = config.translate(proxy({ region: "r1" })).clusters.get(CLUSTER)!;
    expect(cluster.common_lb_config).toBeUndefined();
  });
});

describe("issue 13 case 11: retryRemoteLocalities", () => {
  const vs = (attempts: number) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  http:
  - route: [{ destination: { host: catalog.shop.svc.cluster.local } }]
    retries: { attempts: ${attempts}, retryOn: 5xx, retryRemoteLocalities: true }
`;

  it("retries in other priorities with Envoy's previous_priorities, as Istio's retry.ConvertPolicy", () => {
    const config = configFolder({ "se.yaml": entry, "dr.yaml": rule(`{ ${OUTLIER} }`), "vs.yaml": vs(2) });
    expect(config.messages).toEqual([]);
    expect(config.warnings()).toEqual([]);
    const policy = config.translate(proxy({ region: "r1", zone: "z1" })).routes.get("3000")!.virtual_hosts.find((host: any) => host.name.startsWith("catalog")).routes[0].route.retry_policy;
    expect(policy.retry_priority).toEqual({
      name: "envoy.retry_priorities.previous_priorities",
      typed_config: { "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", update_frequency: 2 },
    });
  });

  it("warns where it cannot act: no failover priorities, or too few attempts to leave the first priority", () => {
    const config = configFolder({ "se.yaml": entry, "dr.yaml": rule("{ loadBalancer: { simple: ROUND_ROBIN } }"), "vs.yaml": vs(1) });
    expect(config.warnings()).toEqual([
      expect.stringMatching(/^vs\.yaml: VirtualService shop\/catalog: spec\.http\[0\]\.retries\.retryRemoteLocalities: .*with attempts 1 the retry stays local/),
      expect.stringMatching(/retryRemoteLocalities: catalog\.shop\.svc\.cluster\.local: no locality failover \(it needs outlierDetection/),
    ]);
  });
});
