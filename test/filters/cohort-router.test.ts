// cohort-router in a real Envoy with two worker threads: the filter writes `x-skiff-subset`, the route table sends
// `v2` to the v2 cluster and everything else to v1. Shows the seed's header cohort (`x-istio-cohort: internal`),
// a sticky 10% cohort over 1000 users, the counters per decision, and a bad configuration rejected.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";

const CONFIG = {
  routingHeader: "x-skiff-subset",
  rules: [{ name: "internal", subset: "v2", headers: [{ name: "x-istio-cohort", exact: "internal" }] }],
  percentages: { hashOn: { header: "x-user-id" }, cohorts: [{ name: "canary", subset: "v2", percent: 10 }] },
  defaultSubset: "v1",
};

/** The route table a cohort-router user writes: the routing header picks the cluster, v1 otherwise. */
function bootstrap(v1: Upstream, v2: Upstream, configuration: unknown): Record<string, unknown> {
  return staticBootstrap({
    clusters: { v1: { ports: [v1.port] }, v2: { ports: [v2.port] } },
    routes: [
      { match: { prefix: "/", headers: [{ name: "x-skiff-subset", string_match: { exact: "v2" } }] }, route: { cluster: "v2" } },
      { match: { prefix: "/" }, route: { cluster: "v1" } },
    ],
    httpFilters: [wasmFilter("cohort-router", { configuration })],
  });
}

describeE2E("cohort-router in Envoy", () => {
  let v1: Upstream;
  let v2: Upstream;
  let envoy: Envoy;
  let port: number;

  beforeAll(async () => {
    v1 = await startUpstream({ name: "v1" });
    v2 = await startUpstream({ name: "v2" });
    envoy = await startEnvoy({ bootstrap: bootstrap(v1, v2, CONFIG), concurrency: 2 });
    port = await envoy.listenerPort("ingress");
  });

  afterAll(async () => {
    await envoy?.stop();
    await v1?.stop();
    await v2?.stop();
  });

  it("sends every request with x-istio-cohort: internal to v2, whoever the user", async () => {
    const tally = await sendMany(port, {
      count: 200,
      concurrency: 8,
      request: (i) => ({ path: `/internal/${i}`, headers: { "x-istio-cohort": "internal", "x-user-id": `staff-${i}` } }),
    });
    expect(tally.byStatus).toEqual({ 200: 200 });
    expect(tally.byUpstream).toEqual({ v2: 200 });
    // The v2 server itself saw the routing header the filter set.
    const seen = v2.requests.find((r) => r.path === "/internal/0");
    expect(seen?.headers["x-skiff-subset"]).toBe("v2");
    expect(await envoy.stat("wasmcustom.cohort_router.rule.internal")).toBe(200);
  });

  it("sends requests without the cohort header or a user id to v1, and counts the missing key", async () => {
    const tally = await sendMany(port, { count: 30, concurrency: 3, request: (i) => ({ path: `/anonymous/${i}` }) });
    expect(tally.byUpstream).toEqual({ v1: 30 });
    expect(await envoy.stat("wasmcustom.cohort_router.no_hash_key")).toBe(30);
  });

  it("re-routes a request whose route Envoy picked before the filter ran (the route cache is cleared)", async () => {
    // Envoy's connection manager picks the route from the client's headers before any filter runs; a client's own
    // x-skiff-subset: v2 selects the v2 route first. The filter overwrites the header with v1, and the request must
    // go where the new header says.
    const tally = await sendMany(port, {
      count: 20,
      concurrency: 2,
      request: (i) => ({ path: `/forged/${i}`, headers: { "x-skiff-subset": "v2", "x-istio-cohort": "external" } }),
    });
    expect(tally.byUpstream).toEqual({ v1: 20 });
    expect(v2.requests.filter((r) => r.path.startsWith("/forged/"))).toEqual([]);
  });

  it("puts 10% +- 2% of 1000 users on v2 and keeps each user on one version across connections and both workers", async () => {
    const users = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
    const versionOf = new Map<string, Set<string>>();
    // Three rounds, each on fresh keep-alive connections, so a user's requests arrive over different connections
    // (and so, with two workers, on either worker).
    for (let round = 0; round < 3; round++) {
      const tally = await sendMany(port, {
        count: users.length,
        concurrency: 8,
        request: (i) => ({ path: `/shop/${round}`, headers: { "x-user-id": users[i] } }),
      });
      expect(tally.byStatus).toEqual({ 200: users.length });
      tally.responses.forEach((response, i) => {
        const versions = versionOf.get(users[i]) ?? new Set<string>();
        versions.add(response.headers["x-upstream"]);
        versionOf.set(users[i], versions);
      });
    }
    const unstable = [...versionOf].filter(([, versions]) => versions.size !== 1);
    expect(unstable).toEqual([]);
    const onV2 = [...versionOf.values()].filter((versions) => versions.has("v2")).length;
    expect(onV2).toBeGreaterThanOrEqual(80);
    expect(onV2).toBeLessThanOrEqual(120);

    // The decisions as counted, and proof that both worker threads served these users.
    const stats = await envoy.stats();
    expect(await envoy.stat("wasmcustom.cohort_router.cohort.canary")).toBe(onV2 * 3);
    expect(await envoy.stat("wasmcustom.cohort_router.default")).toBe(30 + 20 + (1000 - onV2) * 3);
    const perWorker = [...stats].filter(([name]) => /^listener\.127\.0\.0\.1_\d+\.worker_\d+\.downstream_cx_total$/.test(name));
    expect(perWorker).toHaveLength(2);
    for (const [, requests] of perWorker) expect(requests).toBeGreaterThan(0);
  });
});

describeE2E("cohort-router configuration in Envoy", () => {
  let v1: Upstream;
  let v2: Upstream;
  const envoys: Envoy[] = [];

  beforeAll(async () => {
    v1 = await startUpstream({ name: "v1" });
    v2 = await startUpstream({ name: "v2" });
  });

  afterAll(async () => {
    await Promise.all(envoys.map((envoy) => envoy.stop()));
    await v1?.stop();
    await v2?.stop();
  });

  it("hashes on a cookie when configured so", async () => {
    const envoy = await startEnvoy({
      bootstrap: bootstrap(v1, v2, {
        percentages: { hashOn: { cookie: "session" }, cohorts: [{ name: "half", subset: "v2", percent: 50 }] },
        defaultSubset: "v1",
      }),
      concurrency: 2,
    });
    envoys.push(envoy);
    const port = await envoy.listenerPort("ingress");
    const request = (i: number) => ({ path: "/", headers: { cookie: `theme=dark; session=s${i % 200}; lang=en` } });
    const first = await sendMany(port, { count: 200, concurrency: 4, request });
    const again = await sendMany(port, { count: 200, concurrency: 4, request });
    expect(again.responses.map((r) => r.headers["x-upstream"])).toEqual(first.responses.map((r) => r.headers["x-upstream"]));
    expect(first.byUpstream.v2).toBeGreaterThan(60);
    expect(first.byUpstream.v1).toBeGreaterThan(60);
  });

  it("rejects a bad field with the field named in Envoy's log and keeps routing with the previous configuration", async () => {
    // The listener comes from a file (LDS from the filesystem), so the configuration can change while Envoy runs.
    const envoy = await startEnvoy({ bootstrap: bootstrap(v1, v2, CONFIG), concurrency: 2, listenersFromFile: true });
    envoys.push(envoy);
    const port = await envoy.listenerPort("ingress");
    const internal = { count: 20, concurrency: 2, request: () => ({ headers: { "x-istio-cohort": "internal" } }) };
    expect((await sendMany(port, internal)).byUpstream).toEqual({ v2: 20 });

    envoy.publishListeners(bootstrap(v1, v2, { ...CONFIG, rules: [{ name: "internal", subset: "v2", headers: [{ name: "x-istio-cohort", regex: "(internal|staff)" }] }] }));
    await envoy.waitForLog("cohort-router: configuration rejected: rules[0].headers[0].regex: unsupported regex syntax '(' at offset 0");
    expect(await envoy.stat("listener_manager.lds.update_rejected")).toBe(1);
    expect((await sendMany(port, internal)).byUpstream).toEqual({ v2: 20 });
    expect(await envoy.stat("wasmcustom.cohort_router.rule.internal")).toBe(40);
  });
});

