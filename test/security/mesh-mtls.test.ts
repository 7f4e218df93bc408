// Mutual TLS between pods (issue 12 items 3 and 7), with real sidecars on a secured control plane: each sidecar is
// `skiff agent` + Envoy in its pod as uid 1337 (secured-sidecar.ts), capture as istio-init's. The webapp pod calls the
// catalog service by name; its sidecar uses mTLS by auto-mTLS (no DestinationRule) and checks the catalog's
// certificate against the service's identity; the catalog's sidecar terminates it and passes the verified caller on in
// x-forwarded-client-cert. A pod without a sidecar (`legacy`) calls the catalog pod in plain text: refused under
// STRICT, served under PERMISSIVE (Istio's documented migration path,
// istio.io/latest/docs/tasks/security/authentication/mtls-migration/).
import { afterAll, beforeAll, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../harness/envoy.js";
import { describePods } from "../harness/e2e.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";
import { type SecuredSidecar, startSecuredSidecar } from "../harness/secured-sidecar.js";

const PORT = 8080;
const HOST = "catalog.shop.svc.cluster.local";
const CLUSTER = `outbound|${PORT}||${HOST}`;

const catalogService = (address: string, serviceAccount = "catalog") => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  ports: [{ number: ${PORT}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: ${address}, serviceAccount: ${serviceAccount} }]
`;

const peerAuthentication = (mode: string) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: shop }
spec: { mtls: { mode: ${mode} } }
`;

const istioMutual = (subjectAltNames: string[]) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: ${HOST}
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL, subjectAltNames: [${subjectAltNames.join(", ")}] } }
`;

describePods("mutual TLS between sidecars (PeerAuthentication, auto-mTLS, ISTIO_MUTUAL)", () => {
  let mesh: MeshNetwork;
  let dataDir: string;
  let controlPlane: MeshControlPlane;
  let catalog: TestPod;
  let catalogSidecar: SecuredSidecar;
  let webappSidecar: SecuredSidecar;
  let webappApp: PodApp;
  let legacyApp: PodApp;

  /** The webapp's call through both sidecars; the header the catalog's app got from its sidecar. */
  const meshCall = async () => {
    const response = await webappApp.request(HOST, PORT);
    const echoed = response.status === 200 ? (JSON.parse(response.body) as { headers: Record<string, string> }) : undefined;
    return { status: response.status, xfcc: echoed?.headers["x-forwarded-client-cert"] };
  };
  /** The legacy pod's plain-text call straight to the catalog pod (captured by the catalog's sidecar). */
  const plainCall = () => legacyApp.request(catalog.address, PORT).then((response) => response.status, (error: Error) => error.message);

  beforeAll(async () => {
    mesh = startMeshNetwork();
    dataDir = mkdtempSync(join(tmpdir(), "skiff-mesh-mtls-"));
    catalog = mesh.addPod("catalog", { capture: true, namespace: "shop", labels: { app: "catalog" } });
    const webapp = mesh.addPod("webapp", { capture: true, namespace: "shop", labels: { app: "webapp" } });
    const legacy = mesh.addPod("legacy", { namespace: "legacy" });
    controlPlane = await mesh.startControlPlane(
      { "catalog.yaml": catalogService(catalog.address), "peer-authentication.yaml": peerAuthentication("STRICT") },
      { security: { dataDir } },
    );
    mesh.addService(HOST);
    const catalogApp = await catalog.startApp();
    await catalogApp.listen(PORT);
    [catalogSidecar, webappSidecar] = await Promise.all([
      startSecuredSidecar(catalog, controlPlane, { serviceAccount: "catalog" }),
      startSecuredSidecar(webapp, controlPlane, { serviceAccount: "webapp" }),
    ]);
    webappApp = await webapp.startApp();
    legacyApp = await legacy.startApp();
    for (const sidecar of [catalogSidecar, webappSidecar]) {
      await waitFor(async () => ((await sidecar.envoy.stat("listener_manager.total_listeners_active")) ?? 0) > 0, "the sidecar's listeners are active", 60_000);
    }
  }, 240_000);
  afterAll(async () => {
    await mesh?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("STRICT: a sidecar's call is mTLS by auto-mTLS, and the server sees the caller's verified identity", async () => {
    await waitFor(async () => (await meshCall()).status === 200, "the webapp reaches the catalog through both sidecars", 30_000);
    const { xfcc } = await meshCall();
    // Istio's XFCC: Hash, Subject, URI and DNS of the verified client certificate; the URI is the caller's SPIFFE ID.
    expect(xfcc).toContain(`URI=${webappSidecar.identity}`);
    expect(xfcc).toMatch(/By=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/catalog/);
    expect(await webappSidecar.envoy.stat(`cluster.${CLUSTER}.ssl.handshake`)).toBeGreaterThan(0);
  });

  it("STRICT: plain text from a workload outside the mesh is refused", async () => {
    const result = await plainCall();
    expect(result).not.toBe(200);
    expect(typeof result).toBe("string"); // no HTTP answer at all: the connection is closed, no chain accepts it
  });

  it("PERMISSIVE: plain text and mTLS are both served", async () => {
    controlPlane.write("peer-authentication.yaml", peerAuthentication("PERMISSIVE"));
    await waitFor(async () => (await plainCall()) === 200, "the legacy pod's plain-text call is served", 30_000);
    const plain = await legacyApp.request(catalog.address, PORT);
    expect(JSON.parse(plain.body).headers["x-forwarded-client-cert"]).toBeUndefined();
    const { status, xfcc } = await meshCall();
    expect(status).toBe(200);
    expect(xfcc).toContain(`URI=${webappSidecar.identity}`);
  });

  it("DISABLE: auto-mTLS follows the namespace's mode, so the sidecar sends plain text", async () => {
    controlPlane.write("peer-authentication.yaml", peerAuthentication("DISABLE"));
    await waitFor(async () => (await meshCall()).xfcc === undefined, "the webapp's sidecar calls in plain text", 30_000);
    expect((await meshCall()).status).toBe(200);
    expect(await plainCall()).toBe(200);
  });

  it("ISTIO_MUTUAL checks the server's identity: a certificate not in subjectAltNames fails the handshake (503)", async () => {
    controlPlane.write("peer-authentication.yaml", peerAuthentication("STRICT"));
    controlPlane.write("catalog-rule.yaml", istioMutual(["spiffe://cluster.local/ns/shop/sa/impostor"]));
    // Wait for the SAN check itself: right after DISABLE -> STRICT a call can also get 503 because the webapp's sidecar
    // still speaks plain text to the now STRICT catalog.
    await waitFor(
      async () => (await meshCall()).status === 503 && ((await webappSidecar.envoy.stat(`cluster.${CLUSTER}.ssl.fail_verify_san`)) ?? 0) > 0,
      "the webapp's call fails the SAN check",
      30_000,
    );
    controlPlane.write("catalog-rule.yaml", istioMutual([catalogSidecar.identity]));
    await waitFor(async () => (await meshCall()).status === 200, "the webapp's call passes with the catalog's identity", 30_000);
    expect((await meshCall()).xfcc).toContain(`URI=${webappSidecar.identity}`);
  });

  it("auto-mTLS checks the service's identity: an endpoint whose service account is not the server's fails (503)", async () => {
    controlPlane.write("catalog-rule.yaml", "");
    controlPlane.write("catalog.yaml", catalogService(catalog.address, "someone-else"));
    await waitFor(async () => (await meshCall()).status === 503, "the webapp's call fails the SAN check", 30_000);
    controlPlane.write("catalog.yaml", catalogService(catalog.address));
    await waitFor(async () => (await meshCall()).status === 200, "the webapp's call passes again", 30_000);
  });
});
