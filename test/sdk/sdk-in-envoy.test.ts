// The SDK inside a real Envoy with two worker threads: the probe module (sdk/fixtures/probe) changes headers and
// bodies, answers locally, calls a cluster, shares data across workers, counts in /stats and ticks.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";
import { probeBootstrap } from "./probe.js";

describeE2E("the SDK in Envoy (--concurrency 2)", () => {
  let backend: Upstream;
  let callout: Upstream;
  let envoy: Envoy;
  let port: number;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    callout = await startUpstream({ name: "callout-svc", script: () => ({ status: 200, body: "granted" }) });
    const bootstrap = await probeBootstrap({ backend: backend.port, callout: callout.port }, { configuration: { greeting: "from-envoy", tickMs: 100 } });
    envoy = await startEnvoy({ bootstrap, concurrency: 2 });
    port = await envoy.listenerPort("ingress");
  });

  afterAll(async () => {
    await envoy?.stop();
    await callout?.stop();
    await backend?.stop();
  });

  it("reads, adds, replaces and removes headers on both directions", async () => {
    const response = await send(port, {
      path: "/headers",
      headers: { "x-probe": "mutate", "x-probe-echo": "x-client", "x-client": "yes", "x-remove-me": "1", "x-replaced": "old", "x-encoded": "old" },
    });
    expect(response.status).toBe(200);
    expect(response.headers["x-probe-greeting"]).toBe("from-envoy");
    const seen = backend.requests.find((r) => r.path === "/headers")!;
    expect(seen.headers["x-probe-seen"]).toBe("yes");
    expect(seen.headers["x-remove-me"]).toBeUndefined();
    expect(seen.headers["x-replaced"]).toBe("new");
    expect(seen.headers["x-added"]).toBe("one, two");
    expect(seen.headers["x-encoded"]).toBe("encoded-once");
  });

  it("replaces a request body and a response body", async () => {
    await send(port, { method: "POST", path: "/body", headers: { "x-probe": "replace-body" }, body: "abcdef" });
    expect(backend.requests.find((r) => r.path === "/body")?.body).toBe("replaced:abcdef");

    const response = await send(port, { path: "/response-body", headers: { "x-probe": "replace-response-body" } });
    expect(response.body.startsWith("[") && response.body.endsWith("]")).toBe(true);
    expect(JSON.parse(response.body.slice(1, -1)).path).toBe("/response-body");
  });

  it("sends a local response without calling the upstream", async () => {
    const response = await send(port, { path: "/local", headers: { "x-probe": "local" } });
    expect(response.status).toBe(403);
    expect(response.body).toBe("denied by probe");
    expect(response.headers["x-probe-local"]).toBe("yes");
    // The reply ran through the filter's own response callback.
    expect(response.headers["x-probe-greeting"]).toBe("from-envoy");
    expect(backend.requests.some((r) => r.path === "/local")).toBe(false);
  });

  it("pauses a request for an http_call to a cluster and resumes it with the answer", async () => {
    const response = await send(port, { path: "/callout", headers: { "x-probe": "callout" } });
    expect(response.status).toBe(200);
    expect(callout.requests.find((r) => r.path === "/callout")?.headers["x-probe-from"]).toBe("callout");
    const seen = backend.requests.find((r) => r.path === "/callout")!;
    expect(seen.headers["x-callout-status"]).toBe("200");
    expect(seen.headers["x-callout-body"]).toBe("granted");
    expect(seen.headers["x-callout-upstream"]).toBe("callout-svc");
  });

  it("shares data between the two workers' VMs", async () => {
    const count = 60;
    const tally = await sendMany(port, {
      count,
      concurrency: 6,
      request: () => ({ path: "/shared", headers: { "x-probe": "shared-inc", connection: "close" } }),
    });
    expect(tally.byStatus[200]).toBe(count);
    const vms = new Set(tally.responses.map((r) => r.headers["x-probe-vm"]));
    expect(vms.size).toBe(2);
    const values = backend.requests.filter((r) => r.path === "/shared").map((r) => Number(r.headers["x-shared"]));
    // Every increment, on either worker, saw the other's: the values are exactly 1..count.
    expect(values.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  });

  it("counts requests in a counter visible in /stats (as wasmcustom.<name>)", async () => {
    const before = (await envoy.stat("wasmcustom.skiff_probe.requests")) ?? 0;
    await sendMany(port, { count: 5, request: () => ({ path: "/counted", headers: { "x-probe": "counter-zero" } }) });
    // counter-zero also tries increments of 0 and -5, which Envoy refuses: only the 5 requests count.
    expect(await envoy.stat("wasmcustom.skiff_probe.requests")).toBe(before + 5);
  });

  it("ticks on every worker", async () => {
    let ticks = 0;
    for (let i = 0; i < 100 && ticks < 4; i++) {
      await sleep(100);
      ticks = (await envoy.stat("wasmcustom.skiff_probe.ticks")) ?? 0;
    }
    expect(ticks).toBeGreaterThanOrEqual(4);
  });

  it("loads the module without Wasm errors", () => {
    expect(envoy.log()).not.toMatch(/Failed to load Wasm|missing import|Wasm VM failed|abort:/i);
  });
});
