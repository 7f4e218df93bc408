// b3-propagation: gives every request a trace context and makes each hop a child span. A request without one gets
// `x-request-id` (UUID v4) and a new B3 trace (128-bit trace id, sampled at the configured rate); a request with a
// valid one keeps its trace id and sampling decision, and goes on with a new span id whose parent is the incoming
// span; a malformed one is replaced by a new trace and counted. See README.md.
import { ConfigReader, Counter, HeadersAction, HttpContext, LogLevel, RootContext, log, logEnabled, randomU64, registerRootContext } from "@skiff/proxy-wasm";
import { newSpanId, newTraceId, newUuid4 } from "./ids";
import { Incoming, IncomingTrace, REQUEST_ID, TRACE_HEADERS } from "./incoming";
export * from "@skiff/proxy-wasm/dispatcher";

/** Sampling resolution: the rate is kept in parts per million. */
const PER_MILLION: u64 = 1_000_000;

class B3Root extends RootContext {
  samplingPerMillion: u64 = PER_MILLION;
  debug: bool = false;
  generateRequestId: bool = true;

  readonly traceStarted: Counter = new Counter("b3_propagation.trace_started");
  readonly traceContinued: Counter = new Counter("b3_propagation.trace_continued");
  readonly traceMalformed: Counter = new Counter("b3_propagation.trace_malformed");
  readonly sampled: Counter = new Counter("b3_propagation.sampled");
  readonly notSampled: Counter = new Counter("b3_propagation.not_sampled");
  readonly requestIdGenerated: Counter = new Counter("b3_propagation.request_id_generated");

  onConfigure(configurationSize: usize): bool {
    const reader = ConfigReader.parse(configurationSize > 0 ? this.pluginConfiguration() : "");
    const percent = reader.number("samplingPercent", 100, 0, 100);
    const debug = reader.bool("debug", false);
    const generateRequestId = reader.bool("generateRequestId", true);
    reader.rejectUnknownFields();
    if (!reader.ok) {
      log(LogLevel.Error, "b3-propagation: configuration rejected: " + reader.error);
      return false;
    }
    this.samplingPerMillion = <u64>Math.round(percent * <f64>PER_MILLION / 100);
    this.debug = debug;
    this.generateRequestId = generateRequestId;
    return true;
  }

  /** A sampling decision at the configured rate, counted. */
  decideSampled(): bool {
    if (randomU64() % PER_MILLION < this.samplingPerMillion) {
      this.sampled.increment();
      return true;
    }
    this.notSampled.increment();
    return false;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new B3Propagation(contextId, this);
  }
}

const incoming = new IncomingTrace();

class B3Propagation extends HttpContext {
  constructor(contextId: u32, readonly plugin: B3Root) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    const headers = this.request.headers;
    const values = headers.getEach(TRACE_HEADERS);

    if (root.generateRequestId) {
      const requestId = unchecked(values[REQUEST_ID]);
      if (requestId === null || requestId.length == 0) {
        headers.set("x-request-id", newUuid4());
        root.requestIdGenerated.increment();
      }
    }

    const trace = incoming.read(values);
    let traceId: string;
    let parentSpanId = "";
    let sampled: bool;
    let debug: bool;
    if (trace.kind == Incoming.Valid) {
      traceId = trace.traceId;
      parentSpanId = trace.spanId;
      debug = trace.debug;
      sampled = trace.sampled >= 0 ? trace.sampled == 1 : root.decideSampled();
      root.traceContinued.increment();
    } else {
      if (trace.kind == Incoming.Malformed) {
        root.traceMalformed.increment();
        if (logEnabled(LogLevel.Debug)) log(LogLevel.Debug, "b3-propagation: replaced a malformed trace context: " + trace.problem);
      }
      traceId = newTraceId();
      debug = trace.kind == Incoming.DecisionOnly ? trace.debug : root.debug;
      sampled = trace.sampled >= 0 ? trace.sampled == 1 : root.decideSampled();
      root.traceStarted.increment();
    }
    const spanId = newSpanId();

    // Valid x-b3-traceid already says this; every other case writes it.
    if (trace.kind != Incoming.Valid || trace.hadSingle) headers.set("x-b3-traceid", traceId);
    headers.set("x-b3-spanid", spanId);
    if (parentSpanId.length > 0) headers.set("x-b3-parentspanid", parentSpanId);
    else if (trace.hadParent) headers.remove("x-b3-parentspanid");
    // Debug implies sampled, and B3 says not to send both.
    if (debug) {
      headers.set("x-b3-flags", "1");
      if (trace.hadSampled) headers.remove("x-b3-sampled");
    } else {
      headers.set("x-b3-sampled", sampled ? "1" : "0");
      if (trace.hadFlags) headers.remove("x-b3-flags");
    }
    if (trace.hadSingle) {
      const state = debug ? "d" : sampled ? "1" : "0";
      headers.set("b3", traceId + "-" + spanId + "-" + state + (parentSpanId.length > 0 ? "-" + parentSpanId : ""));
    }
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new B3Root(contextId));
