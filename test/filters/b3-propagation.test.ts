// b3-propagation in real Envoys (two workers each): client -> gateway Envoy -> service A (a Node server that copies
// the trace headers onto its outbound call, as applications must) -> sidecar Envoy -> service B. One trace id end to
// end, a new span per hop whose parent is the previous hop's span; incoming traces kept when valid, replaced and
// counted when malformed; sampling at the configured rate.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { type ReceivedRequest, type Upstream, startUpstream } from "../harness/upstream.js";

/** The headers Istio asks applications to propagate (see the seed notes). */
const TRACE_HEADERS = ["x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3"];
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACE_ID_128 = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;

/** A proxy with the filter in front of one cluster; Envoy's own x-request-id generation is off, so the filter's
 * shows (with it on, Envoy sets the id first and the filter keeps it). */
function proxyWithFilter(upstream: Upstream, configuration: unknown): Record<string, unknown> {
  const bootstrap = staticBootstrap({
    clusters: { app: { ports: [upstream.port] } },
    httpFilters: [wasmFilter("b3-propagation", { configuration })],
  }) as { static_resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: Record<string, unknown> }> }> }> } };
  bootstrap.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.generate_request_id = false;
  return bootstrap;
}

interface Hops {
  /** What service A received from the gateway. */
  a: Record<string, string>;
  /** What service B received from the sidecar. */
  b: Record<string, string>;
}

describeE2E("b3-propagation across two Envoys and an application", () => {
  let serviceB: Upstream;
  let sidecar: Envoy;
  let serviceA: Upstream;
  let gateway: Envoy;
  let port: number;

  beforeAll(async () => {
    serviceB = await startUpstream({ name: "service-b" });
    sidecar = await startEnvoy({ bootstrap: proxyWithFilter(serviceB, { samplingPercent: 100 }), concurrency: 2 });
    const sidecarPort = await sidecar.listenerPort("ingress");
    serviceA = await startUpstream({
      name: "service-a",
      script: async (request: ReceivedRequest) => {
        const propagated: Record<string, string> = {};
        for (const name of TRACE_HEADERS) if (request.headers[name] !== undefined) propagated[name] = request.headers[name];
        const downstream = await send(sidecarPort, { path: `/b${request.path}`, headers: propagated });
        const hops: Hops = { a: request.headers, b: (JSON.parse(downstream.body) as ReceivedRequest).headers };
        return { body: JSON.stringify(hops) };
      },
    });
    gateway = await startEnvoy({ bootstrap: proxyWithFilter(serviceA, { samplingPercent: 100 }), concurrency: 2 });
    port = await gateway.listenerPort("ingress");
  });

  afterAll(async () => {
    await gateway?.stop();
    await serviceA?.stop();
    await sidecar?.stop();
    await serviceB?.stop();
  });

  const hopsOf = (body: string) => JSON.parse(body) as Hops;

  it("starts one trace per request at the gateway and carries it, hop by hop, to service B", async () => {
    const tally = await sendMany(port, { count: 60, concurrency: 6, request: (i) => ({ path: `/new/${i}` }) });
    expect(tally.byStatus).toEqual({ 200: 60 });
    const traceIds = new Set<string>();
    for (const response of tally.responses) {
      const { a, b } = hopsOf(response.body);
      // Gateway: a new trace, a root span.
      expect(a["x-request-id"]).toMatch(UUID_V4);
      expect(a["x-b3-traceid"]).toMatch(TRACE_ID_128);
      expect(a["x-b3-spanid"]).toMatch(SPAN_ID);
      expect(a["x-b3-parentspanid"]).toBeUndefined();
      expect(a["x-b3-sampled"]).toBe("1");
      // Sidecar: the same trace and request id, a child of A's span.
      expect(b["x-request-id"]).toBe(a["x-request-id"]);
      expect(b["x-b3-traceid"]).toBe(a["x-b3-traceid"]);
      expect(b["x-b3-parentspanid"]).toBe(a["x-b3-spanid"]);
      expect(b["x-b3-spanid"]).toMatch(SPAN_ID);
      expect(b["x-b3-spanid"]).not.toBe(a["x-b3-spanid"]);
      expect(b["x-b3-sampled"]).toBe("1");
      traceIds.add(a["x-b3-traceid"]);
    }
    expect(traceIds.size).toBe(60);
    expect(await gateway.stat("wasmcustom.b3_propagation.trace_started")).toBe(60);
    expect(await gateway.stat("wasmcustom.b3_propagation.request_id_generated")).toBe(60);
    expect(await sidecar.stat("wasmcustom.b3_propagation.trace_continued")).toBe(60);
    expect(await sidecar.stat("wasmcustom.b3_propagation.request_id_generated")).toBe(0);
  });

  it("keeps a valid incoming trace, its request id and its sampling decision", async () => {
    const client = { "x-request-id": "client-chosen-id", "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "0" };
    const { a, b } = hopsOf((await send(port, { path: "/valid", headers: client })).body);
    expect(a["x-request-id"]).toBe("client-chosen-id");
    expect(a["x-b3-traceid"]).toBe("463ac35c9f6413ad");
    expect(a["x-b3-parentspanid"]).toBe("a2fb4a1d1a96d312");
    expect(a["x-b3-spanid"]).toMatch(SPAN_ID);
    expect(a["x-b3-sampled"]).toBe("0");
    expect(b["x-b3-traceid"]).toBe("463ac35c9f6413ad");
    expect(b["x-b3-parentspanid"]).toBe(a["x-b3-spanid"]);
    expect(b["x-b3-sampled"]).toBe("0");
    expect(b["x-request-id"]).toBe("client-chosen-id");
  });

  it("reads the single b3 header and keeps both encodings consistent at every hop", async () => {
    const trace = "80f198ee56343ba864fe8b2a57d3eff7";
    const { a, b } = hopsOf((await send(port, { path: "/single", headers: { b3: `${trace}-e457b5a2e4d86bd1-d` } })).body);
    expect(a["x-b3-traceid"]).toBe(trace);
    expect(a["x-b3-parentspanid"]).toBe("e457b5a2e4d86bd1");
    expect(a["x-b3-flags"]).toBe("1");
    expect(a["x-b3-sampled"]).toBeUndefined();
    expect(a.b3).toBe(`${trace}-${a["x-b3-spanid"]}-d-e457b5a2e4d86bd1`);
    expect(b.b3).toBe(`${trace}-${b["x-b3-spanid"]}-d-${a["x-b3-spanid"]}`);
    expect(b["x-b3-parentspanid"]).toBe(a["x-b3-spanid"]);
  });

  it("replaces malformed incoming traces with new ones and counts them", async () => {
    const malformed: Array<Record<string, string>> = [
      { "x-b3-traceid": "0000000000000000", "x-b3-spanid": "a2fb4a1d1a96d312" }, // all zeros
      { "x-b3-traceid": "463ac35c9f6413ad00", "x-b3-spanid": "a2fb4a1d1a96d312" }, // bad length
      { "x-b3-traceid": "463ac35c9f6413zz", "x-b3-spanid": "a2fb4a1d1a96d312" }, // not hex
      { "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "A2FB4A1D1A96D312" }, // upper case
      { "x-b3-traceid": "463ac35c9f6413ad" }, // span id missing
      { "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-parentspanid": "123" },
      { b3: "463ac35c9f6413ad-a2fb4a1d1a96d312-x" }, // bad sampling state
    ];
    const before = (await gateway.stat("wasmcustom.b3_propagation.trace_malformed")) ?? 0;
    for (const headers of malformed) {
      const { a, b } = hopsOf((await send(port, { path: "/malformed", headers })).body);
      expect(a["x-b3-traceid"]).toMatch(TRACE_ID_128);
      expect(a["x-b3-parentspanid"]).toBeUndefined();
      expect(b["x-b3-traceid"]).toBe(a["x-b3-traceid"]);
      expect(b["x-b3-parentspanid"]).toBe(a["x-b3-spanid"]);
    }
    expect(await gateway.stat("wasmcustom.b3_propagation.trace_malformed")).toBe(before + malformed.length);
    // The sidecar got well-formed traces from the gateway: nothing malformed there.
    expect(await sidecar.stat("wasmcustom.b3_propagation.trace_malformed")).toBe(0);
  });
});

describeE2E("b3-propagation sampling and configuration", () => {
  let app: Upstream;
  const envoys: Envoy[] = [];

  beforeAll(async () => {
    app = await startUpstream({ name: "app" });
  });

  afterAll(async () => {
    await Promise.all(envoys.map((envoy) => envoy.stop()));
    await app?.stop();
  });

  it("samples new traces at the configured rate and honours a requested debug trace", async () => {
    const envoy = await startEnvoy({ bootstrap: proxyWithFilter(app, { samplingPercent: 20 }), concurrency: 2 });
    envoys.push(envoy);
    const proxyPort = await envoy.listenerPort("ingress");
    const tally = await sendMany(proxyPort, { count: 1000, concurrency: 8, request: (i) => ({ path: `/rate/${i}` }) });
    const decisions = tally.responses.map((r) => (JSON.parse(r.body) as ReceivedRequest).headers["x-b3-sampled"]);
    const sampled = decisions.filter((d) => d === "1").length;
    expect(decisions.filter((d) => d !== "1" && d !== "0")).toEqual([]);
    // 20% of 1000: the binomial standard deviation is 12.6, so 150..250 is about 4 deviations either way.
    expect(sampled).toBeGreaterThanOrEqual(150);
    expect(sampled).toBeLessThanOrEqual(250);
    expect(await envoy.stat("wasmcustom.b3_propagation.sampled")).toBe(sampled);
    expect(await envoy.stat("wasmcustom.b3_propagation.not_sampled")).toBe(1000 - sampled);

    const debug = JSON.parse((await send(proxyPort, { path: "/debug", headers: { "x-b3-flags": "1" } })).body) as ReceivedRequest;
    expect(debug.headers["x-b3-flags"]).toBe("1");
    expect(debug.headers["x-b3-sampled"]).toBeUndefined();
    expect(debug.headers["x-b3-traceid"]).toMatch(TRACE_ID_128);
  });

  it("marks every new trace as debug when configured so", async () => {
    const envoy = await startEnvoy({ bootstrap: proxyWithFilter(app, { debug: true }), concurrency: 2 });
    envoys.push(envoy);
    const seen = JSON.parse((await send(await envoy.listenerPort("ingress"), { path: "/forced-debug" })).body) as ReceivedRequest;
    expect(seen.headers["x-b3-flags"]).toBe("1");
    expect(seen.headers["x-b3-sampled"]).toBeUndefined();
  });

  describe("a configuration with a bad field", () => {
    it("is rejected with the field named in Envoy's log", async () => {
      const failure = await startEnvoy({ bootstrap: proxyWithFilter(app, { samplingPercent: 120 }), concurrency: 2 }).then(
        (envoy) => {
          envoys.push(envoy);
          return "Envoy started";
        },
        (error: Error) => error.message,
      );
      expect(failure).toContain("b3-propagation: configuration rejected: samplingPercent: expected a number from 0 to 100");
    });
  });
});
