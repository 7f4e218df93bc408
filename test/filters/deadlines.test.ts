// deadlines in a real Envoy, two hops: a client -> the front Envoy -> the back Envoy -> the upstream, both Envoys with
// the filter. An expired request never leaves the front; a budget shorter than the upstream's answer ends in the
// router's timeout instead of the upstream's late answer; what is left of the budget reaches the back Envoy and the
// upstream; a gRPC call gets DEADLINE_EXCEEDED; a request without a deadline gets the configured default.
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";

/** The upstream answers after the delay a request asks for (`x-delay-ms`). */
const SLOW_MS = 3000;

describeE2E("deadlines filter in Envoy, two hops", () => {
  let upstream: Upstream;
  let back: Envoy;
  let front: Envoy;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream({ name: "backend", script: (request) => ({ delayMs: Number(request.headers["x-delay-ms"] ?? 0) }) });
    // No route timeout of its own beyond Envoy's default (15 s): the deadline is what cuts a slow answer short.
    back = await startEnvoy({
      bootstrap: staticBootstrap({ clusters: { backend: { ports: [upstream.port] } }, httpFilters: [wasmFilter("deadlines", { configuration: {} })] }),
    });
    front = await startEnvoy({
      bootstrap: staticBootstrap({
        clusters: { back: { ports: [await back.listenerPort()] } },
        httpFilters: [wasmFilter("deadlines", { configuration: { defaultTimeout: "500ms" } })],
      }),
    });
    port = await front.listenerPort();
  });

  afterAll(async () => {
    await front?.stop();
    await back?.stop();
    await upstream?.stop();
  });

  it("answers an expired request 504 at once, marked, and never forwards it", async () => {
    const before = upstream.requests.length;
    const expired: Array<Record<string, string>> = [{ "x-skiff-timeout-ms": "0" }, { "grpc-timeout": "500u" }];
    for (const headers of expired) {
      const response = await send(port, { headers });
      expect(response.status).toBe(504);
      expect(response.headers["x-skiff-deadline"]).toBe("expired");
      expect(response.body).toContain("deadline exceeded before the request was processed");
    }
    expect(upstream.requests.length).toBe(before);
    expect(await front.stat("wasmcustom.deadlines.expired")).toBe(2);
    expect((await back.stat("wasmcustom.deadlines.with_deadline")) ?? 0).toBe(0);
  });

  it("gives a gRPC call past its deadline DEADLINE_EXCEEDED", async () => {
    const response = await send(port, { method: "POST", headers: { "content-type": "application/grpc", "grpc-timeout": "0m" } });
    expect(response.status).toBe(200);
    expect(response.headers["grpc-status"]).toBe("4");
  });

  it("ends a request whose budget runs out before the upstream answers with the router's timeout, not the late answer", async () => {
    const response = await send(port, { headers: { "x-skiff-timeout-ms": "300", "x-delay-ms": String(SLOW_MS) } });
    expect(response.status).toBe(504);
    expect(response.body).toBe("upstream request timeout");
    expect(response.headers["x-skiff-deadline"]).toBe("exceeded");
    // The next hop got what was left of the budget, so either hop's router may be the one that times out first:
    // that hop's filter marks and counts it; the other passes the marked 504 on.
    const exceeded = async () => ((await front.stat("wasmcustom.deadlines.exceeded")) ?? 0) + ((await back.stat("wasmcustom.deadlines.exceeded")) ?? 0);
    await expect.poll(exceeded).toBeGreaterThanOrEqual(1);
    expect(await front.stat("wasmcustom.deadlines.timeout_set")).toBeGreaterThanOrEqual(1);
  });

  it("carries what is left of the budget to the next hop and the upstream", async () => {
    const response = await send(port, { headers: { "x-skiff-timeout-ms": "4000" } });
    expect(response.status).toBe(200);
    const received = upstream.requests.at(-1)!.headers;
    // The back Envoy got at most the 4 s the client gave, and passed on at most what it was given, in the filter's
    // header and in Envoy's (which the back Envoy's router wrote from the timeout it applied).
    for (const header of ["x-skiff-timeout-ms", "x-envoy-expected-rq-timeout-ms"]) {
      const left = Number(received[header]);
      expect(left, header).toBeGreaterThan(0);
      expect(left, header).toBeLessThanOrEqual(4000);
    }
    // The router consumed the timeout header the filter set: it never leaves Envoy.
    expect(received["x-envoy-upstream-rq-timeout-ms"]).toBeUndefined();
    expect(await back.stat("wasmcustom.deadlines.with_deadline")).toBeGreaterThanOrEqual(1);
    expect(response.headers["x-skiff-deadline"]).toBeUndefined();
  });

  it("gives a request without a deadline the configured default, which the next hop then keeps", async () => {
    const response = await send(port, { headers: { "x-delay-ms": String(SLOW_MS) } });
    expect(response.status).toBe(504);
    expect(response.headers["x-skiff-deadline"]).toBe("exceeded");
    expect(await front.stat("wasmcustom.deadlines.defaulted")).toBeGreaterThanOrEqual(1);
    // The back Envoy has no default of its own: the budget it applied came with the request.
    expect((await back.stat("wasmcustom.deadlines.without_deadline")) ?? 0).toBe(0);
  });
});
