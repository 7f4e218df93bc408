// deadlines: gives every request the time its answer may still be useful, and stops work that is past it (the seed's
// "deadlines" pattern). The remaining budget is read from `grpc-timeout`, the filter's own `x-skiff-timeout-ms` (its
// name is configurable) and `x-envoy-expected-rq-timeout-ms`; the earliest wins, and a request with none gets
// `defaultTimeout` if configured. A request whose budget is spent is answered 504 (gRPC: DEADLINE_EXCEEDED) without
// reaching the upstream; otherwise the route times out when the budget does (`x-envoy-upstream-rq-timeout-ms`) and
// the upstream learns what is left. README.md says why these headers and these semantics.
import {
  ConfigReader, Counter, GrpcStatus, Header, HeadersAction, Histogram, HttpContext, LogLevel, PropertyPath, RootContext, getPropertyString,
  log, logEnabled, nowNanos, registerRootContext,
} from "@skiff/proxy-wasm";
import { NANOS_PER_MS, NOT_A_TIMEOUT, formatGrpcTimeout, parseGrpcTimeout, parseMillis } from "./timeouts";
export * from "@skiff/proxy-wasm/dispatcher";

const GRPC_TIMEOUT = "grpc-timeout";
const EXPECTED_TIMEOUT = "x-envoy-expected-rq-timeout-ms";
const ROUTE_TIMEOUT = "x-envoy-upstream-rq-timeout-ms";
const MARK = "x-skiff-deadline";
/** Envoy's response code details: "response_timeout" when the router's timeout answered (Envoy 1.40;
 * "upstream_response_timeout" in older releases). */
const CODE_DETAILS = new PropertyPath(["response", "code_details"]);
const NO_DEADLINE: i64 = -1;

class DeadlinesRoot extends RootContext {
  /** Budget for requests that carry none, in ns; 0: they pass untouched. */
  defaultTimeoutNs: i64 = 0;
  /** Budgets at least this long leave the route's own timeout alone (the filter only shortens). */
  maxTimeoutMs: i64 = 15_000;
  /** Requests with less than this left are answered at once. */
  minRemainingMs: i64 = 1;
  /** The filter's own budget header, in milliseconds: read, and written for the next hop. */
  timeoutHeader: string = "x-skiff-timeout-ms";

  readonly withDeadline: Counter = new Counter("deadlines.with_deadline");
  readonly defaulted: Counter = new Counter("deadlines.defaulted");
  readonly withoutDeadline: Counter = new Counter("deadlines.without_deadline");
  readonly expired: Counter = new Counter("deadlines.expired");
  readonly timeoutSet: Counter = new Counter("deadlines.timeout_set");
  readonly exceeded: Counter = new Counter("deadlines.exceeded");
  readonly malformed: Counter = new Counter("deadlines.malformed");
  readonly remainingMs: Histogram = new Histogram("deadlines.remaining_ms");

  onConfigure(configurationSize: usize): bool {
    const config = ConfigReader.parse(configurationSize > 0 ? this.pluginConfiguration() : "");
    const defaultTimeoutMs = config.durationMs("defaultTimeout", 0, 1, 86_400_000);
    const maxTimeoutMs = config.durationMs("maxTimeout", 15_000, 1, 86_400_000);
    const minRemainingMs = config.durationMs("minRemaining", 1, 1, 86_400_000);
    const timeoutHeader = config.headerName("timeoutHeader", "x-skiff-timeout-ms");
    config.rejectUnknownFields();
    if (!config.ok) {
      log(LogLevel.Error, "deadlines: invalid configuration: " + config.error);
      return false;
    }
    this.defaultTimeoutNs = defaultTimeoutMs * NANOS_PER_MS;
    this.maxTimeoutMs = maxTimeoutMs;
    this.minRemainingMs = minRemainingMs;
    this.timeoutHeader = timeoutHeader;
    return true;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new Deadline(contextId, this);
  }
}

class Deadline extends HttpContext {
  /** When the answer stops being useful, in wall-clock ns; NO_DEADLINE when the request has none. */
  private deadlineNs: i64 = NO_DEADLINE;

  constructor(contextId: u32, readonly plugin: DeadlinesRoot) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const plugin = this.plugin;
    const headers = this.request.headers;
    const grpcTimeout = headers.get(GRPC_TIMEOUT);
    let budgetNs = this.earliest(NO_DEADLINE, grpcTimeout, true);
    budgetNs = this.earliest(budgetNs, headers.get(plugin.timeoutHeader), false);
    // Envoy's own header reaches a filter only from a client Envoy trusts: its connection manager strips it from any
    // other (ConnectionManagerUtility::cleanInternalHeaders), hence the filter's own header above.
    budgetNs = this.earliest(budgetNs, headers.get(EXPECTED_TIMEOUT), false);
    if (budgetNs == NO_DEADLINE) {
      if (plugin.defaultTimeoutNs == 0) {
        plugin.withoutDeadline.increment();
        return HeadersAction.Continue;
      }
      budgetNs = plugin.defaultTimeoutNs;
      plugin.defaulted.increment();
    }
    plugin.withDeadline.increment();
    // Whole milliseconds: Envoy's timeouts are in ms, and a timeout of 0 would mean none at all.
    const remainingMs = budgetNs / NANOS_PER_MS;
    // A gRPC call, as Envoy tells one (Grpc::Common::isGrpcRequestHeaders): by its content-type.
    const contentType = headers.get("content-type");
    const grpc = contentType !== null && contentType.startsWith("application/grpc");
    if (remainingMs < plugin.minRemainingMs) {
      plugin.expired.increment();
      if (logEnabled(LogLevel.Debug)) log(LogLevel.Debug, "deadlines: rejected a request with " + remainingMs.toString() + "ms left");
      this.sendLocalResponse(504, "deadline exceeded before the request was processed\n", [new Header(MARK, "expired")], "deadline_expired",
        grpc ? <i32>GrpcStatus.DeadlineExceeded : -1);
      return HeadersAction.Pause;
    }
    plugin.remainingMs.record(<u64>remainingMs);
    // The deadline the route's timer also keeps, so that its timeout answer counts as past the deadline.
    this.deadlineNs = <i64>nowNanos() + remainingMs * NANOS_PER_MS;
    // The route times out when the budget does, unless its own timeout (at most maxTimeout) comes first anyway.
    const propagatedMs = min<i64>(remainingMs, plugin.maxTimeoutMs);
    if (remainingMs < plugin.maxTimeoutMs) {
      headers.set(ROUTE_TIMEOUT, remainingMs.toString());
      plugin.timeoutSet.increment();
    }
    // What is left goes upstream: in the filter's own header (which the next Envoy's connection manager keeps), in
    // Envoy's (the router rewrites it with the timeout it applies, unless it suppresses Envoy's headers), and for
    // gRPC in grpc-timeout.
    const left = propagatedMs.toString();
    headers.set(plugin.timeoutHeader, left);
    headers.set(EXPECTED_TIMEOUT, left);
    if (grpc || grpcTimeout !== null) headers.set(GRPC_TIMEOUT, formatGrpcTimeout(propagatedMs));
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    if (this.deadlineNs == NO_DEADLINE || !this.past()) return HeadersAction.Continue;
    this.plugin.exceeded.increment();
    this.response.headers.set(MARK, "exceeded");
    return HeadersAction.Continue;
  }

  /** Whether the answer comes after the deadline: by the clock, or because it is the router's timeout (whose timer
   * starts from the event loop's cached time, so it may fire a little before the wall clock this filter reads
   * reaches the deadline). */
  private past(): bool {
    if (<i64>nowNanos() >= this.deadlineNs) return true;
    const status = this.response.headers.get(":status");
    if (status === null || status != "504") return false;
    const details = getPropertyString(CODE_DETAILS);
    return details !== null && (details == "response_timeout" || details == "upstream_response_timeout");
  }

  /** The earlier of `budgetNs` and the budget in `value` (NO_DEADLINE and a missing value count as none); a value that
   * does not parse is counted and ignored. */
  private earliest(budgetNs: i64, value: string | null, grpcFormat: bool): i64 {
    if (value === null) return budgetNs;
    const parsed = grpcFormat ? parseGrpcTimeout(value) : parseMillis(value);
    if (parsed == NOT_A_TIMEOUT) {
      this.plugin.malformed.increment();
      return budgetNs;
    }
    return budgetNs == NO_DEADLINE ? parsed : min<i64>(budgetNs, parsed);
  }
}

registerRootContext((contextId: u32): RootContext => new DeadlinesRoot(contextId));
