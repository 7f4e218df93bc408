// Seed scenario "fine-grained traffic routing": at the gateway, requests with `x-istio-cohort: internal` go to
// catalog v2 (a DestinationRule subset by label), everyone else to v1.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type CatalogVersions, freePort, GATEWAY, type Mesh, startCatalogVersions, startMesh } from "./mesh.js";

describeE2E("scenario: cohort routing by x-istio-cohort", () => {
  let catalog: CatalogVersions;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    catalog = await startCatalogVersions(3000);
    mesh = await startMesh(
      {
        "gateway.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: { name: catalog-gateway, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: http, protocol: HTTP }
    hosts: ["catalog.istioinaction.io"]
`,
        "catalog-vs.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: catalog-vs-from-gw, namespace: shop }
spec:
  hosts: ["catalog.istioinaction.io"]
  gateways: [catalog-gateway]
  http:
  - match:
    - headers:
        x-istio-cohort:
          exact: "internal"
    route:
    - destination: { host: catalog, subset: version-v2 }
  - route:
    - destination: { host: catalog, subset: version-v1 }
`,
        "catalog.yaml": catalog.yaml,
      },
      GATEWAY,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await catalog?.stop();
  });

  it("sends the internal cohort to v2 and everyone else to v1", async () => {
    const host = "catalog.istioinaction.io";
    const internal = await sendMany(port, { count: 20, request: () => ({ headers: { host, "x-istio-cohort": "internal" } }) });
    const others = await sendMany(port, { count: 20, request: (i): { headers: Record<string, string> } => ({ headers: i % 2 ? { host } : { host, "x-istio-cohort": "external" } }) });
    expect(internal.byUpstream).toEqual({ "catalog-v2": 20 });
    expect(others.byUpstream).toEqual({ "catalog-v1": 20 });
  });
});
