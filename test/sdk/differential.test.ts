// Differential tests: each scenario runs through the probe module (sdk/fixtures/probe) twice, in a real Envoy and in
// the host emulator, and what the upstream and the client see must be the same. This is the evidence that the
// emulator behaves like Envoy where Envoy is specific.
import { afterAll, beforeAll, expect, it } from "vitest";
import { Emulator, type HttpStream } from "../../sdk/testing/index.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy, waitFor } from "../harness/envoy.js";
import { type Reply, type Upstream, startUpstream } from "../harness/upstream.js";
import { staticBootstrap } from "../harness/bootstrap.js";
import { probeBootstrap, probeFilter } from "./probe.js";

interface Scenario {
  name: string;
  request: { method?: string; headers: Record<string, string>; body?: string };
  reply?: { status: number; body: string };
  /** Request headers to compare as the upstream saw them. */
  upstreamHeaders?: string[];
  /** Response headers to compare as the client saw them. */
  responseHeaders?: string[];
}

interface Observed {
  upstream: { headers: Record<string, string | null>; body: string } | null;
  response: { status: number; headers: Record<string, string | null>; body: string };
}

const CONFIG = { greeting: "same-everywhere" };
const DEFAULT_REPLY = { status: 200, body: "upstream-body" };

const scenarios: Scenario[] = [
  { name: "a header the filter reads", request: { headers: { "x-probe-echo": "x-client", "x-client": "yes" } }, upstreamHeaders: ["x-probe-seen"] },
  { name: "a missing header reads as null", request: { headers: { "x-probe-echo": "x-absent" } }, upstreamHeaders: ["x-probe-seen"] },
  {
    name: "several headers read at once: first values, absent ones null",
    request: { headers: { "x-probe": "each", "x-one": "1", "x-two": "2", "x-repeated": "first" } },
    upstreamHeaders: ["x-each"],
  },
  {
    name: "headers added, replaced and removed",
    request: { headers: { "x-probe": "mutate", "x-remove-me": "1", "x-replaced": "old", "x-encoded": "old" } },
    upstreamHeaders: ["x-added", "x-replaced", "x-remove-me", "x-encoded"],
  },
  {
    name: "request headers are gone once their callback continued (BadArgument, not NotFound)",
    request: { headers: {} },
    responseHeaders: ["x-request-path-in-response", "x-request-path-status", "x-late-write-status", "x-absent-status", "x-remove-absent-status", "x-probe-greeting"],
  },
  {
    name: "a local response runs through the filter's response callbacks",
    request: { headers: { "x-probe": "local" } },
    responseHeaders: ["x-probe-local", "x-probe-greeting", "content-type"],
  },
  { name: "a replaced request body", request: { method: "POST", headers: { "x-probe": "replace-body" }, body: "abcdef" } },
  { name: "a replaced response body", request: { headers: { "x-probe": "replace-response-body" } }, reply: { status: 200, body: "payload" } },
  {
    name: "properties: plugin name, a property the filter set, response code, upstream address",
    request: { headers: { "x-probe": "properties" } },
    reply: { status: 201, body: "created" },
    upstreamHeaders: ["x-plugin-name", "x-state"],
    responseHeaders: ["x-response-code", "x-upstream-address"],
  },
  { name: "the host's log level", request: { headers: { "x-probe": "log" } }, upstreamHeaders: ["x-debug-enabled"] },
  {
    name: "foreign functions: clear_route_cache exists, an unknown one is NOT_FOUND",
    request: { headers: { "x-probe": "foreign" } },
    upstreamHeaders: ["x-foreign", "x-clear-route-cache"],
  },
  { name: "zero and negative counter increments", request: { headers: { "x-probe": "counter-zero" } } },
];

function pathOf(scenario: Scenario): string {
  return `/${scenarios.indexOf(scenario)}`;
}

function pick(get: (name: string) => string | null, names: string[] | undefined): Record<string, string | null> {
  return Object.fromEntries((names ?? []).map((name) => [name, get(name)]));
}

describeE2E("the emulator and Envoy agree", () => {
  let backend: Upstream;
  let envoy: Envoy;
  let port: number;
  let vm: Emulator;
  const inEnvoy = new Map<Scenario, Observed>();
  const inEmulator = new Map<Scenario, Observed>();

  beforeAll(async () => {
    const replies = new Map<string, Reply>(scenarios.map((s) => [pathOf(s), s.reply ?? DEFAULT_REPLY]));
    backend = await startUpstream({ name: "backend", script: (request) => replies.get(request.path) ?? {} });
    envoy = await startEnvoy({ bootstrap: await probeBootstrap({ backend: backend.port }, { configuration: CONFIG }) });
    port = await envoy.listenerPort("ingress");
    vm = await Emulator.load(await fixtureModule("probe"), {
      pluginConfig: CONFIG, pluginName: "probe", rootId: "probe", vmId: "probe", logLevel: "info",
    });

    for (const scenario of scenarios) {
      const path = pathOf(scenario);
      const response = await send(port, { method: scenario.request.method, path, headers: scenario.request.headers, body: scenario.request.body });
      const seen = backend.requests.find((r) => r.path === path);
      inEnvoy.set(scenario, {
        upstream: seen === undefined ? null : { headers: pick((name) => seen.headers[name] ?? null, scenario.upstreamHeaders), body: seen.body },
        response: { status: response.status, headers: pick((name) => response.headers[name] ?? null, scenario.responseHeaders), body: response.body },
      });
      inEmulator.set(scenario, runInEmulator(scenario, path));
    }
  });

  afterAll(async () => {
    await envoy?.stop();
    await backend?.stop();
  });

  function runInEmulator(scenario: Scenario, path: string): Observed {
    const stream = vm.http();
    stream.setProperty(["upstream", "address"], `127.0.0.1:${backend.port}`);
    const { method = "GET", headers, body } = scenario.request;
    const request = { ":method": method, ":path": path, ":authority": `127.0.0.1:${port}`, ":scheme": "http", ...headers };
    if (body !== undefined) {
      stream.sendRequestHeaders({ ...request, "content-length": String(body.length) });
      stream.sendRequestBody(body, { endOfStream: true });
    } else {
      stream.sendRequestHeaders(request, { endOfStream: true });
    }
    let upstream: Observed["upstream"] = null;
    if (stream.localResponse === null) {
      upstream = { headers: pick((name) => joined(stream, "request", name), scenario.upstreamHeaders), body: stream.requestBody };
      const reply = scenario.reply ?? DEFAULT_REPLY;
      stream.sendResponseHeaders({ ":status": String(reply.status), "content-length": String(reply.body.length), "x-upstream": "backend" });
      stream.sendResponseBody(reply.body, { endOfStream: true });
    }
    return {
      upstream,
      response: {
        status: Number(stream.responseHeaders.get(":status")),
        headers: pick((name) => joined(stream, "response", name), scenario.responseHeaders),
        body: stream.responseBody,
      },
    };
  }

  /** Repeated headers as Node's HTTP parser hands them to the upstream and the client: joined by ", ". */
  function joined(stream: HttpStream, direction: "request" | "response", name: string): string | null {
    const values = stream[direction].headers.getAll(name);
    return values.length === 0 ? null : values.join(", ");
  }

  for (const scenario of scenarios) {
    it(scenario.name, () => {
      expect(inEmulator.get(scenario)).toEqual(inEnvoy.get(scenario));
    });
  }

  it("the request counter, which refuses zero and negative increments, has the same value", async () => {
    expect(vm.metric("skiff_probe.requests")).toBe(scenarios.length);
    expect(await envoy.stat("wasmcustom.skiff_probe.requests")).toBe(vm.metric("skiff_probe.requests"));
  });
});

describeE2E("the emulator and Envoy agree on a rejected configuration", () => {
  it("refuses the plugin with the same log line naming the field", async () => {
    const badConfig = { greeting: 42 };
    const vm = await Emulator.load(await fixtureModule("probe"), { pluginConfig: badConfig });
    expect(vm.configAccepted).toBe(false);
    const line = "probe: invalid configuration: greeting: expected a string";
    expect(vm.logMessages("error")).toContain(line);

    const backend = await startUpstream({ name: "backend" });
    try {
      const started = startEnvoy({ bootstrap: await probeBootstrap({ backend: backend.port }, { configuration: badConfig }) });
      await expect(started).rejects.toThrow(line);
    } finally {
      await backend.stop();
    }
  });
});

describeE2E("the emulator and Envoy agree on a configuration update the filter rejects", () => {
  let backend: Upstream;
  let envoy: Envoy;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
  });

  afterAll(async () => {
    await envoy?.stop();
    await backend?.stop();
  });

  /** The bootstrap with the probe configured by `configuration`; its listener is what Envoy's file-based LDS gets. */
  async function withProbe(configuration: unknown): Promise<Record<string, unknown>> {
    return staticBootstrap({ clusters: { backend: { ports: [backend.port] } }, httpFilters: [await probeFilter({ configuration })] });
  }

  async function greeting(): Promise<string | undefined> {
    const port = await envoy.listenerPort("ingress");
    return (await send(port, { path: "/greeting", headers: { connection: "close" } })).headers["x-probe-greeting"];
  }

  it("keeps the previous configuration in force, then takes a valid one", async () => {
    const vm = await Emulator.load(await fixtureModule("probe"), { pluginConfig: { greeting: "first" } });
    const inEmulator = (): string | null => {
      const stream = vm.http();
      stream.sendRequestHeaders({ ":method": "GET", ":path": "/greeting", ":authority": "a" }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
      return stream.responseHeaders.get("x-probe-greeting");
    };

    envoy = await startEnvoy({ bootstrap: await withProbe({ greeting: "first" }), listenersFromFile: true });
    expect(await greeting()).toBe("first");
    expect(inEmulator()).toBe("first");

    envoy.publishListeners(await withProbe({ greeting: 42 }));
    await waitFor(async () => ((await envoy.stat("listener_manager.lds.update_rejected")) ?? 0) >= 1, "the update is rejected");
    expect(await envoy.stat("listener_manager.lds.update_rejected")).toBe(1);
    await envoy.waitForLog("probe: invalid configuration: greeting: expected a string");
    expect(await greeting()).toBe("first");
    expect(vm.configure({ greeting: 42 })).toBe(false);
    expect(inEmulator()).toBe("first");

    envoy.publishListeners(await withProbe({ greeting: "second" }));
    // An accepted update reaches the workers shortly after Envoy counts it: wait for the new filter chain.
    let seen = await greeting();
    await waitFor(async () => (seen = await greeting()) === "second", "the new configuration serves");
    expect(seen).toBe("second");
    expect(await envoy.stat("listener_manager.lds.update_success")).toBe(2);
    expect(vm.configure({ greeting: "second" })).toBe(true);
    expect(inEmulator()).toBe("second");
  });
});

describeE2E("the emulator and Envoy agree on an HTTP call that times out", () => {
  let backend: Upstream;
  let slow: Upstream;
  let envoy: Envoy;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    slow = await startUpstream({ name: "slow", script: () => ({ delayMs: 2000, body: "too late" }) });
    envoy = await startEnvoy({ bootstrap: await probeBootstrap({ backend: backend.port, callout: slow.port }, { configuration: { calloutTimeoutMs: 100 } }) });
  });

  afterAll(async () => {
    await envoy?.stop();
    await slow?.stop();
    await backend?.stop();
  });

  it("delivers a 504 'upstream request timeout' to the filter once the timeout passes", async () => {
    const names = ["x-callout-status", "x-callout-body", "x-callout-upstream"];
    await send(await envoy.listenerPort("ingress"), { path: "/timeout", headers: { "x-probe": "callout" } });
    const seen = backend.requests.find((r) => r.path === "/timeout")!;
    const inEnvoy = Object.fromEntries(names.map((n) => [n, seen.headers[n] ?? null]));

    const vm = await Emulator.load(await fixtureModule("probe"), { pluginConfig: { calloutTimeoutMs: 100 } });
    const stream = vm.http();
    expect(stream.sendRequestHeaders({ ":method": "GET", ":path": "/timeout", ":authority": "a", "x-probe": "callout" }, { endOfStream: true })).toBe("pause");
    vm.advance(99);
    expect(stream.request.paused).toBe(true);
    vm.advance(1);
    expect(stream.request.paused).toBe(false);
    const inEmulator = Object.fromEntries(names.map((n) => [n, stream.requestHeaders.get(n)]));

    expect(inEnvoy).toEqual({ "x-callout-status": "504", "x-callout-body": "upstream request timeout", "x-callout-upstream": "<none>" });
    expect(inEmulator).toEqual(inEnvoy);
  });
});

describeE2E("the emulator and Envoy agree with allow_on_headers_stop_iteration", () => {
  let backend: Upstream;
  let envoy: Envoy;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    envoy = await startEnvoy({ bootstrap: await probeBootstrap({ backend: backend.port }, { allowOnHeadersStopIteration: true }) });
  });

  afterAll(async () => {
    await envoy?.stop();
    await backend?.stop();
  });

  it("delivers the body while the headers are held, and the body callback can still change them", async () => {
    await send(await envoy.listenerPort("ingress"), { method: "POST", path: "/held", headers: { "x-probe": "hold-headers" }, body: "payload" });
    const seen = backend.requests.find((r) => r.path === "/held")!;

    const vm = await Emulator.load(await fixtureModule("probe"), { allowOnHeadersStopIteration: true });
    const stream = vm.http();
    expect(stream.sendRequestHeaders({ ":method": "POST", ":path": "/held", ":authority": "a", "x-probe": "hold-headers", "content-length": "7" })).toBe("pause");
    expect(stream.sendRequestBody("payload", { endOfStream: true })).toBe("continue");

    expect(seen.headers["x-body-seen"]).toBe("payload");
    expect(stream.requestHeaders.get("x-body-seen")).toBe(seen.headers["x-body-seen"]);
    expect(stream.requestBody).toBe(seen.body);
  });
});
