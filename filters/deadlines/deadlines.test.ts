// deadlines in the host emulator, written as a filter author outside this repository writes it (against the
// @skiff/proxy-wasm package): where the budget comes from, what an expired request gets, the route timeout and the
// propagated budget, what is counted, and the configuration's errors.
import { describe, expect, it } from "vitest";
import { Emulator } from "@skiff/proxy-wasm/testing";

const MODULE = "build/filters/deadlines.wasm";
const GET = { ":method": "GET", ":path": "/", ":authority": "backend" };
const GRPC = { ":method": "POST", ":path": "/shop.Catalog/List", ":authority": "catalog", "content-type": "application/grpc", te: "trailers" };

async function load(config: object = {}): Promise<Emulator> {
  const vm = await Emulator.load(MODULE, { pluginConfig: config });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

/** The request headers as the router gets them, or the local response when the filter answered. */
function request(vm: Emulator, headers: Record<string, string>) {
  const stream = vm.http();
  const action = stream.sendRequestHeaders(headers, { endOfStream: true });
  return { stream, action, sent: stream.requestHeaders };
}

describe("where the budget comes from", () => {
  it("reads grpc-timeout in each of gRPC's units", async () => {
    const vm = await load();
    const cases: Array<[string, string]> = [["250m", "250"], ["2S", "2000"], ["1M", "15000"], ["3000000u", "3000"], ["9000000n", "9"]];
    for (const [timeout, routeTimeout] of cases) {
      const { sent } = request(vm, { ...GRPC, "grpc-timeout": timeout });
      // 1 minute is more than maxTimeout (15 s by default): the route's own timeout stays, 15 s goes upstream.
      expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBe(routeTimeout === "15000" ? null : routeTimeout);
      expect(sent.get("x-envoy-expected-rq-timeout-ms")).toBe(routeTimeout);
    }
  });

  it("reads its own x-skiff-timeout-ms, and x-envoy-expected-rq-timeout-ms when Envoy lets it through", async () => {
    const vm = await load();
    expect(request(vm, { ...GET, "x-skiff-timeout-ms": "700" }).sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("700");
    expect(request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "800" }).sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("800");
  });

  it("takes the earliest of the deadlines a request carries, in a header of the application's choosing", async () => {
    const vm = await load({ timeoutHeader: "x-request-timeout-ms" });
    const { sent } = request(vm, { ...GRPC, "grpc-timeout": "900m", "x-envoy-expected-rq-timeout-ms": "700", "x-request-timeout-ms": "300", "x-skiff-timeout-ms": "100" });
    expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("300");
    expect(sent.get("grpc-timeout")).toBe("300m");
    expect(sent.get("x-request-timeout-ms")).toBe("300");
  });

  it("gives requests without a deadline the default, or lets them pass untouched", async () => {
    const defaulted = await load({ defaultTimeout: "2s" });
    expect(request(defaulted, GET).sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("2000");
    expect(defaulted.metric("deadlines.defaulted")).toBe(1);

    const untouched = await load();
    const { sent } = request(untouched, GET);
    expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBeNull();
    expect(sent.get("x-envoy-expected-rq-timeout-ms")).toBeNull();
    expect(sent.get("x-skiff-timeout-ms")).toBeNull();
    expect(untouched.metric("deadlines.without_deadline")).toBe(1);
  });

  it("ignores and counts a deadline header it cannot read, keeping the others", async () => {
    const vm = await load();
    for (const bad of ["10", "5x", "123456789m", "-1m", "1.5S", ""]) request(vm, { ...GRPC, "grpc-timeout": bad });
    const { sent } = request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "soon", "grpc-timeout": "40m" });
    expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("40");
    expect(vm.metric("deadlines.malformed")).toBe(7);
    expect(vm.metric("deadlines.without_deadline")).toBe(6);
  });
});

describe("an expired request", () => {
  it("is answered 504 at once, marked and counted, and never reaches the upstream", async () => {
    const vm = await load();
    const expired: Array<Record<string, string>> = [{ "x-envoy-expected-rq-timeout-ms": "0" }, { "grpc-timeout": "999u" }];
    for (const headers of expired) {
      const { stream, action } = request(vm, { ...GET, ...headers });
      expect(action).toBe("pause");
      expect(stream.localResponse).toMatchObject({ status: 504, details: "deadline_expired", grpcStatus: null, headers: { "x-skiff-deadline": "expired" } });
      expect(stream.responseHeaders.get(":status")).toBe("504");
    }
    expect(vm.metric("deadlines.expired")).toBe(2);
    expect(vm.histogram("deadlines.remaining_ms")).toEqual([]);
  });

  it("gets DEADLINE_EXCEEDED when it is a gRPC call", async () => {
    const vm = await load();
    const { stream } = request(vm, { ...GRPC, "grpc-timeout": "0S" });
    expect(stream.localResponse?.grpcStatus).toBe(4);
  });

  it("is one with less than minRemaining left", async () => {
    const vm = await load({ minRemaining: "50ms" });
    expect(request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "49" }).stream.localResponse?.status).toBe(504);
    expect(request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "50" }).stream.localResponse).toBeNull();
  });
});

describe("a request within its deadline", () => {
  it("has the route time out with its budget, the budget propagated, and its remaining time recorded", async () => {
    const vm = await load();
    const { sent } = request(vm, { ...GRPC, "grpc-timeout": "1500m" });
    expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("1500");
    expect(sent.get("x-envoy-expected-rq-timeout-ms")).toBe("1500");
    expect(sent.get("x-skiff-timeout-ms")).toBe("1500");
    expect(sent.get("grpc-timeout")).toBe("1500m");
    expect(vm.metric("deadlines.with_deadline")).toBe(1);
    expect(vm.metric("deadlines.timeout_set")).toBe(1);
    expect(vm.histogram("deadlines.remaining_ms")).toEqual([1500]);
  });

  it("keeps the route's own timeout when the budget is at least maxTimeout", async () => {
    const vm = await load({ maxTimeout: "1s" });
    const { sent } = request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "5000" });
    expect(sent.get("x-envoy-upstream-rq-timeout-ms")).toBeNull();
    expect(sent.get("x-envoy-expected-rq-timeout-ms")).toBe("1000");
    expect(vm.metric("deadlines.timeout_set")).toBe(0);
  });

  it("counts and marks an answer that came after the deadline, as the router's timeout does", async () => {
    const vm = await load();
    const late = request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "100" }).stream;
    vm.advance(100);
    late.sendResponseHeaders({ ":status": "504" }, { endOfStream: true });
    const early = request(vm, { ...GET, "x-envoy-expected-rq-timeout-ms": "100" }).stream;
    vm.advance(99);
    early.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(late.responseHeaders.get("x-skiff-deadline")).toBe("exceeded");
    expect(early.responseHeaders.get("x-skiff-deadline")).toBeNull();
    expect(vm.metric("deadlines.exceeded")).toBe(1);
  });

  it("counts the router's timeout answer as past the deadline even when its timer fired a little early", async () => {
    const vm = await load();
    const stream = request(vm, { ...GET, "x-skiff-timeout-ms": "100" }).stream;
    vm.advance(99);
    stream.setProperty(["response", "code_details"], "response_timeout");
    stream.sendResponseHeaders({ ":status": "504" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-skiff-deadline")).toBe("exceeded");
  });
});

describe("configuration", () => {
  const bad: Array<[object, RegExp]> = [
    [{ defaultTimeout: "soon" }, /defaultTimeout: expected a duration/],
    [{ maxTimeout: 0 }, /maxTimeout: expected a duration/],
    [{ minRemaining: "2d" }, /minRemaining: expected a duration/],
    [{ timeoutHeader: "X-Timeout" }, /timeoutHeader: expected a lower-case header name/],
    [{ timeout: "1s" }, /timeout/],
  ];
  for (const [config, message] of bad) {
    it(`rejects ${JSON.stringify(config)}, naming the field, and keeps the previous configuration`, async () => {
      const vm = await load({ defaultTimeout: "3s" });
      expect(vm.configure(config)).toBe(false);
      expect(vm.logMessages("error").at(-1)).toMatch(message);
      expect(request(vm, GET).sent.get("x-envoy-upstream-rq-timeout-ms")).toBe("3000");
    });
  }
});
