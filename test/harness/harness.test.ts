// The e2e harness itself, through a real Envoy: scripted upstreams (status, delay, reset, h2c), tallies by status
// and upstream, stats from the admin API, and a clean stop.
import { afterEach, expect, it } from "vitest";
import { describeE2E } from "./e2e.js";
import { staticBootstrap } from "./bootstrap.js";
import { send, sendMany } from "./client.js";
import { type Envoy, startEnvoy } from "./envoy.js";
import { runningThings } from "./processes.js";
import { startUpstream } from "./upstream.js";

describeE2E("e2e harness", () => {
  afterEach(async () => {
    await Promise.all(runningThings().map((thing) => thing.stop()));
  });

  it("tallies round-robin traffic over HTTP/1.1 and h2c upstreams by identity", async () => {
    const a = await startUpstream({ name: "host-a" });
    const b = await startUpstream({ name: "host-b", protocol: "h2c" });
    const envoy = await startEnvoy({
      bootstrap: staticBootstrap({
        clusters: { a: { ports: [a.port] }, b: { ports: [b.port], h2c: true } },
        routes: [
          { match: { prefix: "/", headers: [{ name: "x-to", string_match: { exact: "b" } }] }, route: { cluster: "b" } },
          { match: { prefix: "/" }, route: { cluster: "a" } },
        ],
      }),
    });
    const port = await envoy.listenerPort();
    const tally = await sendMany(port, { count: 40, concurrency: 4, request: (i): { headers: Record<string, string> } => ({ headers: i % 4 === 0 ? { "x-to": "b" } : {} }) });
    expect(tally.byStatus).toEqual({ 200: 40 });
    expect(tally.byUpstream).toEqual({ "host-a": 30, "host-b": 10 });
    expect(b.requests).toHaveLength(10);
    expect(await envoy.stat("cluster.b.upstream_cx_http2_total")).toBeGreaterThan(0);
  });

  it("scripts statuses, delays and resets per request", async () => {
    const flaky = await startUpstream({
      name: "flaky",
      script: (_request, index) => (index === 0 ? { status: 503 } : index === 1 ? { reset: true } : { delayMs: 300 }),
    });
    const envoy: Envoy = await startEnvoy({
      bootstrap: staticBootstrap({
        clusters: { flaky: { ports: [flaky.port] } },
        routes: [{ match: { prefix: "/" }, route: { cluster: "flaky", timeout: "0.1s" } }],
      }),
    });
    const port = await envoy.listenerPort();
    expect((await send(port)).status).toBe(503);
    const reset = await send(port);
    expect(reset.status).toBe(503);
    expect(reset.headers["x-upstream"]).toBeUndefined();
    expect((await send(port)).status).toBe(504);
    expect(await envoy.stat("cluster.flaky.upstream_rq_timeout")).toBe(1);
  });

  it("stops Envoy and its upstreams, leaving nothing running", async () => {
    const upstream = await startUpstream({ name: "x" });
    const envoy = await startEnvoy({ bootstrap: staticBootstrap({ clusters: { x: { ports: [upstream.port] } } }) });
    expect(runningThings()).toHaveLength(2);
    expect(envoy.logTail(5)).toMatch(/starting main dispatch loop|all clusters initialized/);
    await envoy.stop();
    await upstream.stop();
    expect(runningThings()).toHaveLength(0);
    await expect(fetch(envoy.adminUrl + "/ready")).rejects.toThrow();
  });
});
