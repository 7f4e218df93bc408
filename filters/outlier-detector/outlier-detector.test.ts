// outlier-detector in the host emulator: configuration validation (each bad field named), streak counting and
// ejection, the steering header, ejection times on the manual clock, maxEjectionPercent, and two workers sharing
// the hosts' state.
import { describe, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";

const WASM = "build/filters/outlier-detector.wasm";
const GET = { ":method": "GET", ":path": "/", ":authority": "backend" };
const HEADER = "x-skiff-outlier-host";
const A = "10.0.0.1:80";
const B = "10.0.0.2:80";
const C = "10.0.0.3:80";

async function load(config: object, workers = 1): Promise<Emulator> {
  const vm = await Emulator.load(WASM, { pluginConfig: config, workers, logLevel: "info" });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

/** One request through the filter, answered by `address` with `status`; returns the host list the filter put in
 * the steering header (undefined: none, the load balancer picks as usual). */
function exchange(vm: Emulator, address: string, status: number, worker = 0, headers: Record<string, string> = {}): string | undefined {
  const stream = vm.worker(worker).http();
  stream.sendRequestHeaders({ ...GET, ...headers }, { endOfStream: true });
  const steering = stream.requestHeaders.get(HEADER) ?? undefined;
  stream.setProperty(["upstream", "address"], address);
  stream.sendResponseHeaders({ ":status": String(status) }, { endOfStream: true });
  return steering;
}

/** The steering header of the next request (answered by A with a 200). */
function nextSteering(vm: Emulator, worker = 0): string | undefined {
  return exchange(vm, A, 200, worker);
}

const base = { consecutive5xxErrors: 3, interval: "1s", baseEjectionTime: "10s", maxEjectionPercent: 50 };

describe("outlier-detector configuration", () => {
  const bad: Array<[string, string | object, string]> = [
    ["not JSON", "{interval: 1}", "invalid JSON at offset 1: expected a field name"],
    ["a negative threshold", { consecutive5xxErrors: -1 }, "consecutive5xxErrors: expected a whole number from 0 to 1000000"],
    ["a fractional threshold", { consecutive5xxErrors: 1.5 }, "consecutive5xxErrors: expected a whole number from 0 to 1000000"],
    ["a gateway threshold as text", { consecutiveGatewayErrors: "3" }, "consecutiveGatewayErrors: expected a whole number from 0 to 1000000"],
    ["both thresholds off", { consecutive5xxErrors: 0 }, "consecutive5xxErrors: expected at least 1 when consecutiveGatewayErrors is 0 (nothing would be detected)"],
    ["an interval under 10 ms", { interval: "5ms" }, "interval: expected a duration such as \"10s\" or \"250ms\" of at least 10ms"],
    ["an interval over a day", { interval: "25h" }, "interval: expected a duration such as \"10s\" or \"250ms\" of at most 86400000ms"],
    ["an ejection time that is not a duration", { baseEjectionTime: "soon" }, "baseEjectionTime: expected a duration such as \"10s\" or \"250ms\" of at least 1ms"],
    ["a zero maximum ejection time", { maxEjectionTime: 0 }, "maxEjectionTime: expected a duration such as \"10s\" or \"250ms\" of at least 1ms"],
    ["a percentage over 100", { maxEjectionPercent: 101 }, "maxEjectionPercent: expected a number from 0 to 100"],
    ["an upper-case header", { hostHeader: "X-Host" }, "hostHeader: expected a lower-case header name"],
    ["an empty header", { hostHeader: "" }, "hostHeader: expected a lower-case header name"],
    ["an unknown field", { consecutive5xx: 3 }, "consecutive5xx: unknown field"],
  ];
  for (const [what, config, message] of bad) {
    it(`rejects ${what}, naming the field`, async () => {
      const vm = await Emulator.load(WASM, { pluginConfig: config });
      expect(vm.configAccepted).toBe(false);
      expect(vm.logMessages("error")).toEqual([`outlier-detector: invalid configuration: ${message}`]);
    });
  }

  it("keeps the previous configuration when an update is rejected", async () => {
    const vm = await load(base, 2);
    expect(vm.configure({ ...base, consecutive5xxErrors: "1" })).toBe(false);
    // Still 3 errors in a row, not 1.
    exchange(vm, C, 500);
    exchange(vm, C, 500);
    expect(vm.metric("outlier_detector.ejections")).toBe(0);
    exchange(vm, C, 500);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
  });
});

describe("outlier-detector ejection", () => {
  it("ejects a host after consecutive5xxErrors and names the others for the load balancer, in turn", async () => {
    const vm = await load(base);
    for (const address of [A, B, C, A, B]) expect(exchange(vm, address, address === C ? 500 : 200)).toBeUndefined();
    expect(exchange(vm, C, 500)).toBeUndefined();
    expect(vm.metric("outlier_detector.ejections")).toBe(0);
    exchange(vm, C, 500);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
    expect(vm.logMessages("info")).toContain(`outlier-detector: ejected ${C} for 10000ms (ejection 1)`);
    expect([nextSteering(vm), nextSteering(vm), nextSteering(vm)]).toEqual([`${A},${B}`, `${B},${A}`, `${A},${B}`]);
    expect(vm.metric("outlier_detector.steered")).toBe(3);
    expect(vm.metric("outlier_detector.ejected_hosts")).toBe(1);
  });

  it("counts only errors in a row: a success ends the streak", async () => {
    const vm = await load(base);
    for (const status of [500, 500, 200, 500, 500]) exchange(vm, C, status);
    expect(vm.metric("outlier_detector.ejections")).toBe(0);
    exchange(vm, C, 503);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
  });

  it("counts gateway errors (502, 503, 504) in a row when consecutiveGatewayErrors is set", async () => {
    const vm = await load({ ...base, consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 });
    for (const status of [502, 500, 502]) exchange(vm, C, status);
    expect(vm.metric("outlier_detector.ejections")).toBe(0);
    exchange(vm, C, 504);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
  });

  it("removes a steering header the client sent", async () => {
    const vm = await load(base);
    expect(exchange(vm, A, 200, 0, { [HEADER]: C })).toBeUndefined();
  });

  it("never ejects more than maxEjectionPercent of the hosts", async () => {
    const vm = await load(base);
    exchange(vm, A, 200);
    for (let i = 0; i < 6; i++) {
      exchange(vm, B, 500);
      exchange(vm, C, 500);
    }
    // 3 hosts, 50%: one out; the other's streak keeps hitting the limit.
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
    expect(vm.metric("outlier_detector.ejected_hosts")).toBe(1);
    expect(vm.metric("outlier_detector.ejections_overflow")).toBeGreaterThan(0);
    expect(nextSteering(vm)?.split(",").sort()).toEqual([A, C].sort());
  });

  it("ejects nothing with maxEjectionPercent 0", async () => {
    const vm = await load({ ...base, maxEjectionPercent: 0 });
    for (let i = 0; i < 5; i++) exchange(vm, C, 500);
    expect(vm.metric("outlier_detector.ejections")).toBe(0);
    expect(nextSteering(vm)).toBeUndefined();
  });
});

describe("outlier-detector timing (manual clock, ticks every interval)", () => {
  it("brings a host back when its time is up, and ejects it again for baseEjectionTime x its ejections", async () => {
    const vm = await load(base);
    exchange(vm, A, 200);
    for (let i = 0; i < 3; i++) exchange(vm, C, 500);
    vm.advance(9_000);
    expect(nextSteering(vm)).toBe(A);
    expect(vm.metric("outlier_detector.returned")).toBe(0);
    vm.advance(1_000);
    expect(vm.metric("outlier_detector.returned")).toBe(1);
    expect(nextSteering(vm)).toBeUndefined();
    for (let i = 0; i < 3; i++) exchange(vm, C, 500);
    expect(vm.logMessages("info")).toContain(`outlier-detector: ejected ${C} for 20000ms (ejection 2)`);
    vm.advance(19_000);
    expect(nextSteering(vm)).toBe(A);
    vm.advance(1_000);
    expect(nextSteering(vm)).toBeUndefined();
    expect(vm.metric("outlier_detector.returned")).toBe(2);
  });

  it("brings hosts back only on the tick: a host whose time is up mid-interval waits for it", async () => {
    const vm = await load({ ...base, interval: "4s" });
    exchange(vm, A, 200);
    vm.advance(1_000);
    for (let i = 0; i < 3; i++) exchange(vm, C, 500); // ejected at 1 s until 11 s; ticks at 4, 8, 12 s
    vm.advance(10_500);
    expect(nextSteering(vm)).toBe(A);
    vm.advance(500);
    expect(nextSteering(vm)).toBeUndefined();
  });

  it("caps the ejection time at maxEjectionTime", async () => {
    const vm = await load({ ...base, maxEjectionTime: "15s" });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 3; i++) exchange(vm, C, 500);
      vm.advance(20_000);
    }
    expect(vm.logMessages("info")).toContain(`outlier-detector: ejected ${C} for 15000ms (ejection 2)`);
  });
});

describe("outlier-detector with two workers", () => {
  it("counts the errors of both workers in one streak, and the other worker follows the ejection at its tick", async () => {
    const vm = await load(base, 2);
    exchange(vm, A, 200, 0);
    exchange(vm, B, 200, 1);
    exchange(vm, C, 500, 0);
    exchange(vm, C, 500, 1);
    exchange(vm, C, 500, 0);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
    expect(nextSteering(vm, 0)).toBeDefined();
    // Worker 1 last read the shared state at its own error: it has not seen the ejection yet ...
    expect(nextSteering(vm, 1)).toBeUndefined();
    expect(vm.metric("outlier_detector.ejections_seen")).toBe(1);
    // ... until its tick.
    vm.advance(1_000);
    expect(nextSteering(vm, 1)?.split(",").sort()).toEqual([A, B]);
    expect(vm.metric("outlier_detector.ejections_seen")).toBe(2);
  });

  it("a worker learns of an ejection from its next error from that host, before its tick", async () => {
    const vm = await load(base, 2);
    exchange(vm, A, 200, 0);
    for (let i = 0; i < 3; i++) exchange(vm, C, 500, 0);
    expect(nextSteering(vm, 1)).toBeUndefined();
    exchange(vm, C, 500, 1); // an answer to a request sent before it knew
    expect(nextSteering(vm, 1)).toBe(A);
    // That late answer does not count towards the next ejection.
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
  });

  it("a success on a worker that has not synced does not end another worker's streak; after its tick it does", async () => {
    const vm = await load(base, 2);
    exchange(vm, C, 500, 0);
    exchange(vm, C, 500, 0);
    exchange(vm, C, 200, 1); // worker 1 does not know C has a streak: the trade-off for no shared-data read
    exchange(vm, C, 500, 0);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);

    vm.advance(10_000); // C is back
    exchange(vm, C, 500, 0);
    exchange(vm, C, 500, 0);
    vm.advance(1_000); // worker 1 syncs and sees C's streak
    exchange(vm, C, 200, 1);
    exchange(vm, C, 500, 0);
    expect(vm.metric("outlier_detector.ejections")).toBe(1);
  });
});
