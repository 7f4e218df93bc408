// East-west traffic between pods through two capturing sidecars configured only by the control plane (issue 8 item 7):
// webapp calls catalog by name; its sidecar captures the call (15001) and routes it by the VirtualService bound to
// `mesh`; the catalog pod's sidecar captures it inbound (15006) and hands it to the app from 127.0.0.6. Shown here:
// the 90/10 shift and mirroring between pods, ALLOW_ANY vs REGISTRY_ONLY for a host outside the registry, a Sidecar
// resource shrinking the webapp sidecar's configuration, a pod added and one removed under steady load with no failed
// request, and locality failover between pods. The tests run in order on one mesh, each rewriting the YAML it needs.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INBOUND_PASSTHROUGH_SOURCE } from "../../control/mesh/capture.js";
import type { Tally } from "../harness/client.js";
import { type Envoy, waitFor } from "../harness/envoy.js";
import { describePods } from "../harness/e2e.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";
import { eventually } from "../scenarios/mesh.js";

const PORT = 8080;
const CATALOG = "catalog.shop.svc.cluster.local";

describePods("mesh traffic between pods", () => {
  let mesh: MeshNetwork;
  let controlPlane: MeshControlPlane;
  let webapp: TestPod;
  let webappSidecar: Envoy;
  let client: PodApp;
  const catalog: Record<string, { pod: TestPod; app: PodApp; sidecar: Envoy }> = {};
  let external: TestPod;

  /** The catalog ServiceEntry with one endpoint per listed version (`locality` per version if given). */
  const catalogEntry = (versions: string[], locality: Record<string, string> = {}) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${CATALOG}]
  location: MESH_INTERNAL
  ports: [{ number: ${PORT}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints:
${versions.map((v) => `  - { address: ${catalog[v]!.pod.address}, labels: { version: ${v} }${locality[v] ? `, locality: ${locality[v]}` : ""} }`).join("\n")}
`;
  const subsets = (trafficPolicy = "") => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: ${CATALOG}
  ${trafficPolicy}
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`;
  const route = (http: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${CATALOG}]
  gateways: [mesh]
  http:
${http}
`;
  const toHost = route(`  - route: [{ destination: { host: ${CATALOG} } }]`);

  const load = (count: number) => client.load(CATALOG, PORT, { count, concurrency: 4 });

  async function startCatalog(version: string): Promise<void> {
    const pod = mesh.addPod(`catalog-${version}`, { capture: true, namespace: "shop", labels: { app: "catalog", version } });
    const app = await pod.startApp();
    await app.listen(PORT);
    const sidecar = await pod.startSidecar({ bootstrap: pod.sidecarBootstrap(controlPlane) });
    catalog[version] = { pod, app, sidecar };
  }

  beforeAll(async () => {
    mesh = startMeshNetwork();
    controlPlane = await mesh.startControlPlane({});
    await Promise.all(["v1", "v2"].map(startCatalog));
    external = mesh.addPod("external");
    await (await external.startApp()).listen(PORT);
    webapp = mesh.addPod("webapp", { capture: true, namespace: "shop", labels: { app: "webapp", "istio-locality": "r1.z1" } });
    mesh.addService(CATALOG);
    controlPlane.write("catalog.yaml", catalogEntry(["v1", "v2"]));
    controlPlane.write("catalog-dr.yaml", subsets());
    controlPlane.write(
      "inventory.yaml",
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: inventory, namespace: shop }
spec:
  hosts: [inventory.shop.svc.cluster.local]
  ports: [{ number: 9000, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: ${external.address} }]
`,
    );
    webappSidecar = await webapp.startSidecar({ bootstrap: webapp.sidecarBootstrap(controlPlane) });
    client = await webapp.startApp();
  }, 120_000);
  afterAll(() => mesh?.stop());

  describe("gateways: mesh between pods", () => {
    it("shifts 90/10 between catalog v1 and v2 pods through both sidecars", async () => {
      controlPlane.write(
        "catalog-vs.yaml",
        route(`  - route:
    - { destination: { host: ${CATALOG}, subset: v1 }, weight: 90 }
    - { destination: { host: ${CATALOG}, subset: v2 }, weight: 10 }`),
      );
      // Until the route arrives the catalog cluster balances over both pods (half to v2): wait for a sample that the
      // old split would give with probability ~0.1% (at most 10 of 40 on v2), so the tally below is all 90/10.
      await eventually(async () => expect((await load(40)).byUpstream["catalog-v2"] ?? 0).toBeLessThanOrEqual(10), 20_000);
      const tally = await load(300);
      expect(tally.byStatus).toEqual({ 200: 300 });
      // Binomial(300, 0.1): mean 30, standard deviation 5.2.
      expect(tally.byUpstream["catalog-v2"]).toBeGreaterThanOrEqual(12);
      expect(tally.byUpstream["catalog-v2"]).toBeLessThanOrEqual(55);
      expect(tally.byUpstream["catalog-v1"]).toBe(300 - tally.byUpstream["catalog-v2"]!);
      // Each catalog pod's sidecar captured the call inbound and delivered it from Istio's inbound passthrough address.
      const received = await catalog.v1!.app.received(PORT);
      expect(new Set(received.map((request) => request.remoteAddress))).toEqual(new Set([INBOUND_PASSTHROUGH_SOURCE]));
      expect(await catalog.v1!.sidecar.stat("listener.0.0.0.0_15006.downstream_cx_total")).toBeGreaterThan(0);
    });

    it("mirrors every request to the v2 pod while v1 answers", async () => {
      controlPlane.write(
        "catalog-vs.yaml",
        route(`  - route: [{ destination: { host: ${CATALOG}, subset: v1 } }]
    mirror: { host: ${CATALOG}, subset: v2 }`),
      );
      // Copies carry Envoy's "-shadow" host suffix; the checked requests are told apart by their path.
      const shadowed = async (path: string) =>
        (await catalog.v2!.app.received(PORT)).filter((request) => /-shadow(:\d+)?$/.test(request.headers.host ?? "") && request.path === path).length;
      await eventually(async () => {
        await client.load(CATALOG, PORT, { count: 5, path: "/warm-up" });
        expect(await shadowed("/warm-up")).toBeGreaterThan(0);
      }, 20_000);
      const tally = await client.load(CATALOG, PORT, { count: 40, concurrency: 4, path: "/mirrored" });
      expect(tally.byUpstream).toEqual({ "catalog-v1": 40 });
      await eventually(async () => expect(await shadowed("/mirrored")).toBe(40));
    });
  });

  describe("outboundTrafficPolicy", () => {
    it("ALLOW_ANY passes a call to a host outside the registry on; REGISTRY_ONLY answers it 502", async () => {
      // `external` is a pod no ServiceEntry names, called on a port the mesh has a listener for.
      const allowed = await client.request("external", PORT);
      expect(allowed.status).toBe(200);
      expect(allowed.headers["x-upstream"]).toBe("external");
      controlPlane.write("meshconfig.yaml", "outboundTrafficPolicy: { mode: REGISTRY_ONLY }\n");
      await eventually(async () => expect((await client.request("external", PORT)).status).toBe(502), 20_000);
      // The registry's services still work.
      expect((await client.request(CATALOG, PORT)).status).toBe(200);
      controlPlane.write("meshconfig.yaml", "outboundTrafficPolicy: { mode: ALLOW_ANY }\n");
      await eventually(async () => expect((await client.request("external", PORT)).status).toBe(200), 20_000);
    });
  });

  describe("Sidecar resource", () => {
    it("shrinks the webapp sidecar's configuration to the egress hosts it names", async () => {
      // What the sidecar runs: its clusters and active listeners (Envoy keeps a route configuration no listener uses
      // any more in its config dump, so that is not the place to look).
      const hasCluster = async () => (await webappSidecar.admin("/clusters")).includes("outbound|9000||inventory.shop.svc.cluster.local");
      const hasListener = async () => (await webappSidecar.admin("/listeners")).includes("0.0.0.0_9000");
      expect([await hasCluster(), await hasListener()]).toEqual([true, true]);
      controlPlane.write(
        "sidecar.yaml",
        `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: webapp, namespace: shop }
spec:
  workloadSelector: { labels: { app: webapp } }
  egress: [{ hosts: ["./${CATALOG}"] }]
`,
      );
      await waitFor(async () => !(await hasCluster()), "the inventory cluster gone from the webapp sidecar", 20_000);
      expect(await hasListener()).toBe(false);
      expect((await client.request(CATALOG, PORT)).status).toBe(200);
    });
  });

  describe("endpoints changing under load", () => {
    it("adds a pod and removes one while requests keep flowing, with no failed request", async () => {
      controlPlane.write("catalog-vs.yaml", toHost);
      await eventually(async () => expect(Object.keys((await load(20)).byUpstream).sort()).toEqual(["catalog-v1", "catalog-v2"]), 20_000);
      // Steady load from the webapp pod: batches one after another until told to stop.
      const batches: Omit<Tally, "responses">[] = [];
      let stop = false;
      const running = (async () => {
        while (!stop) batches.push(await load(200));
      })();
      const inEndpoints = async (pod: TestPod) => (await webappSidecar.admin("/clusters")).includes(`${pod.address}:${PORT}`);

      try {
        // A new pod: app and sidecar first, then it joins the service.
        await startCatalog("v3");
        controlPlane.write("catalog.yaml", catalogEntry(["v1", "v2", "v3"]));
        await waitFor(async () => (await catalog.v3!.app.received(PORT)).length > 0, "the new pod serving", 30_000);
        // A pod leaves: out of the service first, then, once no sidecar sends it anything, removed.
        controlPlane.write("catalog.yaml", catalogEntry(["v2", "v3"]));
        await waitFor(async () => !(await inEndpoints(catalog.v1!.pod)), "catalog-v1 out of the webapp sidecar's endpoints", 30_000);
        // Requests already on their way finish; after a quiet second nothing more reaches it.
        const served = (await catalog.v1!.app.received(PORT)).length;
        await sleep(1000);
        expect((await catalog.v1!.app.received(PORT)).length).toBe(served);
        catalog.v1!.pod.remove();
        const after = batches.length;
        await waitFor(() => batches.length >= after + 2, "two more batches after the removal", 60_000);
      } finally {
        stop = true;
        await running;
      }
      const total = batches.reduce((sum, batch) => sum + batch.total, 0);
      const ok = batches.reduce((sum, batch) => sum + (batch.byStatus[200] ?? 0), 0);
      expect(batches.flatMap((batch) => Object.entries(batch.errors))).toEqual([]);
      expect(ok).toBe(total);
      const last = batches.at(-1)!;
      expect(Object.keys(last.byUpstream).sort()).toEqual(["catalog-v2", "catalog-v3"]);
    });
  });

  describe("locality failover", () => {
    it("keeps the webapp pod's traffic in its locality, and fails over to the other region when that pod fails", async () => {
      // webapp is labelled istio-locality r1.z1; catalog-v2 is there, catalog-v3 in r2.
      controlPlane.write("catalog.yaml", catalogEntry(["v2", "v3"], { v2: "r1/z1", v3: "r2/z1" }));
      controlPlane.write("catalog-dr.yaml", subsets("trafficPolicy: { outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 } }"));
      await eventually(async () => expect((await load(40)).byUpstream).toEqual({ "catalog-v2": 40 }), 20_000);
      // Envoy ejects no more than maxEjectionPercent of a cluster's hosts (default 10%, i.e. none of two hosts).
      await catalog.v2!.app.stop();
      await eventually(async () => expect(await load(20)).toMatchObject({ byUpstream: { "catalog-v3": 20 }, byStatus: { 200: 20 } }), 20_000);
    });
  });
});
