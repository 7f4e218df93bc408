// One worker's share of the retry budget: a sliding window of requests started and retries used, in buckets, plus
// the retries granted to requests still in flight. Pure arithmetic, no host calls: the filter moves the window on
// ticks and asks it for a grant per request.

export class BudgetWindow {
  private readonly requests: StaticArray<i64>;
  private readonly retries: StaticArray<i64>;
  /** Absolute number (time / bucket length) of the bucket new requests are counted in. */
  private bucket: i64 = 0;
  requestsInWindow: i64 = 0;
  retriesInWindow: i64 = 0;
  /** Retries granted to requests in flight that they may still use. */
  reserved: i64 = 0;

  constructor(readonly buckets: i32, readonly budgetPercent: f64, readonly maxRetries: i32) {
    this.requests = new StaticArray<i64>(buckets);
    this.retries = new StaticArray<i64>(buckets);
  }

  get currentBucket(): i64 {
    return this.bucket;
  }

  /** Moves the window so that `bucket` is the newest one, forgetting the buckets that fell out. */
  advance(bucket: i64): void {
    if (bucket <= this.bucket) return;
    const steps = min(bucket - this.bucket, <i64>this.buckets);
    for (let i: i64 = 1; i <= steps; i++) {
      const slot = <i32>((this.bucket + i) % <i64>this.buckets);
      this.requestsInWindow -= unchecked(this.requests[slot]);
      this.retriesInWindow -= unchecked(this.retries[slot]);
      unchecked((this.requests[slot] = 0));
      unchecked((this.retries[slot] = 0));
    }
    this.bucket = bucket;
  }

  /** Counts one request and grants it retries from what the budget has left: budgetPercent of the requests in the
   * window, minus the retries used in it and those reserved by requests in flight. The grant is reserved until
   * settle(). */
  admit(): i32 {
    const slot = this.slot();
    unchecked((this.requests[slot] += 1));
    this.requestsInWindow += 1;
    const allowed = <i64>Math.floor((this.budgetPercent * <f64>this.requestsInWindow) / 100.0) - this.retriesInWindow - this.reserved;
    if (allowed <= 0) return 0;
    const grant = <i32>min(allowed, <i64>this.maxRetries);
    this.reserved += grant;
    return grant;
  }

  /** A request is over: it no longer holds `granted` retries, and `used` of them count against the window. */
  settle(granted: i32, used: i32): void {
    this.reserved -= granted;
    if (used <= 0) return;
    const slot = this.slot();
    unchecked((this.retries[slot] += used));
    this.retriesInWindow += used;
  }

  private slot(): i32 {
    return <i32>(this.bucket % <i64>this.buckets);
  }
}
