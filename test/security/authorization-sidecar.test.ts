// AuthorizationPolicy and RequestAuthentication on a sidecar's inbound side (issue 12 items 4 and 7), between pods
// with secured sidecars (skiff agent + Envoy as uid 1337) and mesh-wide STRICT mTLS, so the caller's identity is its
// verified certificate. Each case is Istio's documented behaviour
// (istio.io/latest/docs/reference/config/security/authorization-policy/, .../tasks/security/authorization/authz-tcp/):
// an ALLOW policy admits the principals it names and refuses others (HTTP: 403 `RBAC: access denied`; TCP: the
// connection is closed by the network RBAC filter before tcp_proxy); DENY wins over ALLOW; `namespaces` match the
// caller's namespace from its SPIFFE ID; `requestPrincipals` need a JWT that the workload's RequestAuthentication
// verified.
import { afterAll, beforeAll, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describePods } from "../harness/e2e.js";
import { waitFor } from "../harness/envoy.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork } from "../harness/pods.js";
import { type SecuredSidecar, startSecuredSidecar } from "../harness/secured-sidecar.js";
import { signer } from "./jwt.js";

const HTTP_PORT = 8080;
const TCP_PORT = 9000;
const HOST = "catalog.shop.svc.cluster.local";
const ISSUER = "https://issuer.example.com";

const catalogService = (address: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  ports:
  - { number: ${HTTP_PORT}, name: http, protocol: HTTP }
  - { number: ${TCP_PORT}, name: tcp-data, protocol: TCP }
  resolution: STATIC
  endpoints: [{ address: ${address}, serviceAccount: catalog }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
`;

const policy = (name: string, spec: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: shop }
spec:
  selector: { matchLabels: { app: catalog } }
${spec}`;

/** Only the webapp's identity may call the catalog, on any port. */
const WEBAPP_ONLY = policy("webapp-only", `  action: ALLOW
  rules:
  - from: [{ source: { principals: [cluster.local/ns/shop/sa/webapp] } }]
`);

describePods("AuthorizationPolicy and RequestAuthentication on sidecars, with mTLS identities", () => {
  let mesh: MeshNetwork;
  let dataDir: string;
  let controlPlane: MeshControlPlane;
  let sidecars: SecuredSidecar[];
  let webapp: PodApp;
  let intruder: PodApp;
  const issuer = signer("k1", ISSUER);

  const status = (app: PodApp, options: { port?: number; path?: string; headers?: Record<string, string> } = {}) =>
    app.request(HOST, options.port ?? HTTP_PORT, { path: options.path, headers: options.headers }).then(
      (response) => (response.status === 403 ? `403 ${response.body}` : response.status),
      (error: Error) => `error ${error.message}`,
    );

  beforeAll(async () => {
    mesh = startMeshNetwork();
    dataDir = mkdtempSync(join(tmpdir(), "skiff-authz-sidecar-"));
    const catalog = mesh.addPod("catalog", { capture: true, namespace: "shop", labels: { app: "catalog" } });
    const webappPod = mesh.addPod("webapp", { capture: true, namespace: "shop", labels: { app: "webapp" } });
    const intruderPod = mesh.addPod("intruder", { capture: true, namespace: "other", labels: { app: "intruder" } });
    controlPlane = await mesh.startControlPlane({ "catalog.yaml": catalogService(catalog.address), "policy.yaml": WEBAPP_ONLY }, { security: { dataDir } });
    mesh.addService(HOST);
    const catalogApp = await catalog.startApp();
    await catalogApp.listen(HTTP_PORT);
    await catalogApp.listen(TCP_PORT);
    sidecars = await Promise.all([
      startSecuredSidecar(catalog, controlPlane, { serviceAccount: "catalog" }),
      startSecuredSidecar(webappPod, controlPlane, { serviceAccount: "webapp" }),
      startSecuredSidecar(intruderPod, controlPlane, { serviceAccount: "intruder" }),
    ]);
    webapp = await webappPod.startApp();
    intruder = await intruderPod.startApp();
    await waitFor(async () => (await status(webapp)) === 200, "the webapp reaches the catalog through mTLS", 60_000);
  }, 240_000);
  afterAll(async () => {
    await mesh?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("ALLOW by principal over HTTP: the named identity is served, another mesh identity gets 403", async () => {
    expect(await status(webapp)).toBe(200);
    expect(await status(intruder)).toBe("403 RBAC: access denied");
    const rbac = await sidecars[0]!.envoy.stats("rbac");
    expect([...rbac].some(([name, value]) => name.endsWith("rbac.denied") && value > 0)).toBe(true);
  });

  it("ALLOW by principal over TCP: the network RBAC filter closes the other identity's connection", async () => {
    // HTTP over a port declared TCP: the sidecars carry it as bytes (tcp_proxy), so only the network filter decides.
    expect(await status(webapp, { port: TCP_PORT })).toBe(200);
    expect(await status(intruder, { port: TCP_PORT })).toMatch(/^error /);
    expect((await sidecars[0]!.envoy.stat("tcp.rbac.denied")) ?? 0).toBeGreaterThan(0);
  });

  it("DENY is evaluated before ALLOW: a denied path is refused even to the allowed identity", async () => {
    controlPlane.write("deny.yaml", policy("no-admin", `  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]
`));
    await waitFor(async () => (await status(webapp, { path: "/admin/users" })) === "403 RBAC: access denied", "the DENY policy applies", 30_000);
    expect(await status(webapp, { path: "/catalog" })).toBe(200);
    controlPlane.write("deny.yaml", "");
  });

  it("namespaces: a rule on the caller's namespace admits the other namespace's identity", async () => {
    controlPlane.write("other.yaml", policy("from-other", `  action: ALLOW
  rules:
  - from: [{ source: { namespaces: [other] } }]
    to: [{ operation: { methods: [GET], paths: ["/public"] } }]
`));
    await waitFor(async () => (await status(intruder, { path: "/public" })) === 200, "the namespace rule admits the other namespace", 30_000);
    expect(await status(intruder, { path: "/private" })).toBe("403 RBAC: access denied");
    controlPlane.write("other.yaml", "");
  });

  it("requestPrincipals: a JWT the sidecar verified (RequestAuthentication) names the caller; a bad token gets 401", async () => {
    controlPlane.write("jwt.yaml", `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: shop }
spec:
  selector: { matchLabels: { app: catalog } }
  jwtRules:
  - issuer: "${ISSUER}"
    jwks: '${issuer.jwks}'
---
${policy("alice", `  action: ALLOW
  rules:
  - from: [{ source: { requestPrincipals: ["${ISSUER}/alice"] } }]
`)}`);
    const bearer = (sub: string) => ({ authorization: `Bearer ${issuer.token({ sub })}` });
    await waitFor(async () => (await status(intruder, { headers: bearer("alice") })) === 200, "alice's token admits the call", 30_000);
    expect(await status(intruder, { headers: bearer("bob") })).toBe("403 RBAC: access denied");
    expect(await status(intruder)).toBe("403 RBAC: access denied");
    expect(await status(intruder, { headers: { authorization: "Bearer not-a-token" } })).toBe(401);
  });
});
