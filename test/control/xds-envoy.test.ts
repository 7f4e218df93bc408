// A real Envoy started from a `skiff bootstrap` bootstrap gets listeners, routes, clusters and endpoints from the
// xDS server and proxies to a real upstream; updates that add and remove clusters never fail a request.
import { parse } from "yaml";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrapYaml } from "../../control/bootstrap/bootstrap.js";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import { TypeUrl } from "../../control/resources.js";
import { XdsServer } from "../../control/xds/server.js";
import { send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { meshResources } from "./fixtures.js";
import { steadyLoad } from "./load.js";

for (const delta of [false, true]) {
  describeE2E(`Envoy configured only by ADS (${delta ? "delta" : "state of the world"})`, () => {
    const cache = new SnapshotCache();
    let xds: XdsServer;
    let blue: Upstream;
    let green: Upstream;
    let envoy: Envoy;
    let port: number;
    const log: string[] = [];

    beforeAll(async () => {
      blue = await startUpstream({ name: "blue" });
      green = await startUpstream({ name: "green" });
      xds = await XdsServer.start({ cache, log: (line) => log.push(line) });
      cache.set("gw-1", meshResources({ clusters: { blue: [blue.port] }, routeTo: "blue" }));
      const bootstrap = parse(bootstrapYaml({ nodeId: "gw-1", role: "gateway", xdsPort: xds.port, adminPort: 0, delta })) as Record<string, unknown>;
      envoy = await startEnvoy({ bootstrap });
      port = await envoy.listenerPort("ingress");
    });

    afterAll(async () => {
      await envoy?.stop();
      await xds?.stop();
      await blue?.stop();
      await green?.stop();
    });

    it("proxies to the upstream named by the pushed route", async () => {
      const response = await send(port, { path: "/first" });
      expect(response.status).toBe(200);
      expect(response.headers["x-upstream"]).toBe("blue");
    });

    it("shows the proxy SYNCED for every type it holds", async () => {
      await expect.poll(() => xds.status()[0]?.types.RouteConfiguration?.status).toBe("SYNCED");
      const [status] = xds.status();
      expect(status.nodeId).toBe("gw-1");
      expect(status.protocol).toBe(delta ? "delta" : "sotw");
      for (const type of ["Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"]) expect(status.types[type]?.status).toBe("SYNCED");
    });

    it("moves traffic to a new cluster and drops the old one under load without a failed request", async () => {
      // Add green and route to it, removing blue in the same snapshot, while requests keep flowing.
      const load = steadyLoad(port, "x-upstream");
      await expect.poll(() => load.total()).toBeGreaterThan(20);
      cache.set("gw-1", meshResources({ clusters: { green: [green.port] }, routeTo: "green" }));
      await expect.poll(() => load.values.get("green") ?? 0, { timeout: 20_000 }).toBeGreaterThan(50);
      await expect.poll(async () => (await envoy.admin("/clusters")).includes("blue::")).toBe(false);
      await load.stop();
      expect(Object.fromEntries(load.statuses)).toEqual({ 200: load.total() });
      expect(load.values.get("blue")).toBeGreaterThan(0);
      expect(await envoy.stat("cluster_manager.cds.update_rejected")).toBe(0);
    });

    it("records Envoy's NACK of a bad cluster with its error, keeps serving, and does not resend it", async () => {
      const bad = meshResources({ clusters: { green: [green.port], broken: [green.port] }, routeTo: "green" });
      bad[TypeUrl.Cluster].find((cluster) => cluster.name === "broken")!.body.connect_timeout = "-1s";
      cache.set("gw-1", bad);
      await expect.poll(() => xds.status()[0]?.types.Cluster?.status).toBe("ERROR");
      // Envoy's own words (its error_detail).
      expect(xds.status()[0].types.Cluster?.error).toMatch(/Invalid duration: Expected positive duration/);
      expect(log.some((line) => /gw-1: NACK Cluster .*Invalid duration/.test(line))).toBe(true);
      expect((await send(port)).headers["x-upstream"]).toBe("green");

      cache.set("gw-1", meshResources({ clusters: { green: [green.port], fixed: [green.port] }, routeTo: "green" }));
      await expect.poll(() => xds.status()[0]?.types.Cluster?.status).toBe("SYNCED");
      await expect.poll(async () => (await envoy.admin("/clusters")).includes("fixed::")).toBe(true);
      // Rejected once: the bad version was never sent again.
      expect(await envoy.stat("cluster_manager.cds.update_rejected")).toBe(1);
      expect((await sendMany(port, { count: 20 })).byStatus).toEqual({ 200: 20 });
    });

    it("warms a changed cluster whose endpoints did not change (they are sent again) and serves with it", async () => {
      // To Envoy a changed EDS cluster is a new one that warms until endpoints arrive for it: without them again, it
      // stays warming, the old cluster keeps serving, and the CDS update is never acknowledged.
      cache.set("gw-1", meshResources({ clusters: { green: [green.port] }, routeTo: "green" }));
      await expect.poll(async () => (await send(port)).headers["x-upstream"], { timeout: 20_000 }).toBe("green");
      await expect.poll(() => xds.status()[0]?.types.Cluster?.status, { timeout: 20_000 }).toBe("SYNCED");
      const modified = (await envoy.stat("cluster_manager.cluster_modified")) ?? 0;
      const changed = meshResources({ clusters: { green: [green.port] }, routeTo: "green" });
      changed[TypeUrl.Cluster].find((cluster) => cluster.name === "green")!.body.connect_timeout = "2s";
      cache.set("gw-1", changed);
      await expect.poll(async () => await envoy.stat("cluster_manager.cluster_modified"), { timeout: 20_000 }).toBeGreaterThan(modified);
      await expect.poll(async () => await envoy.stat("cluster_manager.warming_clusters"), { timeout: 20_000 }).toBe(0);
      await expect.poll(() => xds.status()[0]?.types.Cluster?.status, { timeout: 20_000 }).toBe("SYNCED");
      expect(await envoy.admin("/config_dump?resource=dynamic_active_clusters")).toContain('"connect_timeout": "2s"');
      expect((await send(port)).headers["x-upstream"]).toBe("green");
    });

    it("keeps serving while the control plane is down, and resyncs when it is back on the same port", async () => {
      const port0 = xds.port;
      await xds.stop();
      expect((await send(port)).status).toBe(200);
      xds = await XdsServer.start({ cache, port: port0, log: (line) => log.push(line) });
      cache.set("gw-1", meshResources({ clusters: { blue: [blue.port] }, routeTo: "blue" }));
      await expect.poll(async () => (await send(port)).headers["x-upstream"], { timeout: 30_000 }).toBe("blue");
      await expect.poll(() => xds.status()[0]?.types.RouteConfiguration?.status).toBe("SYNCED");
    });

    it("applies a changed cluster whose endpoints did not change (Envoy re-warms it and needs them again)", async () => {
      // A DestinationRule edit changes a cluster but not its endpoints; Envoy keeps the old cluster serving and the
      // new one warming until the endpoints arrive again.
      const changed = meshResources({ clusters: { blue: [blue.port] }, routeTo: "blue" });
      changed[TypeUrl.Cluster].find((cluster) => cluster.name === "blue")!.body.connect_timeout = "7s";
      cache.set("gw-1", changed);
      await expect.poll(async () => (await envoy.admin("/config_dump?resource=dynamic_active_clusters")).includes('"connect_timeout": "7s"'), { timeout: 10_000 }).toBe(true);
      expect(await envoy.stat("cluster_manager.warming_clusters")).toBe(0);
      await expect.poll(() => xds.status()[0]?.types.Cluster?.status).toBe("SYNCED");
      expect((await sendMany(port, { count: 10 })).byStatus).toEqual({ 200: 10 });
    });
  });
}
