// retry-budget in the host emulator: configuration validation (each bad field named), the grant and settle
// accounting, the sliding window on the manual clock, and the floor shared by two workers.
import { describe, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";

const WASM = "build/filters/retry-budget.wasm";
const GET = { ":method": "GET", ":path": "/", ":authority": "backend" };

async function load(config: object, workers = 1): Promise<Emulator> {
  const vm = await Emulator.load(WASM, { pluginConfig: config, workers, logLevel: "info" });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

type Stream = ReturnType<ReturnType<Emulator["worker"]>["http"]>;

/** The response after the router made `attempts` attempts: Envoy gives the count to the filter as the attribute
 * upstream.request_attempt_count (uint64), not as a header. */
function respond(stream: Stream, status: string, attempts: number) {
  stream.setProperty(["upstream", "request_attempt_count"], attempts);
  stream.sendResponseHeaders({ ":status": status }, { endOfStream: true });
}

/** One request through the filter: the retries it was granted, and the response the client gets after the router
 * made `attempts` attempts (the last one answering `status`). */
function request(vm: Emulator, attempts: number, status = attempts > 1 ? "503" : "200", worker = 0) {
  const stream = vm.worker(worker).http();
  stream.sendRequestHeaders({ ...GET, "x-envoy-max-retries": "99" }, { endOfStream: true });
  const granted = Number(stream.requestHeaders.get("x-envoy-max-retries"));
  respond(stream, status, attempts);
  return { granted, marked: stream.responseHeaders.get("x-skiff-retry-budget") ?? undefined };
}

/** A request against an upstream that always fails: it uses every retry it was granted. */
function failing(vm: Emulator, worker = 0) {
  const stream = vm.worker(worker).http();
  stream.sendRequestHeaders(GET, { endOfStream: true });
  const granted = Number(stream.requestHeaders.get("x-envoy-max-retries"));
  respond(stream, "503", granted + 1);
  return { granted, marked: stream.responseHeaders.get("x-skiff-retry-budget") ?? undefined };
}

describe("retry-budget configuration", () => {
  const bad: Array<[string, string | object, string]> = [
    ["not JSON", "{budgetPercent: 1}", "invalid JSON at offset 1: expected a field name"],
    ["a percentage over 100", { budgetPercent: 150 }, "budgetPercent: expected a number from 0 to 100"],
    ["a negative percentage", { budgetPercent: -1 }, "budgetPercent: expected a number from 0 to 100"],
    ["a percentage as text", { budgetPercent: "20" }, "budgetPercent: expected a number from 0 to 100"],
    ["a window that is not a duration", { window: "soon" }, "window: expected a duration such as \"10s\" or \"250ms\" of at least 100ms"],
    ["a window under 100 ms", { window: "50ms" }, "window: expected a duration such as \"10s\" or \"250ms\" of at least 100ms"],
    ["a window over a day", { window: "25h" }, "window: expected a duration such as \"10s\" or \"250ms\" of at most 86400000ms"],
    ["a fractional floor", { minRetryConcurrency: 1.5 }, "minRetryConcurrency: expected a whole number from 0 to 1000000"],
    ["a negative floor", { minRetryConcurrency: -1 }, "minRetryConcurrency: expected a whole number from 0 to 1000000"],
    ["too many retries", { maxRetries: 101 }, "maxRetries: expected a whole number from 0 to 100"],
    ["an unknown field", { budget_percent: 20 }, "budget_percent: unknown field"],
  ];
  for (const [what, config, message] of bad) {
    it(`rejects ${what}, naming the field`, async () => {
      const vm = await Emulator.load(WASM, { pluginConfig: config });
      expect(vm.configAccepted).toBe(false);
      expect(vm.logMessages("error")).toEqual([`retry-budget: invalid configuration: ${message}`]);
    });
  }

  it("accepts an empty configuration (the defaults: 20%, 10s, floor 3, 3 retries)", async () => {
    const vm = await load({});
    // The floor grants the first request the default 3 retries.
    expect(failing(vm).granted).toBe(3);
  });

  it("keeps the previous configuration when an update is rejected", async () => {
    const vm = await load({ budgetPercent: 0, minRetryConcurrency: 0 }, 2);
    expect(vm.configure({ budgetPercent: 0, minRetryConcurrency: "3" })).toBe(false);
    expect(vm.logMessages("error")).toContain("retry-budget: invalid configuration: minRetryConcurrency: expected a whole number from 0 to 1000000");
    for (const worker of [0, 1]) expect(failing(vm, worker).granted).toBe(0);
  });
});

describe("retry-budget accounting", () => {
  it("grants budgetPercent of the requests so far, minus retries used, and marks the requests it cut short", async () => {
    const vm = await load({ budgetPercent: 50, window: "10s", minRetryConcurrency: 0, maxRetries: 3 });
    // Healthy requests: 50% of 1, 2, 3, 4 requests, rounded down; nothing used.
    expect([1, 2, 3, 4].map(() => request(vm, 1).granted)).toEqual([0, 1, 1, 2]);
    // Failing requests use what they get: 50% of 5 = 2; of 6 = 3, minus 2 used = 1; of 7 = 3, minus 3 = 0.
    expect(failing(vm)).toEqual({ granted: 2, marked: "exhausted" });
    expect(failing(vm)).toEqual({ granted: 1, marked: "exhausted" });
    expect(failing(vm)).toEqual({ granted: 0, marked: "exhausted" });
    expect(vm.metric("retry_budget.retries")).toBe(3);
    expect(vm.metric("retry_budget.exhausted")).toBe(3);
  });

  it("reserves a grant while the request is in flight and returns what it did not use", async () => {
    const vm = await load({ budgetPercent: 100, minRetryConcurrency: 0, maxRetries: 3 });
    request(vm, 1);
    request(vm, 1);
    // 100% of 3 requests = 3, all free: the first in-flight request takes all 3; 100% of 4 minus those 3 leaves 1.
    const first = vm.http();
    first.sendRequestHeaders(GET, { endOfStream: true });
    expect(first.requestHeaders.get("x-envoy-max-retries")).toBe("3");
    const second = vm.http();
    second.sendRequestHeaders(GET, { endOfStream: true });
    expect(second.requestHeaders.get("x-envoy-max-retries")).toBe("1");
    // The first used one retry: 2 come back. 100% of 5 requests, minus 1 used = 4, so the next gets 3.
    respond(first, "200", 2);
    respond(second, "200", 1);
    expect(request(vm, 1).granted).toBe(3);
    expect(vm.metric("retry_budget.retries")).toBe(1);
  });

  it("does not mark a request that got every retry, nor one whose answer is a success", async () => {
    const vm = await load({ budgetPercent: 50, minRetryConcurrency: 0, maxRetries: 2 });
    for (let i = 0; i < 4; i++) request(vm, 1);
    expect(failing(vm)).toEqual({ granted: 2, marked: undefined });
    const lucky = request(vm, 1, "200");
    expect(lucky.granted).toBeLessThan(2);
    expect(lucky.marked).toBeUndefined();
    expect(vm.metric("retry_budget.exhausted")).toBe(0);
  });

  it("settles from the attribute, not from an x-envoy-attempt-count header, which it neither needs nor adds", async () => {
    const vm = await load({ budgetPercent: 100, minRetryConcurrency: 0, maxRetries: 3 });
    for (let i = 0; i < 3; i++) request(vm, 1);
    // Granted 3; a header claiming 4 attempts is ignored: the attribute says 1, so nothing was used.
    const stream = vm.http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    expect(stream.requestHeaders.get("x-envoy-max-retries")).toBe("3");
    stream.setProperty(["upstream", "request_attempt_count"], 1);
    stream.sendResponseHeaders({ ":status": "503", "x-envoy-attempt-count": "4" }, { endOfStream: true });
    expect(vm.metric("retry_budget.retries")).toBe(0);
    expect(stream.responseHeaders.get("x-skiff-retry-budget")).toBeNull();
    // A response that carries no such header gets none from the filter, marked or not.
    const cut = vm.http();
    cut.sendRequestHeaders(GET, { endOfStream: true });
    respond(cut, "503", Number(cut.requestHeaders.get("x-envoy-max-retries")) + 1);
    expect(cut.responseHeaders.get("x-envoy-attempt-count")).toBeNull();
  });

  it("counts a request the router never sent upstream (attempt count 0) as using no retries", async () => {
    const vm = await load({ budgetPercent: 100, minRetryConcurrency: 0, maxRetries: 3 });
    for (let i = 0; i < 3; i++) request(vm, 1);
    const local = vm.http();
    local.sendRequestHeaders(GET, { endOfStream: true });
    expect(local.requestHeaders.get("x-envoy-max-retries")).toBe("3");
    respond(local, "503", 0);
    // Nothing used, nothing missing: 100% of 5 requests = 5, capped at maxRetries.
    expect(request(vm, 1).granted).toBe(3);
    expect(vm.metric("retry_budget.missing_attempt_count")).toBe(0);
    expect(vm.metric("retry_budget.retries")).toBe(0);
  });

  it("counts every granted retry as used when the router reports no attempt count, and says why once", async () => {
    const vm = await load({ budgetPercent: 100, minRetryConcurrency: 0, maxRetries: 3 });
    for (let i = 0; i < 4; i++) request(vm, 1);
    for (let i = 0; i < 2; i++) {
      const stream = vm.http();
      stream.sendRequestHeaders(GET, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    }
    // Granted 3 each time with nothing used; the two without a count were charged 3 each: 100% of 7 - 6 = 1.
    expect(request(vm, 1).granted).toBe(1);
    expect(vm.metric("retry_budget.missing_attempt_count")).toBe(2);
    expect(vm.logMessages("warn").filter((m) => m.includes("upstream.request_attempt_count"))).toHaveLength(1);
  });

  it("charges the whole grant of a stream that ends without response headers", async () => {
    const vm = await load({ budgetPercent: 100, minRetryConcurrency: 0, maxRetries: 3 });
    for (let i = 0; i < 3; i++) request(vm, 1);
    const reset = vm.http();
    reset.sendRequestHeaders(GET, { endOfStream: true });
    expect(reset.requestHeaders.get("x-envoy-max-retries")).toBe("3");
    reset.close();
    // 100% of 5 requests, minus the 3 charged.
    expect(request(vm, 1).granted).toBe(2);
  });

  it("replaces a client's x-envoy-max-retries with the grant", async () => {
    const vm = await load({ budgetPercent: 0, minRetryConcurrency: 0 });
    expect(request(vm, 1).granted).toBe(0);
  });
});

describe("retry-budget window", () => {
  it("slides: requests and retries older than the window no longer count", async () => {
    // 10 s window in ten 1 s buckets, moved by the tick.
    const vm = await load({ budgetPercent: 50, window: "10s", minRetryConcurrency: 0, maxRetries: 3 });
    expect([1, 2, 3, 4].map(() => request(vm, 1).granted)).toEqual([0, 1, 1, 2]);
    expect(failing(vm).granted).toBe(2);
    expect(failing(vm).granted).toBe(1);
    expect(failing(vm).granted).toBe(0);
    // 5 s later everything still counts: 50% of 8 = 4, minus 3 used.
    vm.advance(5_000);
    expect(request(vm, 1).granted).toBe(1);
    // 10.5 s after the start the first second's 7 requests and 3 retries have left the window: 50% of 2 = 1 (had
    // the 3 retries stayed, nothing would be left).
    vm.advance(5_500);
    expect(request(vm, 1).granted).toBe(1);
  });
});

describe("retry-budget floor, shared by the workers", () => {
  it("lets minRetryConcurrency retries per window through when the budget has none, on any worker, once", async () => {
    const vm = await load({ budgetPercent: 0, window: "10s", minRetryConcurrency: 3, maxRetries: 2 }, 2);
    expect(failing(vm, 0).granted).toBe(2);
    expect(failing(vm, 1).granted).toBe(1);
    expect(failing(vm, 1).granted).toBe(0);
    expect(failing(vm, 0).granted).toBe(0);
    expect(vm.metric("retry_budget.floor_grants")).toBe(2);
    // A new window, a new floor.
    vm.advance(10_000);
    expect(failing(vm, 1).granted).toBe(2);
  });

  it("takes back floor retries a request did not use", async () => {
    const vm = await load({ budgetPercent: 0, minRetryConcurrency: 2, maxRetries: 2 }, 2);
    expect(request(vm, 1, "200", 0).granted).toBe(2);
    expect(request(vm, 2, "200", 1).granted).toBe(2);
    // One of the 2 floor retries was used.
    expect(failing(vm, 0).granted).toBe(1);
    expect(failing(vm, 1).granted).toBe(0);
  });

  it("adds each worker's own share: both workers' retries stay within budgetPercent of all requests", async () => {
    const vm = await load({ budgetPercent: 20, minRetryConcurrency: 0, maxRetries: 3 }, 2);
    let retries = 0;
    for (let i = 0; i < 100; i++) retries += failing(vm, i % 2).granted;
    expect(retries).toBe(20);
  });
});
