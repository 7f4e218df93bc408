// retry-budget: retries may use at most `budgetPercent` of the requests of a sliding window, never fewer than
// `minRetryConcurrency` per window. The router does the retrying; this filter decides how many retries each request
// may have by setting `x-envoy-max-retries` (which takes precedence over the route's num_retries), and settles the
// grant on the response from the attempts the router made (Envoy's `upstream.request_attempt_count` attribute).
// See README.md for the design and its trade-offs.
import {
  ConfigReader, Counter, HeadersAction, HttpContext, LogLevel, PropertyPath, RootContext, getPropertyString, getPropertyU64,
  log, nowNanos, registerRootContext,
} from "@skiff/proxy-wasm";
import { SharedFloor } from "./floor";
import { BudgetWindow } from "./window";
export * from "@skiff/proxy-wasm/dispatcher";

/** Buckets per window: the window slides in steps of a tenth of its length. */
const BUCKETS: i32 = 10;
const MAX_RETRIES_HEADER = "x-envoy-max-retries";
const MARK_HEADER = "x-skiff-retry-budget";
const MARK_VALUE = "exhausted";
const PLUGIN_NAME = new PropertyPath(["plugin_name"]);
/** The router's attempts for this stream (uint64; 0 when none was made), set as each attempt starts. */
const ATTEMPT_COUNT = new PropertyPath(["upstream", "request_attempt_count"]);
/** getPropertyU64's answer when the host lacks ATTEMPT_COUNT: no real attempt count comes near it. */
const NO_ATTEMPT_COUNT: u64 = u64.MAX_VALUE;

class RetryBudgetRoot extends RootContext {
  maxRetries: i32 = 3;
  bucketMs: i64 = 1000;
  budget: BudgetWindow = new BudgetWindow(BUCKETS, 20, 3);
  floor: SharedFloor = new SharedFloor("", BUCKETS, 3);
  /** "0".."maxRetries", made once so the request path formats nothing. */
  grantText: string[] = [];
  /** The floor was found used up in this bucket: skip the shared-data round trip until the next bucket. */
  floorFullInBucket: i64 = -1;
  warnedNoAttemptCount: bool = false;

  readonly retries: Counter = new Counter("retry_budget.retries");
  readonly exhausted: Counter = new Counter("retry_budget.exhausted");
  readonly floorGrants: Counter = new Counter("retry_budget.floor_grants");
  readonly missingAttemptCount: Counter = new Counter("retry_budget.missing_attempt_count");

  onConfigure(configurationSize: usize): bool {
    const config = ConfigReader.parse(configurationSize > 0 ? this.pluginConfiguration() : "");
    const budgetPercent = config.number("budgetPercent", 20, 0, 100);
    // At most a day: a tenth of it is the tick period, which must fit the host's u32 milliseconds.
    const windowMs = config.durationMs("window", 10_000, 100, 86_400_000);
    const minRetryConcurrency = config.integer("minRetryConcurrency", 3, 0, 1_000_000);
    const maxRetries = config.integer("maxRetries", 3, 0, 100);
    config.rejectUnknownFields();
    if (!config.ok) {
      log(LogLevel.Error, "retry-budget: invalid configuration: " + config.error);
      return false;
    }
    this.maxRetries = <i32>maxRetries;
    this.bucketMs = max<i64>(1, windowMs / BUCKETS);
    this.budget = new BudgetWindow(BUCKETS, budgetPercent, <i32>maxRetries);
    const name = getPropertyString(PLUGIN_NAME);
    this.floor = new SharedFloor("skiff.retry_budget." + (name === null ? "" : name) + ".floor", BUCKETS, minRetryConcurrency);
    this.floor.initialise();
    this.grantText = [];
    for (let i: i32 = 0; i <= this.maxRetries; i++) this.grantText.push(i.toString());
    this.floorFullInBucket = -1;
    this.budget.advance(this.nowBucket());
    this.setTickPeriod(<u32>this.bucketMs);
    return true;
  }

  onTick(): void {
    this.budget.advance(this.nowBucket());
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new RetryBudgetStream(contextId, this);
  }

  private nowBucket(): i64 {
    return <i64>(nowNanos() / 1_000_000) / this.bucketMs;
  }
}

class RetryBudgetStream extends HttpContext {
  private granted: i32 = 0;
  private fromFloor: bool = false;
  private grantBucket: i64 = 0;
  private open: bool = false;

  constructor(contextId: u32, readonly plugin: RetryBudgetRoot) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    const budget = root.budget;
    let grant = budget.admit();
    this.grantBucket = budget.currentBucket;
    if (grant == 0 && root.maxRetries > 0 && root.floor.minRetries > 0 && root.floorFullInBucket != this.grantBucket) {
      grant = root.floor.take(this.grantBucket, root.maxRetries);
      if (grant > 0) {
        this.fromFloor = true;
        root.floorGrants.increment();
      } else {
        root.floorFullInBucket = this.grantBucket;
      }
    }
    this.granted = grant;
    this.open = true;
    // Always set: it also replaces any value the client sent.
    this.request.headers.set(MAX_RETRIES_HEADER, unchecked(root.grantText[grant]));
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    if (!this.open) return HeadersAction.Continue;
    const root = this.plugin;
    const made = getPropertyU64(ATTEMPT_COUNT, NO_ATTEMPT_COUNT);
    let used = this.granted;
    if (made == NO_ATTEMPT_COUNT) {
      root.missingAttemptCount.increment();
      if (!root.warnedNoAttemptCount) {
        root.warnedNoAttemptCount = true;
        log(LogLevel.Warn, "retry-budget: the host has no upstream.request_attempt_count property (Envoy 1.33 or newer has it). Counting every granted retry as used.");
      }
    } else {
      used = made > 1 ? <i32>min<u64>(made - 1, <u64>this.granted) : 0;
    }
    this.settle(used);
    root.retries.increment(used);
    // Failed fast: the budget held back retries, the request used all it had, and the answer is still an error.
    if (this.granted < root.maxRetries && used == this.granted) {
      const status = this.response.headers.get(":status");
      if (status !== null && status.startsWith("5")) {
        this.response.headers.set(MARK_HEADER, MARK_VALUE);
        root.exhausted.increment();
      }
    }
    return HeadersAction.Continue;
  }

  onDelete(): void {
    // A stream that ended without response headers (client gone, stream reset): charge its whole grant.
    if (this.open) this.settle(this.granted);
  }

  private settle(used: i32): void {
    this.open = false;
    const root = this.plugin;
    if (this.fromFloor) {
      if (used < this.granted) {
        root.floor.refund(this.grantBucket, this.granted - used);
        root.floorFullInBucket = -1;
      }
    } else {
      root.budget.settle(this.granted, used);
    }
  }
}

registerRootContext((contextId: u32): RootContext => new RetryBudgetRoot(contextId));
