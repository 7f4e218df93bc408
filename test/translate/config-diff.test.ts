// `skiff proxy-config diff` (issue 9 item 7): what the EnvoyFilters and extensions applying to a proxy change in its
// configuration, per resource, and what changed each. The control plane serves it (test/control/proxy-config-diff.test.ts
// runs the command against a live one); here the computation and its rendering.
import { afterAll, describe, expect, it } from "vitest";
import { renderConfigDiff } from "../../control/cli/proxy-config-diff.js";
import { TypeUrl } from "../../control/resources.js";
import { configDiff } from "../../control/translate/config-diff.js";
import { testContext } from "./cases.js";
import { configFolder, removeConfigFolders, sidecarProxy } from "./config.js";

afterAll(removeConfigFolders);

const CLUSTER = "outbound|8080||catalog.shop.svc.cluster.local";
const FILES = {
  "mesh.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: 9081 } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{ number: 9090, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: 9091 } }]
`,
  "filters.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: timeouts, namespace: shop }
spec:
  configPatches:
  - applyTo: CLUSTER
    match: { cluster: { service: catalog.shop.svc.cluster.local } }
    patch: { operation: MERGE, value: { connectTimeout: 2s } }
  - applyTo: CLUSTER
    match: { cluster: { service: nowhere.shop.svc.cluster.local } }
    patch: { operation: MERGE, value: { connectTimeout: 3s } }
---
apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: tag, namespace: shop }
spec:
  match: [{ mode: CLIENT, ports: [{ number: 8080 }] }]
  lua:
    inlineCode: |
      function envoy_on_request(handle) handle:headers():add("x-tag", "1") end
`,
};

describe("proxy-config diff", () => {
  const folder = configFolder(FILES);
  const proxy = { ...sidecarProxy({ app: "webapp" }, "shop"), interceptionMode: "NONE" as const };

  it("lists exactly the resources the patches and extensions changed, each with what changed it", () => {
    expect(folder.messages).toEqual([]);
    const changes = configDiff(folder.mesh, testContext(folder.dir, proxy));
    expect(changes.map(({ type, name, change, by }) => ({ type, name, change, by }))).toEqual([
      { type: TypeUrl.Cluster, name: CLUSTER, change: "changed", by: ["EnvoyFilter shop/timeouts spec.configPatches[0] (CLUSTER MERGE)"] },
      { type: TypeUrl.Listener, name: "127.0.0.1_8080", change: "changed", by: ["TrafficExtension shop/tag"] },
    ]);
    const cluster = changes[0]!;
    expect(cluster.before).toMatchObject({ connect_timeout: "10s" });
    expect(cluster.after).toMatchObject({ connect_timeout: "2s" });
  });

  it("renders a unified diff per resource, headed by what changed it", () => {
    const text = renderConfigDiff("webapp", configDiff(folder.mesh, testContext(folder.dir, proxy)));
    expect(text).toContain(`# clusters/${CLUSTER} changed by EnvoyFilter shop/timeouts spec.configPatches[0] (CLUSTER MERGE)`);
    expect(text).toContain(`--- clusters/${CLUSTER} (without)`);
    expect(text).toContain(`+++ clusters/${CLUSTER} (with)`);
    expect(text).toMatch(/^-connect_timeout: 10s$/m);
    expect(text).toMatch(/^\+connect_timeout: 2s$/m);
    expect(text).toContain("# listeners/127.0.0.1_8080 changed by TrafficExtension shop/tag");
    expect(text).toMatch(/^\+ +- name: extensions\.istio\.io\/trafficextension\/shop\.tag$/m);
  });

  it("says so when nothing changes a proxy's configuration", () => {
    const plain = configFolder({ "mesh.yaml": FILES["mesh.yaml"] });
    expect(configDiff(plain.mesh, testContext(plain.dir, proxy))).toEqual([]);
    expect(renderConfigDiff("webapp", [])).toBe("no EnvoyFilter or extension changes the configuration of webapp");
  });
});
