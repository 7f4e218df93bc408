// b3-propagation in the host emulator: configuration validation, the formats of generated ids, child spans from
// either B3 encoding, malformed contexts replaced and counted, and sampling at the configured rate.
import { describe, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";

const WASM = "build/filters/b3-propagation.wasm";
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACE_ID_128 = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const TRACE = "463ac35c9f6413ad48485a3953bb6124";
const SPAN = "a2fb4a1d1a96d312";

async function load(config: object = {}, workers = 1): Promise<Emulator> {
  const vm = await Emulator.load(WASM, { pluginConfig: config, workers, logLevel: "info" });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

/** The request headers as the filter forwards them. */
function forward(vm: Emulator, headers: Record<string, string> = {}, worker = 0): Record<string, string> {
  const stream = vm.worker(worker).http();
  expect(stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "svc", ...headers }, { endOfStream: true })).toBe("continue");
  const forwarded = stream.requestHeaders.toObject();
  stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
  return forwarded;
}

const counter = (vm: Emulator, name: string) => vm.metric(`b3_propagation.${name}`);

describe("b3-propagation configuration", () => {
  const bad: Array<[unknown, string]> = [
    [{ samplingPercent: -1 }, "samplingPercent: expected a number from 0 to 100"],
    [{ samplingPercent: "50%" }, "samplingPercent: expected a number from 0 to 100"],
    [{ debug: "yes" }, "debug: expected true or false"],
    [{ generateRequestId: 1 }, "generateRequestId: expected true or false"],
    [{ sampling: 50 }, "sampling: unknown field"],
    ["[1]", "expected a JSON object"],
  ];

  it.each(bad)("rejects %j, naming the field in one error line", async (config, message) => {
    const vm = await Emulator.load(WASM, { pluginConfig: config as string | object, logLevel: "info" });
    expect(vm.configAccepted).toBe(false);
    const errors = vm.logMessages("error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`b3-propagation: configuration rejected: ${message}`);
  });

  it("keeps the previous configuration when a new one is rejected", async () => {
    const vm = await load({ samplingPercent: 0 }, 2);
    expect(vm.configure({ samplingPercent: 200 })).toBe(false);
    expect(forward(vm, {}, 1)["x-b3-sampled"]).toBe("0");
  });
});

describe("b3-propagation new traces", () => {
  it("gives a request without context an x-request-id (UUID v4) and a sampled root span with a 128-bit trace id", async () => {
    const vm = await load();
    const headers = forward(vm);
    expect(headers["x-request-id"]).toMatch(UUID_V4);
    expect(headers["x-b3-traceid"]).toMatch(TRACE_ID_128);
    expect(headers["x-b3-spanid"]).toMatch(SPAN_ID);
    expect(headers["x-b3-parentspanid"]).toBeUndefined();
    expect(headers["x-b3-sampled"]).toBe("1");
    expect(headers["x-b3-flags"]).toBeUndefined();
    expect(headers.b3).toBeUndefined();
    expect(counter(vm, "trace_started")).toBe(1);
    expect(counter(vm, "request_id_generated")).toBe(1);
    expect(counter(vm, "sampled")).toBe(1);
  });

  it("makes different ids every time, on every worker", async () => {
    const vm = await load({}, 2);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const headers = forward(vm, {}, i % 2);
      seen.add(headers["x-request-id"]).add(headers["x-b3-traceid"]).add(headers["x-b3-spanid"]);
      expect(headers["x-request-id"]).toMatch(UUID_V4);
    }
    expect(seen.size).toBe(1500);
  });

  it("keeps an existing x-request-id, and leaves it alone when generateRequestId is false", async () => {
    const vm = await load();
    expect(forward(vm, { "x-request-id": "abc" })["x-request-id"]).toBe("abc");
    expect(counter(vm, "request_id_generated")).toBe(0);
    const off = await load({ generateRequestId: false });
    expect(forward(off)["x-request-id"]).toBeUndefined();
  });

  it("samples new traces at the configured rate", async () => {
    const vm = await load({ samplingPercent: 30 });
    let sampled = 0;
    for (let i = 0; i < 2000; i++) if (forward(vm)["x-b3-sampled"] === "1") sampled++;
    // 30% of 2000: the binomial standard deviation is 20.5, so 500..700 is about 5 deviations either way.
    expect(sampled).toBeGreaterThan(500);
    expect(sampled).toBeLessThan(700);
    expect(counter(vm, "sampled")).toBe(sampled);
    expect(counter(vm, "not_sampled")).toBe(2000 - sampled);
  });

  it("marks new traces as debug when configured: x-b3-flags 1 and no x-b3-sampled", async () => {
    const vm = await load({ debug: true, samplingPercent: 0 });
    const headers = forward(vm);
    expect(headers["x-b3-flags"]).toBe("1");
    expect(headers["x-b3-sampled"]).toBeUndefined();
  });

  it("starts a trace that honours a decision sent alone", async () => {
    const vm = await load({ samplingPercent: 100 });
    expect(forward(vm, { "x-b3-sampled": "0" })["x-b3-sampled"]).toBe("0");
    const debug = forward(vm, { "x-b3-flags": "1" });
    expect(debug["x-b3-flags"]).toBe("1");
    expect(debug["x-b3-traceid"]).toMatch(TRACE_ID_128);
    const single = forward(vm, { b3: "0" });
    expect(single["x-b3-sampled"]).toBe("0");
    expect(single.b3).toBe(`${single["x-b3-traceid"]}-${single["x-b3-spanid"]}-0`);
    expect(counter(vm, "trace_started")).toBe(3);
    expect(counter(vm, "sampled")).toBe(0);
  });
});

describe("b3-propagation incoming traces", () => {
  it("continues a valid trace as a child span: same trace, new span id, parent = incoming span", async () => {
    const vm = await load({ samplingPercent: 0 });
    const headers = forward(vm, { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-parentspanid": "0020000000000001", "x-b3-sampled": "1" });
    expect(headers["x-b3-traceid"]).toBe(TRACE);
    expect(headers["x-b3-spanid"]).toMatch(SPAN_ID);
    expect(headers["x-b3-spanid"]).not.toBe(SPAN);
    expect(headers["x-b3-parentspanid"]).toBe(SPAN);
    expect(headers["x-b3-sampled"]).toBe("1");
    expect(counter(vm, "trace_continued")).toBe(1);
    expect(counter(vm, "trace_started")).toBe(0);
  });

  it("accepts 64-bit trace ids and the legacy true/false sampling values", async () => {
    const vm = await load();
    const headers = forward(vm, { "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": SPAN, "x-b3-sampled": "false" });
    expect(headers["x-b3-traceid"]).toBe("463ac35c9f6413ad");
    expect(headers["x-b3-sampled"]).toBe("0");
  });

  it("decides the sampling of a valid trace that carries no decision", async () => {
    const vm = await load({ samplingPercent: 0 });
    expect(forward(vm, { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN })["x-b3-sampled"]).toBe("0");
    expect(counter(vm, "not_sampled")).toBe(1);
  });

  it("keeps a debug trace debug", async () => {
    const vm = await load();
    const headers = forward(vm, { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-flags": "1", "x-b3-sampled": "1" });
    expect(headers["x-b3-flags"]).toBe("1");
    expect(headers["x-b3-sampled"]).toBeUndefined();
  });

  it("reads the single b3 header and writes both encodings for the child span", async () => {
    const vm = await load();
    for (const [b3, state] of [[`${TRACE}-${SPAN}`, "1"], [`${TRACE}-${SPAN}-0`, "0"], [`${TRACE}-${SPAN}-d-0020000000000001`, "d"]]) {
      const headers = forward(vm, { b3 });
      expect(headers["x-b3-traceid"]).toBe(TRACE);
      expect(headers["x-b3-parentspanid"]).toBe(SPAN);
      expect(headers.b3).toBe(`${TRACE}-${headers["x-b3-spanid"]}-${state}-${SPAN}`);
    }
    expect(counter(vm, "trace_continued")).toBe(3);
  });

  it("prefers the single header when both encodings are present", async () => {
    const vm = await load();
    const headers = forward(vm, { b3: `${TRACE}-${SPAN}-1`, "x-b3-traceid": "1111111111111111", "x-b3-spanid": "2222222222222222" });
    expect(headers["x-b3-traceid"]).toBe(TRACE);
    expect(headers["x-b3-parentspanid"]).toBe(SPAN);
  });

  const malformed: Array<[string, Record<string, string>]> = [
    ["an all-zero trace id", { "x-b3-traceid": "0".repeat(32), "x-b3-spanid": SPAN }],
    ["an all-zero span id", { "x-b3-traceid": TRACE, "x-b3-spanid": "0".repeat(16) }],
    ["a 20-digit trace id", { "x-b3-traceid": "463ac35c9f6413ad4848", "x-b3-spanid": SPAN }],
    ["a 15-digit span id", { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN.slice(1) }],
    ["a non-hex trace id", { "x-b3-traceid": "463ac35c9f6413ag", "x-b3-spanid": SPAN }],
    ["an upper-case span id", { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN.toUpperCase() }],
    ["a span id without trace id", { "x-b3-spanid": SPAN }],
    ["a trace id without span id", { "x-b3-traceid": TRACE }],
    ["a bad parent span id", { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-parentspanid": "xyz" }],
    ["a bad sampled value", { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "yes" }],
    ["a bad flags value", { "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-flags": "2" }],
    ["a single header with a short span id", { b3: `${TRACE}-a2fb4a1d` }],
    ["a single header with a bad sampling state", { b3: `${TRACE}-${SPAN}-x` }],
    ["a single header with a bad parent", { b3: `${TRACE}-${SPAN}-1-00` }],
    ["a single header with too many parts", { b3: `${TRACE}-${SPAN}-1-${SPAN}-1` }],
    ["a single header of garbage", { b3: "garbage" }],
  ];

  it.each(malformed)("replaces %s with a new root span and counts it", async (_, incoming) => {
    const vm = await load();
    const headers = forward(vm, incoming);
    expect(headers["x-b3-traceid"]).toMatch(TRACE_ID_128);
    expect(headers["x-b3-traceid"]).not.toBe(TRACE);
    expect(headers["x-b3-spanid"]).toMatch(SPAN_ID);
    expect(headers["x-b3-parentspanid"]).toBeUndefined();
    expect(headers["x-b3-sampled"]).toBe("1");
    expect(headers["x-b3-flags"]).toBeUndefined();
    if (incoming.b3 !== undefined) expect(headers.b3).toBe(`${headers["x-b3-traceid"]}-${headers["x-b3-spanid"]}-1`);
    expect(counter(vm, "trace_malformed")).toBe(1);
    expect(counter(vm, "trace_started")).toBe(1);
  });
});
