// Seed scenario "Istio Gateway": one gateway port serving webapp.istioinaction.io and catalog.istioinaction.io,
// each Host going to its own service; a host nobody routes gets 404; an httpsRedirect server answers 301.
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, GATEWAY, type Mesh, serviceEntry, startMesh } from "./mesh.js";

describeE2E("scenario: virtual hosting on an ingress gateway", () => {
  let webapp: Upstream;
  let catalog: Upstream;
  let mesh: Mesh;
  let port: number;
  let redirectPort: number;

  beforeAll(async () => {
    webapp = await startUpstream({ name: "webapp" });
    catalog = await startUpstream({ name: "catalog" });
    [port, redirectPort] = [await freePort(), await freePort()];
    mesh = await startMesh(
      {
        "gateway.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: coolstore-gateway
  namespace: shop
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: { number: ${port}, name: http, protocol: HTTP }
    hosts: ["webapp.istioinaction.io", "catalog.istioinaction.io"]
  - port: { number: ${redirectPort}, name: http-redirect, protocol: HTTP }
    hosts: ["webapp.istioinaction.io"]
    tls:
      httpsRedirect: true
`,
        "routes.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: webapp-vs-from-gw
  namespace: shop
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: { host: webapp, port: { number: 8080 } }
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: catalog-vs-from-gw
  namespace: shop
spec:
  hosts: ["catalog.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route:
    - destination: { host: catalog }
`,
        "services.yaml": [serviceEntry("webapp", 8080, { v1: webapp.port }), serviceEntry("catalog", 3000, { v1: catalog.port })].join("---\n"),
      },
      GATEWAY,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await webapp?.stop();
    await catalog?.stop();
  });

  it("routes by Host header to the right service on one port", async () => {
    const toWebapp = await send(port, { path: "/api/catalog", headers: { host: "webapp.istioinaction.io" } });
    const toCatalog = await send(port, { path: "/items", headers: { host: "catalog.istioinaction.io:" + port } });
    expect([toWebapp.status, toWebapp.headers["x-upstream"]]).toEqual([200, "webapp"]);
    expect([toCatalog.status, toCatalog.headers["x-upstream"]]).toEqual([200, "catalog"]);
    expect(JSON.parse(toCatalog.body).path).toBe("/items");
  });

  it("answers 404 for a host no Gateway server lists", async () => {
    const response = await send(port, { headers: { host: "unknown.istioinaction.io" } });
    expect(response.status).toBe(404);
    expect(response.headers["x-upstream"]).toBeUndefined();
  });

  it("redirects to https where the server sets tls.httpsRedirect", async () => {
    const response = await send(redirectPort, { path: "/login", headers: { host: "webapp.istioinaction.io" } });
    expect(response.status).toBe(301);
    expect(response.headers.location).toBe("https://webapp.istioinaction.io/login");
  });
});
