// The emulator driven through the SDK's probe module (sdk/fixtures/probe): one scenario per API, each asserting what
// a filter author would check in their own tests.
import { beforeAll, describe, expect, it } from "vitest";
import { fixtureModule } from "../tools/fixtures.js";
import { Emulator, GuestTrap, WasmResult } from "./index.js";

let probe: string;
let tcpProbe: string;

beforeAll(async () => {
  probe = await fixtureModule("probe");
  tcpProbe = await fixtureModule("tcp-probe");
});

const GET = { ":method": "GET", ":path": "/things?x=1", ":authority": "example.local", ":scheme": "http" };

describe("configuration", () => {
  it("hands the plugin configuration to onConfigure and reports acceptance", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { greeting: "hej" } });
    expect(vm.configAccepted).toBe(true);
    const stream = vm.http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-probe-greeting")).toBe("hej");
    expect(vm.logMessages("info")).toContain("probe: configured greeting=hej");
  });

  it("keeps the previous configuration when a new one is rejected, as Envoy does", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { greeting: "first" }, workers: 2 });
    expect(vm.configure({ greeting: 42 })).toBe(false);
    expect(vm.logMessages("error")).toContain("probe: invalid configuration: greeting: expected a string");
    expect(vm.pluginConfig).toBe(JSON.stringify({ greeting: "first" }));
    for (const worker of vm.workers) {
      const stream = worker.http();
      stream.sendRequestHeaders(GET, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
      expect(stream.responseHeaders.get("x-probe-greeting")).toBe("first");
    }
    expect(vm.configure({ greeting: "second" })).toBe(true);
    const stream = vm.worker(1).http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-probe-greeting")).toBe("second");
  });

  it("reports a first configuration that was rejected, and opens no stream without one", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { greting: "typo" } });
    expect(vm.configAccepted).toBe(false);
    expect(vm.logMessages("error")[0]).toMatch(/greting/);
    expect(() => vm.http()).toThrow(/no plugin configuration was accepted/);
  });

  it("hands the VM configuration to onVmStart, and fails the load when the VM refuses it", async () => {
    const vm = await Emulator.load(probe, { vmConfig: "vm-settings" });
    expect(vm.logMessages("info")).toContain("probe: vm started with 'vm-settings'");
    await expect(Emulator.load(probe, { vmConfig: "refuse" })).rejects.toThrow(/proxy_on_vm_start returned false/);
  });

  it("refuses a module that imports what Envoy does not provide", async () => {
    // A minimal module importing env.abort, as a plain AssemblyScript build does.
    const bytes = Uint8Array.from([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x02, 0x0d, 0x01, 0x03, 0x65,
      0x6e, 0x76, 0x05, 0x61, 0x62, 0x6f, 0x72, 0x74, 0x00, 0x00,
    ]);
    await expect(Emulator.load(bytes)).rejects.toThrow(/env\.abort, which Envoy does not provide/);
  });
});

describe("HTTP headers", () => {
  it("reads a header, and gets null for a missing one", async () => {
    const vm = await Emulator.load(probe);
    const present = vm.http();
    present.sendRequestHeaders({ ...GET, "x-probe-echo": "x-client", "X-Client": "Yes" });
    expect(present.requestHeaders.get("x-probe-seen")).toBe("Yes");
    const missing = vm.http();
    missing.sendRequestHeaders({ ...GET, "x-probe-echo": "x-absent" });
    expect(missing.requestHeaders.get("x-probe-seen")).toBe("<missing>");
  });

  it("adds, replaces and removes headers with Envoy's header-map rules", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    const action = stream.sendRequestHeaders([
      [":method", "GET"], [":path", "/"], [":authority", "a"], ["x-probe", "mutate"], ["x-remove-me", "1"],
      ["x-replaced", "old-1"], ["x-replaced", "old-2"], ["x-encoded", "old"],
    ]);
    expect(action).toBe("continue");
    const headers = stream.requestHeaders;
    expect(headers.has("x-remove-me")).toBe(false);
    expect(headers.getAll("x-added")).toEqual(["one", "two"]);
    expect(headers.getAll("x-replaced")).toEqual(["new"]);
    expect(headers.getAll("x-encoded")).toEqual(["encoded-once"]);
    expect(headers.entries()[0][0]).toBe(":method");
    expect(headers.get("x-probe-count")).toBe(String(headers.size - 1));
    expect(stream.routeCacheCleared).toBeGreaterThan(0);
  });

  it("forgets the request headers once their callback continued, as Envoy does", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders(GET, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-request-path-in-response")).toBe("null");
    // The SDK tells an unreadable map (BadArgument) from a missing header (NotFound), and writes report their status.
    expect(stream.responseHeaders.get("x-request-path-status")).toBe(String(WasmResult.BadArgument));
    expect(stream.responseHeaders.get("x-late-write-status")).toBe(String(WasmResult.BadArgument));
    expect(stream.responseHeaders.get("x-absent-status")).toBe(String(WasmResult.NotFound));
    expect(stream.responseHeaders.get("x-remove-absent-status")).toBe(String(WasmResult.Ok));
  });

  it("reads several headers with one host call: the first value of each, null for absent ones, names in any case", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders([...Object.entries(GET), ["x-probe", "each"], ["x-one", "1"], ["x-two", "2"], ["x-repeated", "first"], ["x-repeated", "second"]]);
    expect(stream.requestHeaders.get("x-each")).toBe("1|2|<null>|first");
  });

  it("replaces the whole map, and reports its size in bytes as Envoy does", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "replace-all" });
    const headers = stream.requestHeaders;
    expect(headers.get("x-all")).toBe("5");
    expect(headers.entries().slice(0, 4).map(([n]) => n)).toEqual([":method", ":path", ":authority", ":scheme"]);
    const before = headers.entries().filter(([n]) => n !== "x-size");
    expect(Number(headers.get("x-size"))).toBe(before.reduce((sum, [n, v]) => sum + n.length + v.length, 0));
  });

  it("lets a filter read and write trailers, and add trailers from the last body callback", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, ":method": "POST" });
    stream.sendRequestBody("abc");
    stream.sendRequestTrailers({ "x-client-trailer": "t1" });
    expect(stream.request.trailers?.get("x-trailer-seen")).toBe("t1");
    stream.sendResponseHeaders({ ":status": "200" });
    stream.sendResponseTrailers({ "grpc-status": "0" });
    expect(stream.response.trailers?.get("x-response-trailer-seen")).toBe("yes");
    expect(stream.finished).toBe(true);

    const adding = vm.http();
    adding.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "add-trailer" });
    adding.sendRequestBody("abc", { endOfStream: true });
    expect(adding.request.trailers?.get("x-probe-trailer")).toBe("added");
  });
});

describe("HTTP bodies", () => {
  it("buffers a paused body and replaces it whole at end of stream", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "replace-body", "content-length": "6" });
    expect(stream.requestHeaders.has("content-length")).toBe(false);
    expect(stream.sendRequestBody("abc")).toBe("pause");
    expect(stream.request.paused).toBe(true);
    expect(stream.sendRequestBody("def", { endOfStream: true })).toBe("continue");
    expect(stream.requestBody).toBe("replaced:abcdef");
    expect(stream.request.ended).toBe(true);
    expect(vm.histogram("skiff_probe.body_bytes")).toEqual([3, 6]);
  });

  it("reads a body's bytes", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "body-bytes" });
    stream.sendRequestBody(Uint8Array.of(7, 8, 9), { endOfStream: true });
    expect(vm.logMessages("info")).toContain("probe: body bytes 3 first 7");
  });

  it("prepends and appends to a chunk", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "edit-body" });
    stream.sendRequestBody("a");
    stream.sendRequestBody("b", { endOfStream: true });
    expect(stream.requestBody).toBe("<a><b>");
  });

  it("replaces a response body", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "replace-response-body" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200", "content-length": "5" });
    expect(stream.responseHeaders.has("content-length")).toBe(false);
    stream.sendResponseBody("hel");
    stream.sendResponseBody("lo", { endOfStream: true });
    expect(stream.responseBody).toBe("[hello]");
    expect(stream.finished).toBe(true);
  });
});

describe("pausing and local responses", () => {
  it("holds body and trailers behind paused headers and delivers them when resumed", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "auth" } });
    const stream = vm.http();
    expect(stream.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "callout" })).toBe("pause");
    expect(stream.sendRequestBody("held", { endOfStream: true })).toBe("pause");
    expect(vm.histogram("skiff_probe.body_bytes")).toEqual([]);
    expect(() => stream.sendResponseHeaders({ ":status": "200" })).toThrow(/holds the request/);
    vm.pendingHttpCalls[0].respond({ status: 200, body: "ok" });
    expect(stream.request.paused).toBe(false);
    expect(stream.request.resumed).toBe(1);
    expect(vm.histogram("skiff_probe.body_bytes")).toEqual([4]);
    expect(stream.request.ended).toBe(true);
  });

  it("resets a stream the filter closes", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "reset" });
    expect(stream.closed.request).toBe(true);
    expect(stream.finished).toBe(true);
    expect(() => stream.sendRequestBody("more")).toThrow(/the stream is finished/);
  });

  it("sends a local response that runs through the filter's response callbacks", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { greeting: "hi" } });
    const stream = vm.http();
    expect(stream.sendRequestHeaders({ ...GET, "x-probe": "local" }, { endOfStream: true })).toBe("pause");
    expect(stream.localResponse).toEqual({
      status: 403, body: "denied by probe", headers: { "x-probe-local": "yes" }, details: "probe_denied", grpcStatus: null,
    });
    expect(stream.responseHeaders.get(":status")).toBe("403");
    expect(stream.responseHeaders.get("x-probe-greeting")).toBe("hi");
    expect(stream.responseBody).toBe("denied by probe");
    expect(stream.finished).toBe(true);
    expect(vm.logMessages("info")).toContain("probe: log local status 403");
  });
});

describe("callouts", () => {
  it("delivers an HTTP call's answer, made on the root context as in Envoy, to the stream that asked", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "auth" } });
    vm.onHttpCall((call) => ({ status: 201, headers: { "x-upstream": `${call.cluster}${call.headers[":path"]}` }, body: "granted" }));
    const stream = vm.http();
    expect(stream.sendRequestHeaders({ ...GET, "x-probe": "callout" }, { endOfStream: true })).toBe("pause");
    expect(vm.httpCalls).toHaveLength(1);
    const call = vm.httpCalls[0];
    // Envoy makes every callout on the root context; the SDK routes the answer back to the stream.
    expect(call).toMatchObject({ cluster: "auth", token: 4, contextId: vm.worker(0).activeRoot!.id, callerId: stream.id, timeoutMs: 5000 });
    expect(call.headers["x-probe-from"]).toBe("callout");
    expect(stream.requestHeaders.get("x-callout-status")).toBe("201");
    expect(stream.requestHeaders.get("x-callout-body")).toBe("granted");
    expect(stream.requestHeaders.get("x-callout-upstream")).toBe("auth/callout");
    expect(stream.request.paused).toBe(false);
  });

  it("reports a failed call with status 0 and refuses calls to unknown clusters", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "auth" }, clusters: ["auth"] });
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "callout" });
    vm.pendingHttpCalls[0].fail();
    expect(stream.requestHeaders.get("x-callout-status")).toBe("0");

    vm.configure({ cluster: "nowhere" });
    const refused = vm.http();
    expect(refused.sendRequestHeaders({ ...GET, "x-probe": "callout" })).toBe("continue");
    expect(refused.requestHeaders.get("x-callout-status")).toBe("refused");
  });

  it("routes a call made by the root context to the root context", async () => {
    const vm = await Emulator.load(probe);
    vm.onHttpCall(() => ({ status: 204 }));
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "callout-root" });
    expect(vm.logMessages("info")).toContain(`probe: root got callout ${stream.requestHeaders.get("x-callout-id")} status 204`);
  });

  it("answers a unary gRPC call with one callback: the message on success, the status on failure", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "grpc-backend" } });
    vm.onGrpcCall((callout) => {
      const request = new TextDecoder().decode(callout.request);
      if (callout.callerId % 2 === 0) callout.answer({ status: 0, message: `pong to ${request}` });
      else callout.answer({ status: 14, statusMessage: "backend down" });
    });
    const results = [0, 1].map(() => {
      const stream = vm.http();
      expect(stream.sendRequestHeaders({ ...GET, "x-probe": "grpc" })).toBe("pause");
      expect(stream.request.paused).toBe(false);
      return { id: stream.id, message: stream.requestHeaders.get("x-grpc-message"), status: stream.requestHeaders.get("x-grpc-status") };
    });
    const ok = results.find((r) => r.id % 2 === 0)!;
    const failed = results.find((r) => r.id % 2 === 1)!;
    expect(ok).toMatchObject({ message: "pong to ping", status: "received" });
    expect(failed).toMatchObject({ message: null, status: "14 backend down" });
    const callout = vm.grpcCallouts[0];
    expect(callout).toMatchObject({ kind: "call", cluster: "grpc-backend", service: "skiff.Probe", method: "Echo", token: 5 });
    expect(callout.metadata).toEqual([["x-grpc-meta", "m"]]);
    expect(() => callout.sendInitialMetadata({ a: "b" })).toThrow(/no initial metadata for a unary/);
  });

  it("carries messages both ways on a gRPC stream", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "grpc-backend" } });
    vm.onGrpcStream(() => {}, (stream, message) => stream.reply(`echo ${new TextDecoder().decode(message)}`));
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "grpc-stream" });
    const grpc = vm.grpcCallouts[0];
    expect(grpc.kind).toBe("stream");
    expect(grpc.sent.map((m) => new TextDecoder().decode(m))).toEqual(["one", "two"]);
    expect(grpc.localClosed).toBe(true);
    expect(stream.requestHeaders.getAll("x-grpc-message")).toEqual(["echo one", "echo two"]);
    grpc.sendInitialMetadata({ "x-init": "i" });
    grpc.sendTrailingMetadata({ "x-trail": "t" });
    grpc.close(14, "unavailable");
    expect(stream.requestHeaders.get("x-grpc-initial")).toBe("i");
    expect(stream.requestHeaders.get("x-grpc-trailing")).toBe("t");
    expect(stream.requestHeaders.get("x-grpc-status")).toBe("14 unavailable");
  });

  it("cancels a gRPC stream once; a second cancel is NOT_FOUND", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { cluster: "grpc-backend" } });
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "grpc-cancel" });
    expect(stream.requestHeaders.get("x-cancel")).toBe(String(WasmResult.Ok));
    expect(stream.requestHeaders.get("x-cancel-again")).toBe(String(WasmResult.NotFound));
    expect(vm.grpcCallouts[0].cancelled).toBe(true);
  });
});

describe("shared data and queues", () => {
  it("shares data between workers with compare-and-swap", async () => {
    const vm = await Emulator.load(probe, { workers: 2 });
    const values = [0, 1, 0, 1].map((w) => {
      const stream = vm.worker(w).http();
      stream.sendRequestHeaders({ ...GET, "x-probe": "shared-inc" });
      return stream.requestHeaders.get("x-shared");
    });
    expect(values).toEqual(["1", "2", "3", "4"]);
    expect(vm.sharedData.get("skiff_probe.counter")?.text).toBe("4");
  });

  it("follows Envoy's CAS rules from the test side too", async () => {
    const vm = await Emulator.load(probe);
    expect(vm.sharedData.get("k")).toBeUndefined();
    expect(vm.sharedData.set("k", "a", 77)).toBe(WasmResult.Ok);
    const { cas } = vm.sharedData.get("k")!;
    expect(vm.sharedData.set("k", "b", cas)).toBe(WasmResult.Ok);
    expect(vm.sharedData.set("k", "c", cas)).toBe(WasmResult.CasMismatch);
    expect(vm.sharedData.set("k", "d", 0)).toBe(WasmResult.Ok);
    expect(vm.sharedData.get("k")?.text).toBe("d");
    const stream = vm.http();
    vm.sharedData.set("skiff_probe.counter", "41");
    stream.sendRequestHeaders({ ...GET, "x-probe": "shared-get" });
    expect(stream.requestHeaders.get("x-shared")).toBe("41");
  });

  it("notifies the registering root context when a worker or the test enqueues", async () => {
    const vm = await Emulator.load(probe, { workers: 2 });
    const stream = vm.worker(1).http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "enqueue", "x-item": "from-worker-1" });
    expect(stream.requestHeaders.get("x-enqueue")).toBe(String(WasmResult.Ok));
    expect(vm.logs.find((l) => l.message === "probe: dequeued from-worker-1")?.worker).toBe(0);
    vm.queues.enqueue("skiff_probe.queue", "from-test");
    expect(vm.sharedData.get("skiff_probe.last_item")?.text).toBe("from-test");
    expect(vm.queues.items("skiff_probe.queue")).toEqual([]);
  });
});

describe("metrics, logs, time, properties", () => {
  it("counts by name across workers, and refuses a zero or negative counter increment", async () => {
    const vm = await Emulator.load(probe, { workers: 2 });
    for (const w of [0, 1, 1]) {
      const stream = vm.worker(w).http();
      stream.sendRequestHeaders({ ...GET, "x-probe": "counter-zero" }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    }
    expect(vm.metric("skiff_probe.requests")).toBe(3);
    expect(vm.metric("skiff_probe.logged")).toBe(3);
    expect(vm.metric("skiff_probe.inflight")).toBe(0);
    expect(vm.metrics.kind("skiff_probe.body_bytes")).toBe("histogram");
    expect(vm.metric("skiff_probe.unknown")).toBeUndefined();
  });

  it("sets and reads gauges and counters", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "gauge" });
    expect(stream.requestHeaders.get("x-gauge")).toBe("42");
    expect(stream.requestHeaders.get("x-requests")).toBe("1");
    expect(vm.metric("skiff_probe.inflight")).toBe(42);
  });

  it("records log lines with their levels and honours the host log level", async () => {
    const vm = await Emulator.load(probe, { logLevel: "warn" });
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "log" });
    expect(vm.logs.filter((l) => l.message.endsWith(" line")).map((l) => l.level)).toEqual(["warn", "error", "critical"]);
    expect(stream.requestHeaders.get("x-debug-enabled")).toBe("no");
  });

  it("fires ticks per period on the manual clock, on every worker", async () => {
    const vm = await Emulator.load(probe, { pluginConfig: { tickMs: 100 }, workers: 2 });
    vm.advance(99);
    expect(vm.metric("skiff_probe.ticks")).toBe(0);
    vm.advance(1);
    expect(vm.metric("skiff_probe.ticks")).toBe(2);
    vm.advance(250);
    expect(vm.metric("skiff_probe.ticks")).toBe(6);
    const rootId = vm.worker(0).activeRoot!.id;
    expect(vm.sharedData.get(`skiff_probe.ticks.${rootId}`)?.text).toBe("3");
  });

  it("gives time and randomness from the host", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "time" });
    expect(stream.requestHeaders.get("x-time-ok")).toBe("yes");
    expect(stream.requestHeaders.get("x-random-ok")).toBe("yes");
  });

  it("reads properties by path with Envoy's encodings, and keeps what the filter sets", async () => {
    const vm = await Emulator.load(probe, { pluginName: "probe-plugin" });
    const stream = vm.http();
    stream.setProperty(["upstream", "address"], "10.1.2.3:8080");
    stream.sendRequestHeaders({ ...GET, "x-probe": "properties" }, { endOfStream: true });
    expect(stream.requestHeaders.get("x-plugin-name")).toBe("probe-plugin");
    expect(stream.requestHeaders.get("x-state")).toBe("set-by-probe");
    expect(stream.property(["skiff_probe_state"])).toBe("set-by-probe");
    stream.sendResponseHeaders({ ":status": "503" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-upstream-address")).toBe("10.1.2.3:8080");
    expect(stream.responseHeaders.get("x-response-code")).toBe("503");
  });

  it("answers foreign functions: clear_route_cache is built in, unknown ones are NOT_FOUND", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    stream.sendRequestHeaders({ ...GET, "x-probe": "foreign" });
    expect(stream.requestHeaders.get("x-foreign")).toBe("missing");
    expect(stream.requestHeaders.get("x-clear-route-cache")).toBe("ok");
    vm.worker(0).foreignFunction(7, new TextEncoder().encode("args"));
    expect(vm.logMessages("info")).toContain("probe: foreign function 7 args args");
  });
});

describe("TCP", () => {
  it("holds data until a newline, rewrites it, and ends the context when both sides close", async () => {
    const vm = await Emulator.load(tcpProbe);
    const connection = vm.tcp();
    expect(connection.newConnectionAction).toBe("continue");
    expect(connection.sendDownstreamData("hel")).toBe("pause");
    expect(connection.downstream.received).toBe("");
    expect(connection.sendDownstreamData("lo\n")).toBe("continue");
    expect(connection.downstream.received).toBe("HELLO\n");
    connection.sendUpstreamData("ok");
    expect(connection.upstream.received).toBe("upstream: ok");
    expect(vm.metric("skiff_tcp_probe.downstream_bytes")).toBe(6);
    expect(vm.metric("skiff_tcp_probe.upstream_bytes")).toBe(2);
    connection.closeDownstream("remote");
    expect(connection.finished).toBe(false);
    connection.closeUpstream();
    expect(connection.finished).toBe(true);
    expect(vm.logMessages("info")).toEqual(expect.arrayContaining(["tcp-probe: downstream closed by remote", `tcp-probe: done ${connection.id}`]));
  });
});

describe("guest failures", () => {
  it("turns a trap into a GuestTrap naming the callback and the abort message, and fails the worker", async () => {
    const vm = await Emulator.load(probe);
    const stream = vm.http();
    expect(() => stream.sendRequestHeaders({ ...GET, "x-probe": "trap" })).toThrow(GuestTrap);
    expect(() => vm.http()).toThrow(/failed earlier: guest trapped in proxy_on_request_headers.*probe asked to trap/);
    expect(vm.worker(0).failure?.message).toMatch(/abort: probe asked to trap/);
  });
});
