// Istio's traffic API where goldens would bury the point (issue 13): each case is what Istio does with a resource,
// or a refusal that names file, resource and field and says why.
import { afterAll, describe, expect, it } from "vitest";
import { configFolder, removeConfigFolders, sidecarProxy } from "./config.js";

afterAll(removeConfigFolders);

const catalogEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
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
