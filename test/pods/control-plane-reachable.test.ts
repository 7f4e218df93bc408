// A control plane sidecars in pods reach (issue 8 item 5, reachability): `skiff control-plane --listen` on the mesh's
// host address, a sidecar in a capturing pod bootstrapped with `--xds-address` to it. Its xDS connection (uid 1337)
// is not captured, it gets its configuration and routes the app's calls; the module and status server answers pods
// too. Plain-text xDS listens only on loopback or a mesh bridge address.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startControlPlane } from "../../control/control-plane.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import type { Envoy } from "../harness/envoy.js";
import { waitFor } from "../harness/envoy.js";
import { describePods } from "../harness/e2e.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";

const CATALOG_PORT = 8080;
const execFileAsync = promisify(execFile);

describePods("a control plane reachable from pods", () => {
  let mesh: MeshNetwork;
  let webapp: TestPod;
  let controlPlane: MeshControlPlane;
  let sidecar: Envoy;
  let app: PodApp;
  let catalogApp: PodApp;

  beforeAll(async () => {
    mesh = startMeshNetwork();
    const catalog = mesh.addPod("catalog");
    webapp = mesh.addPod("webapp", { capture: true, namespace: "shop", labels: { app: "webapp" } });
    catalogApp = await catalog.startApp();
    await catalogApp.listen(CATALOG_PORT);
    controlPlane = await mesh.startControlPlane({
      "catalog.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{ number: ${CATALOG_PORT}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: ${catalog.address} }]
`,
    });
    mesh.addService("catalog.shop.svc.cluster.local");
    sidecar = await webapp.startSidecar({ bootstrap: webapp.sidecarBootstrap(controlPlane) });
    app = await webapp.startApp();
  });
  afterAll(() => mesh.stop());

  it("serves the sidecar in a capturing pod at the mesh's host address, with the pod's identity", async () => {
    expect(controlPlane.host).toBe(mesh.hostAddress);
    expect(controlPlane.log.join("\n")).toContain(`xDS (ADS) on ${mesh.hostAddress}:${controlPlane.xdsPort} in PLAIN TEXT`);
    await waitFor(async () => (await sidecar.stat("control_plane.connected_state")) === 1, "the sidecar connected to the control plane");
    const nodeId = `sidecar~${webapp.address}~webapp.shop~shop.svc.cluster.local`;
    const synced = () => controlPlane.controlPlane.xds.status().find((s) => s.nodeId === nodeId);
    await waitFor(() => ["Cluster", "Listener"].every((type) => synced()?.types[type]?.status === "SYNCED"), "the sidecar's clusters and listeners SYNCED");
  });

  it("routes the app's captured calls with the configuration it got", async () => {
    // The service's name resolves to a service address in every pod; the sidecar captures the call and routes it by
    // its Host to the ServiceEntry's endpoint, the catalog pod.
    await waitFor(async () => (await sidecar.admin("/listeners")).includes(`0.0.0.0:${CATALOG_PORT}`), "the sidecar's outbound listener for the catalog port");
    const response = await app.request("catalog.shop.svc.cluster.local", CATALOG_PORT);
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("catalog");
    expect(JSON.parse(response.body).remoteAddress).toBe(webapp.address);
  });

  it("answers pods on its HTTP server too (modules, /status)", async () => {
    // From the pod without capture: in the capturing pod the app's call would go to its sidecar's 15001, where
    // today's sidecar configuration has no listener (the sidecar itself, as uid 1337, is not captured).
    const status = await catalogApp.request(mesh.hostAddress, controlPlane.httpPort, { path: "/status" });
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body).map((s: { nodeId: string }) => s.nodeId)).toContain(`sidecar~${webapp.address}~webapp.shop~shop.svc.cluster.local`);
  });

  it("prints the proxy's status from the command line at that address", async () => {
    // Not spawnSync: the control plane runs in this process and must answer meanwhile.
    const run = await execFileAsync(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), "proxy-status", "--host", mesh.hostAddress, "--http-port", String(controlPlane.httpPort)], { cwd: PROJECT_ROOT });
    expect(run.stdout).toMatch(new RegExp(`sidecar~${webapp.address.replaceAll(".", "\\.")}~webapp\\.shop.*SYNCED`));
  });

  it("refuses to listen anywhere but loopback or a mesh bridge: it serves without authentication", async () => {
    for (const host of ["0.0.0.0", "10.1.2.3"]) {
      await expect(startControlPlane({ configDir: "/nonexistent", host, security: { plaintext: true } })).rejects.toThrow(
        new RegExp(`cannot listen on ${host.replaceAll(".", "\\.")}: .* only on 127\\.0\\.0\\.1 or a mesh bridge address in 198\\.18\\.0\\.0/15`),
      );
    }
  });
});
