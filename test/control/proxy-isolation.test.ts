// What a proxy receives depends only on its own stream and on what selects it (issue 8, item 5):
// - a gateway that no Gateway selects gets an immediate, empty LDS answer (Envoy is ready at once instead of waiting
//   out its 15 s initial fetch timeout and then serving nothing), a log line saying why, and proxy-status shows it;
// - a second stream that reuses a running gateway's node id with another identity gets its own configuration and
//   never changes the gateway's, neither while it is open nor after it closed; the clash is logged.
import { afterAll, beforeAll, expect, it } from "vitest";
import { statusTable } from "../../control/cli/proxy-status.js";
import { TypeUrl } from "../../control/resources.js";
import type { StreamStatus } from "../../control/xds/streams.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";
import { AdsClient, names } from "./ads-client.js";

const statusOf = async (mesh: Mesh) => (await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/status`)).json()) as StreamStatus[];

describeE2E("a proxy that nothing selects", () => {
  let mesh: Mesh;

  beforeAll(async () => {
    const port = await freePort();
    mesh = await startMesh(
      { "gateway.yaml": gatewayRoute(port, "catalog.example.com", "catalog"), "services.yaml": serviceEntry("catalog", 3000, { v1: 9 }) },
      { nodeId: "lonely-gateway", role: "gateway", labels: { istio: "egressgateway" }, namespace: "default", ips: [] },
      // The machine is shared: allow for a slow start; the stats below tell an answer from a timeout.
      { readyTimeoutMs: 60_000 },
    );
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it("gets an empty listener set at once, which Envoy acknowledges", async () => {
    await expect.poll(async () => (await statusOf(mesh))[0]?.types.Listener?.status).toBe("SYNCED");
    // Ready because LDS was answered, not because Envoy gave up waiting for it (init_fetch_timeout, 15 s).
    expect(await mesh.envoy.stat("listener_manager.lds.update_success")).toBeGreaterThanOrEqual(1);
    expect(await mesh.envoy.stat("listener_manager.lds.init_fetch_timeout")).toBe(0);
    expect(JSON.parse(await mesh.envoy.admin("/listeners?format=json")).listener_statuses ?? []).toEqual([]);
  });

  it("logs why, and proxy-status shows it", async () => {
    expect(mesh.log.join("\n")).toMatch(/lonely-gateway.*no Gateway selects labels \{istio=egressgateway\}.*shop\/gw selects \{istio=ingressgateway\}/);
    const [row] = await statusOf(mesh);
    expect(row.notes?.join("\n")).toMatch(/no Gateway selects/);
    expect(statusTable(await statusOf(mesh))).toMatch(/lonely-gateway: no Gateway selects labels/);
  });
});

describeE2E("two streams with one node id", () => {
  let mesh: Mesh;
  let catalog: Upstream;
  let catalog2: Upstream;
  let port: number;

  beforeAll(async () => {
    catalog = await startUpstream({ name: "catalog" });
    catalog2 = await startUpstream({ name: "catalog-2" });
    port = await freePort();
    mesh = await startMesh(
      { "gateway.yaml": gatewayRoute(port, "catalog.example.com", "catalog"), "services.yaml": serviceEntry("catalog", 3000, { v1: catalog.port }) },
      { nodeId: "ingress-1", role: "gateway", labels: { istio: "ingressgateway" }, namespace: "default", ips: [] },
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await catalog?.stop();
    await catalog2?.stop();
  });

  const gatewayAnswers = async () => (await send(port, { headers: { host: "catalog.example.com" } })).status;

  it("never change each other's configuration, while the second is open and after it closed", async () => {
    expect(await gatewayAnswers()).toBe(200);
    const impostor = new AdsClient(mesh.controlPlane.xds.port);
    try {
      impostor.send({ node: { id: "ingress-1", metadata: { ROLE: "sidecar", LABELS: { app: "other" }, INTERCEPTION_MODE: "NONE" } }, type_url: TypeUrl.Listener });
      const listeners = await impostor.next();
      // The second stream gets a sidecar's listeners, not the gateway's.
      expect(names(listeners)).not.toContain(`127.0.0.1_${port}`);
      expect(names(listeners)).toContain("127.0.0.1_3000");
      expect(mesh.log.join("\n")).toMatch(/ingress-1: .*already connected.*role gateway.*this stream \(role sidecar[^)]*\) gets its own configuration/);
      // Two rows in proxy-status, one per stream.
      await expect.poll(async () => (await statusOf(mesh)).map((row) => row.role).sort()).toEqual(["gateway", "sidecar"]);
      expect(await gatewayAnswers()).toBe(200);
      expect(JSON.parse(await mesh.envoy.admin("/listeners?format=json")).listener_statuses.map((l: { name: string }) => l.name)).toEqual([`127.0.0.1_${port}`]);
    } finally {
      impostor.close();
    }
    await expect.poll(async () => (await statusOf(mesh)).length).toBe(1);
    // A config change after the second stream left still reaches the gateway as a gateway.
    mesh.write("services.yaml", serviceEntry("catalog", 3000, { v1: catalog2.port }));
    await expect.poll(async () => (await send(port, { headers: { host: "catalog.example.com" } })).headers["x-upstream"], { timeout: 15_000 }).toBe("catalog-2");
    expect(JSON.parse(await mesh.envoy.admin("/listeners?format=json")).listener_statuses.map((l: { name: string }) => l.name)).toEqual([`127.0.0.1_${port}`]);
  });
});
