// The push throttle (control/xds/throttle.ts, istiod's PILOT_PUSH_THROTTLE): a bounded number of responses is
// written at once; a stream that finds no slot free waits its turn and then gets exactly what it would have got.
import { afterEach, describe, expect, it } from "vitest";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import { TypeUrl } from "../../control/resources.js";
import { XdsServer } from "../../control/xds/server.js";
import { PushThrottle } from "../../control/xds/throttle.js";
import { AdsClient, names, type Response } from "./ads-client.js";
import { meshResources } from "./fixtures.js";

describe("PushThrottle", () => {
  it("gives out `limit` slots, then pumps the waiting streams in turn as slots free; freeing twice frees once", () => {
    const throttle = new PushThrottle(2);
    const pumped: string[] = [];
    const stream = (name: string) => ({ pump: () => pumped.push(name) });
    const [a, b, c, d] = [stream("a"), stream("b"), stream("c"), stream("d")];
    const freeA = throttle.acquire(a)!;
    const freeB = throttle.acquire(b)!;
    expect(throttle.acquire(c)).toBeUndefined();
    expect(throttle.acquire(d)).toBeUndefined();
    freeA();
    freeA();
    // c was pumped (it would take the slot in its pump; here it does not, so d is pumped too).
    expect(pumped).toEqual(["c", "d"]);
    freeB();
    expect(pumped).toEqual(["c", "d"]);
  });

  it("takes back the slot of a response that is not written in time, and forgets a closed stream", async () => {
    const throttle = new PushThrottle(1, 50);
    const pumped: string[] = [];
    expect(throttle.acquire({ pump: () => pumped.push("a") })).toBeDefined();
    const closed = { pump: () => pumped.push("closed") };
    const waiting = { pump: () => pumped.push("waiting") };
    expect(throttle.acquire(closed)).toBeUndefined();
    expect(throttle.acquire(waiting)).toBeUndefined();
    throttle.forget(closed);
    await expect.poll(() => pumped).toEqual(["waiting"]);
  });
});

describe("ADS with a push throttle of 1", () => {
  let xds: XdsServer | undefined;
  const clients: AdsClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await xds?.stop();
  });

  /** Subscribes as Envoy does (CDS and LDS wildcard, EDS for the clusters, RDS for the route) and ACKs everything
   * until it holds all four types; returns the responses in the order they came. */
  async function syncLikeEnvoy(client: AdsClient, id: string): Promise<Response[]> {
    const received: Response[] = [];
    client.send({ node: { id, metadata: { ROLE: "sidecar" } }, type_url: TypeUrl.Cluster });
    client.send({ type_url: TypeUrl.Listener });
    const ask = { [TypeUrl.Cluster]: [], [TypeUrl.Listener]: [], [TypeUrl.ClusterLoadAssignment]: ["a", "b"], [TypeUrl.RouteConfiguration]: ["ingress-routes"] } as Record<string, string[]>;
    while (new Set(received.map((response) => response.type_url)).size < 4) {
      const response = await client.next();
      received.push(response);
      // Envoy subscribes to the endpoints of new clusters before it ACKs them.
      if (response.type_url === TypeUrl.Cluster) client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ask[TypeUrl.ClusterLoadAssignment] });
      client.send({ type_url: response.type_url, version_info: response.version_info, response_nonce: response.nonce, resource_names: ask[response.type_url] });
      if (response.type_url === TypeUrl.Listener) client.send({ type_url: TypeUrl.RouteConfiguration, resource_names: ask[TypeUrl.RouteConfiguration] });
    }
    return received;
  }

  it("serves proxies that connect together each in turn, in the usual order, with the same configuration", async () => {
    const cache = new SnapshotCache();
    xds = await XdsServer.start({ cache, pushThrottle: 1 });
    const resources = meshResources({ clusters: { a: [8001], b: [8002] }, routeTo: "a" });
    const ids = Array.from({ length: 6 }, (_, i) => `proxy-${i}`);
    for (const id of ids) cache.set(id, resources);
    const runs = await Promise.all(
      ids.map((id) => {
        const client = new AdsClient(xds!.port);
        clients.push(client);
        return syncLikeEnvoy(client, id);
      }),
    );
    for (const received of runs) {
      // Listeners only after clusters and endpoints were answered, as without a throttle.
      const order = received.map((response) => response.type_url);
      expect(order.indexOf(TypeUrl.Listener)).toBeGreaterThan(order.indexOf(TypeUrl.ClusterLoadAssignment));
      const clusters = received.find((response) => response.type_url === TypeUrl.Cluster)!;
      expect(names(clusters)).toEqual(["a", "b"]);
      expect(received.map((response) => `${response.type_url} ${response.version_info}`)).toEqual(runs[0]!.map((response) => `${response.type_url} ${response.version_info}`));
    }
    await expect.poll(() => xds!.status().every((proxy) => Object.values(proxy.types).every((type) => type?.status === "SYNCED"))).toBe(true);
    expect(xds.status()).toHaveLength(6);
  });
});
