// The ADS protocol with a raw client: versions and nonces per type, ACK and NACK (recorded with error_detail, never
// resent in a loop, the last good version kept), stale nonces, named subscriptions, reconnects, and delta xDS.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { statusTable } from "../../control/cli/proxy-status.js";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import { XdsServer } from "../../control/xds/server.js";
import { emptyResources, TypeUrl } from "../../control/resources.js";
import { AdsClient, names } from "./ads-client.js";
import { meshResources } from "./fixtures.js";

const node = { id: "proxy-1", metadata: { ROLE: "sidecar", LABELS: { app: "web" } } };

describe("ADS, state of the world", () => {
  let cache: SnapshotCache;
  let xds: XdsServer;
  const clients: AdsClient[] = [];
  const connect = (delta = false) => {
    const client = new AdsClient(xds.port, delta);
    clients.push(client);
    return client;
  };

  beforeEach(async () => {
    cache = new SnapshotCache();
    xds = await XdsServer.start({ cache });
    cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002] }, routeTo: "a" }));
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await xds.stop();
  });

  it("answers a wildcard CDS request with every cluster, and an ACK makes the proxy SYNCED", async () => {
    const client = connect();
    client.send({ node, type_url: TypeUrl.Cluster });
    const response = await client.next();
    expect(response.type_url).toBe(TypeUrl.Cluster);
    expect(names(response)).toEqual(["a", "b"]);
    expect(xds.status()[0].types.Cluster?.status).toBe("STALE");
    client.send({ type_url: TypeUrl.Cluster, version_info: response.version_info, response_nonce: response.nonce });
    await expect.poll(() => xds.status()[0].types.Cluster).toMatchObject({ status: "SYNCED", ackedVersion: response.version_info });
    expect(xds.status()[0]).toMatchObject({ nodeId: "proxy-1", role: "sidecar", protocol: "sotw" });
  });

  it("answers a wildcard request with an empty set when the proxy has none of that type, and again when all are removed", async () => {
    cache.set("proxy-1", emptyResources());
    const client = connect();
    const answer = async (type: string) => {
      const response = await client.next();
      expect(response.type_url).toBe(type);
      client.send({ type_url: type, version_info: response.version_info, response_nonce: response.nonce });
      return names(response);
    };
    client.send({ node, type_url: TypeUrl.Cluster });
    expect(await answer(TypeUrl.Cluster)).toEqual([]);
    client.send({ type_url: TypeUrl.Listener });
    expect(await answer(TypeUrl.Listener)).toEqual([]);
    cache.set("proxy-1", meshResources({ clusters: { a: [8001] }, routeTo: "a" }));
    expect(await answer(TypeUrl.Cluster)).toEqual(["a"]);
    expect(await answer(TypeUrl.Listener)).toEqual(["ingress"]);
    // Everything removed: the listeners go first, then (make-before-break) the clusters they used.
    cache.set("proxy-1", emptyResources());
    expect(await answer(TypeUrl.Listener)).toEqual([]);
    expect(await answer(TypeUrl.Cluster)).toEqual([]);
  });

  it("reads the proxy's identity from the node metadata istio-agent sends, with defaults for a bare node", async () => {
    const connected: unknown[] = [];
    const server = await XdsServer.start({ cache, onProxyConnected: (identity) => connected.push(identity) });
    try {
      const full = new AdsClient(server.port);
      const bare = new AdsClient(server.port);
      clients.push(full, bare);
      full.send({
        node: {
          id: "reviews-v2-1",
          metadata: { ROLE: "sidecar", LABELS: { app: "reviews" }, NAMESPACE: "shop", SERVICE_ACCOUNT: "reviews", INSTANCE_IPS: "198.18.0.7, 198.18.0.8" },
          locality: { region: "eu", zone: "eu-1", sub_zone: "rack-3" },
        },
        type_url: TypeUrl.Cluster,
      });
      await expect.poll(() => connected.length).toBe(1);
      bare.send({ node: { id: "bare" }, type_url: TypeUrl.Cluster });
      await expect.poll(() => connected.length).toBe(2);
      expect(connected).toEqual([
        {
          nodeId: "reviews-v2-1",
          role: "sidecar",
          labels: { app: "reviews" },
          namespace: "shop",
          serviceAccount: "reviews",
          ips: ["198.18.0.7", "198.18.0.8"],
          locality: { region: "eu", zone: "eu-1", subZone: "rack-3" },
        },
        { nodeId: "bare", role: "sidecar", labels: {}, namespace: "default", ips: [] },
      ]);
    } finally {
      await server.stop();
    }
  });

  it("serves named EDS subscriptions, sending only the endpoint sets the proxy lacks or that changed", async () => {
    const client = connect();
    client.send({ node, type_url: TypeUrl.ClusterLoadAssignment, resource_names: ["a"] });
    const first = await client.next();
    expect(names(first)).toEqual(["a"]);
    client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ["a", "b"], version_info: first.version_info, response_nonce: first.nonce });
    const second = await client.next();
    expect(names(second)).toEqual(["b"]);
    expect(second.nonce).not.toBe(first.nonce);
    client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ["a", "b"], version_info: second.version_info, response_nonce: second.nonce });
    cache.set("proxy-1", meshResources({ clusters: { a: [9001], b: [8002] }, routeTo: "a" }));
    const third = await client.next();
    expect(names(third)).toEqual(["a"]);
    expect(third.version_info).not.toBe(second.version_info);
  });

  it("records a NACK with its error_detail, keeps the last good version, and does not resend the rejected one", async () => {
    const client = connect();
    client.send({ node, type_url: TypeUrl.Cluster });
    const good = await client.next();
    client.send({ type_url: TypeUrl.Cluster, version_info: good.version_info, response_nonce: good.nonce });
    await expect.poll(() => xds.status()[0].types.Cluster?.status).toBe("SYNCED");

    cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002], c: [8003] }, routeTo: "a" }));
    const rejected = await client.next();
    expect(names(rejected)).toEqual(["a", "b", "c"]);
    client.send({
      type_url: TypeUrl.Cluster,
      version_info: good.version_info,
      response_nonce: rejected.nonce,
      error_detail: { code: 3, message: "cluster c: something Envoy did not like" },
    });
    await expect.poll(() => xds.status()[0].types.Cluster).toMatchObject({
      status: "ERROR",
      ackedVersion: good.version_info,
      sentVersion: rejected.version_info,
      error: "cluster c: something Envoy did not like",
    });
    expect(statusTable(xds.status())).toContain(`proxy-1 CDS rejected version ${rejected.version_info} 0s ago: cluster c: something Envoy did not like`);

    // The next response is the next snapshot, not the rejected version again.
    cache.set("proxy-1", meshResources({ clusters: { a: [8001], d: [8004] }, routeTo: "a" }));
    const fixed = await client.next();
    expect(names(fixed)).toEqual(["a", "d"]);
    expect(fixed.version_info).not.toBe(rejected.version_info);
    client.send({ type_url: TypeUrl.Cluster, version_info: fixed.version_info, response_nonce: fixed.nonce });
    await expect.poll(() => xds.status()[0].types.Cluster).toMatchObject({ status: "SYNCED", ackedVersion: fixed.version_info });
    expect(xds.status()[0].types.Cluster?.error).toBeUndefined();
    expect(client.unread).toBe(0);
  });

  it("ignores a request carrying a stale nonce", async () => {
    const client = connect();
    client.send({ node, type_url: TypeUrl.Cluster });
    const first = await client.next();
    cache.set("proxy-1", meshResources({ clusters: { a: [8001] }, routeTo: "a" }));
    client.send({ type_url: TypeUrl.Cluster, version_info: first.version_info, response_nonce: first.nonce });
    const second = await client.next();
    // An ACK of the first response, again, after the second was sent: stale, so the second stays unanswered.
    client.send({ type_url: TypeUrl.Cluster, version_info: first.version_info, response_nonce: first.nonce });
    client.send({ type_url: TypeUrl.Cluster, version_info: second.version_info, response_nonce: second.nonce });
    await expect.poll(() => xds.status()[0].types.Cluster).toMatchObject({ status: "SYNCED", ackedVersion: second.version_info });
  });

  it("holds listeners and routes until the clusters they use are answered", async () => {
    const client = connect();
    client.send({ node, type_url: TypeUrl.Cluster });
    client.send({ node, type_url: TypeUrl.Listener });
    const clusters = await client.next();
    expect(clusters.type_url).toBe(TypeUrl.Cluster);
    // Nothing else is sent while CDS is unanswered: the listener waits.
    client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ["a", "b"] });
    const endpoints = await client.next();
    expect(endpoints.type_url).toBe(TypeUrl.ClusterLoadAssignment);
    expect(client.unread).toBe(0);
    client.send({ type_url: TypeUrl.Cluster, version_info: clusters.version_info, response_nonce: clusters.nonce });
    client.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names: ["a", "b"], version_info: endpoints.version_info, response_nonce: endpoints.nonce });
    const listeners = await client.next();
    expect(listeners.type_url).toBe(TypeUrl.Listener);
    expect(names(listeners)).toEqual(["ingress"]);
  });

  it("removes a cluster only after the routes that used it are gone, and keeps it while the new routes are rejected", async () => {
    cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002] }, routeTo: "a" }));
    const client = connect();
    const ack = (response: { type_url: string; version_info?: string; nonce: string }, names: string[] = []) =>
      client.send({ type_url: response.type_url, version_info: response.version_info, response_nonce: response.nonce, resource_names: names });
    client.send({ node, type_url: TypeUrl.Cluster });
    ack(await client.next());
    client.send({ type_url: TypeUrl.RouteConfiguration, resource_names: ["ingress-routes"] });
    ack(await client.next(), ["ingress-routes"]);
    await expect.poll(() => xds.status()[0].types.RouteConfiguration?.status).toBe("SYNCED");

    // Cluster a goes away and the route moves to a new cluster c: clusters first (c added, a still there), then
    // the route.
    cache.set("proxy-1", meshResources({ clusters: { b: [8002], c: [8003] }, routeTo: "c" }));
    const clusters = await client.next();
    expect(clusters.type_url).toBe(TypeUrl.Cluster);
    expect(names(clusters)).toEqual(["a", "b", "c"]);
    ack(clusters);
    const routes = await client.next();
    expect(routes.type_url).toBe(TypeUrl.RouteConfiguration);
    // The proxy rejects the new routes: it still routes to a, so a stays.
    client.send({ type_url: TypeUrl.RouteConfiguration, resource_names: ["ingress-routes"], response_nonce: routes.nonce, error_detail: { message: "bad route" } });
    await expect.poll(() => xds.status()[0].types.RouteConfiguration?.status).toBe("ERROR");

    // Fixed routes are accepted; only then does a leave.
    const fixed = meshResources({ clusters: { b: [8002], c: [8003] }, routeTo: "c" });
    // Any difference makes it a new version; this one changes nothing that matters here.
    (fixed[TypeUrl.RouteConfiguration][0].body as { validate_clusters?: boolean }).validate_clusters = false;
    cache.set("proxy-1", fixed);
    const fixedRoutes = await client.next();
    expect(fixedRoutes.type_url).toBe(TypeUrl.RouteConfiguration);
    ack(fixedRoutes, ["ingress-routes"]);
    const final = await client.next();
    expect(final.type_url).toBe(TypeUrl.Cluster);
    expect(names(final)).toEqual(["b", "c"]);
  });

  it("serves a reconnecting proxy its current configuration on the new stream", async () => {
    const before = connect();
    before.send({ node, type_url: TypeUrl.Cluster });
    const first = await before.next();
    before.send({ type_url: TypeUrl.Cluster, version_info: first.version_info, response_nonce: first.nonce });
    before.close();
    await expect.poll(() => xds.status().length).toBe(0);

    cache.set("proxy-1", meshResources({ clusters: { a: [8001], e: [8005] }, routeTo: "a" }));
    const after = connect();
    after.send({ node, type_url: TypeUrl.Cluster, version_info: first.version_info });
    const current = await after.next();
    expect(names(current)).toEqual(["a", "e"]);
    after.send({ type_url: TypeUrl.Cluster, version_info: current.version_info, response_nonce: current.nonce });
    await expect.poll(() => xds.status()).toMatchObject([{ nodeId: "proxy-1", types: { Cluster: { status: "SYNCED" } } }]);
  });

  it("answers a reconnecting client that still carries the previous stream's nonce", async () => {
    const before = connect();
    before.send({ node, type_url: TypeUrl.Cluster });
    const first = await before.next();
    before.close();
    await expect.poll(() => xds.status().length).toBe(0);

    const after = connect();
    after.send({ node, type_url: TypeUrl.Cluster, version_info: first.version_info, response_nonce: first.nonce });
    expect(names(await after.next())).toEqual(["a", "b"]);
  });

  it("serves secrets (SDS) and extension configs (ECDS) by name", async () => {
    const resources = meshResources({ clusters: { a: [8001] }, routeTo: "a" });
    resources[TypeUrl.Secret].push({
      name: "gateway-cert",
      body: { name: "gateway-cert", tls_certificate: { certificate_chain: { inline_string: "CERT" }, private_key: { inline_string: "KEY" } } },
    });
    resources[TypeUrl.ExtensionConfig].push({
      name: "hello",
      body: { name: "hello", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
    });
    cache.set("proxy-1", resources);
    const client = connect();
    client.send({ node, type_url: TypeUrl.Secret, resource_names: ["gateway-cert"] });
    const secrets = await client.next();
    expect(secrets.type_url).toBe(TypeUrl.Secret);
    expect(secrets.resources).toEqual([
      expect.objectContaining({ "@type": TypeUrl.Secret, name: "gateway-cert", tls_certificate: expect.objectContaining({ private_key: { inline_string: "KEY" } }) }),
    ]);
    client.send({ type_url: TypeUrl.Secret, resource_names: ["gateway-cert"], version_info: secrets.version_info, response_nonce: secrets.nonce });
    client.send({ type_url: TypeUrl.ExtensionConfig, resource_names: ["hello"] });
    const extensions = await client.next();
    expect(extensions.type_url).toBe(TypeUrl.ExtensionConfig);
    expect(names(extensions)).toEqual(["hello"]);
  });

  it("closes a stream whose first request names no node", async () => {
    const client = connect();
    client.send({ type_url: TypeUrl.Cluster });
    await expect.poll(() => client.closed?.message ?? "").toMatch(/node\.id/);
  });

  describe("delta", () => {
    it("sends resources with versions, then only changes and removals", async () => {
      const client = connect(true);
      client.send({ node, type_url: TypeUrl.Cluster, resource_names_subscribe: [] });
      const first = await client.next();
      expect(names(first)).toEqual(["a", "b"]);
      client.send({ type_url: TypeUrl.Cluster, response_nonce: first.nonce });
      await expect.poll(() => xds.status()[0]).toMatchObject({ protocol: "delta", types: { Cluster: { status: "SYNCED" } } });

      cache.set("proxy-1", meshResources({ clusters: { a: [8001], c: [8003] }, routeTo: "a" }));
      const second = await client.next();
      expect(names(second)).toEqual(["c"]);
      expect(second.removed_resources).toEqual(["b"]);
    });

    it("does not resend a version the proxy rejected", async () => {
      const client = connect(true);
      client.send({ node, type_url: TypeUrl.Cluster });
      const first = await client.next();
      client.send({ type_url: TypeUrl.Cluster, response_nonce: first.nonce });
      cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002], c: [8003] }, routeTo: "a" }));
      const rejected = await client.next();
      expect(names(rejected)).toEqual(["c"]);
      client.send({ type_url: TypeUrl.Cluster, response_nonce: rejected.nonce, error_detail: { code: 3, message: "no c" } });
      await expect.poll(() => xds.status()[0].types.Cluster).toMatchObject({ status: "ERROR", error: "no c" });
      cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002], c: [8003], d: [8004] }, routeTo: "a" }));
      const next = await client.next();
      expect(names(next)).toEqual(["d"]);
    });

    it("resumes from initial_resource_versions after a reconnect, sending only what changed", async () => {
      const before = connect(true);
      before.send({ node, type_url: TypeUrl.Cluster });
      const first = await before.next();
      before.send({ type_url: TypeUrl.Cluster, response_nonce: first.nonce });
      before.close();
      await expect.poll(() => xds.status().length).toBe(0);

      cache.set("proxy-1", meshResources({ clusters: { a: [8001], b: [8002], f: [8006] }, routeTo: "a" }));
      const held = Object.fromEntries((first.resources as Array<{ name: string; version: string }>).map((r) => [r.name, r.version]));
      const after = connect(true);
      after.send({ node, type_url: TypeUrl.Cluster, initial_resource_versions: held });
      const resumed = await after.next();
      expect(names(resumed)).toEqual(["f"]);
    });

    it("tells the proxy about a named resource that does not exist", async () => {
      const client = connect(true);
      client.send({ node, type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: ["a", "missing"] });
      const response = await client.next();
      expect(names(response)).toEqual(["a"]);
      expect(response.removed_resources).toEqual(["missing"]);
    });
  });
});
