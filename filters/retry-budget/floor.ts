// The budget's floor, shared by every worker: at least `minRetryConcurrency` retries per window however few
// requests there are. It lives in proxy-wasm shared data (one process-wide value per vm_id) as one slot per bucket
// of the window: (absolute bucket number: i64, retries charged: i32), 12 bytes each, updated with CAS.
import { WasmResult, getSharedData, setSharedData } from "@skiff/proxy-wasm";

const SLOT_BYTES: i32 = 12;
/** CAS attempts before giving up on one update (another worker keeps winning); the grant is then refused. */
const CAS_ATTEMPTS: i32 = 8;

/** Floor retries charged in the window ending at bucket `bucket`. */
export function floorUsed(data: ArrayBuffer | null, bucket: i64, buckets: i32): i64 {
  if (data === null || data.byteLength != buckets * SLOT_BYTES) return 0;
  const base = changetype<usize>(data);
  let used: i64 = 0;
  for (let i = 0; i < buckets; i++) {
    const at = base + <usize>(i * SLOT_BYTES);
    const slotBucket = load<i64>(at);
    if (slotBucket > bucket - <i64>buckets && slotBucket <= bucket) used += <i64>load<i32>(at, 8);
  }
  return used;
}

/** A copy of `data` with `amount` (negative to refund) added to bucket `bucket`'s slot; a slot still holding an
 * older bucket is reused. A refund to a bucket that has left the window changes nothing. */
export function floorCharged(data: ArrayBuffer | null, bucket: i64, buckets: i32, amount: i32): ArrayBuffer {
  const out = new ArrayBuffer(buckets * SLOT_BYTES);
  if (data !== null && data.byteLength == out.byteLength) memory.copy(changetype<usize>(out), changetype<usize>(data), <usize>out.byteLength);
  const at = changetype<usize>(out) + <usize>(<i32>(bucket % <i64>buckets) * SLOT_BYTES);
  if (load<i64>(at) != bucket) {
    if (amount < 0) return out;
    store<i64>(at, bucket);
    store<i32>(at, 0, 8);
  }
  store<i32>(at, max(0, load<i32>(at, 8) + amount), 8);
  return out;
}

export class SharedFloor {
  constructor(readonly key: string, readonly buckets: i32, readonly minRetries: i64) {}

  /** Creates the shared value if no worker has yet (configure time, before traffic). */
  initialise(): void {
    if (getSharedData(this.key).value === null) setSharedData(this.key, floorCharged(null, 0, this.buckets, 0));
  }

  /** Takes up to `wanted` retries from the floor in the window ending at `bucket`; returns how many it got (0 when
   * the floor is used up). */
  take(bucket: i64, wanted: i32): i32 {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = getSharedData(this.key);
      const left = this.minRetries - floorUsed(current.value, bucket, this.buckets);
      if (left <= 0) return 0;
      const grant = <i32>min(left, <i64>wanted);
      if (setSharedData(this.key, floorCharged(current.value, bucket, this.buckets, grant), current.cas) == WasmResult.Ok) return grant;
    }
    return 0;
  }

  /** Gives back retries a request took from the floor (in bucket `bucket`) and did not use. */
  refund(bucket: i64, unused: i32): void {
    if (unused <= 0) return;
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = getSharedData(this.key);
      if (setSharedData(this.key, floorCharged(current.value, bucket, this.buckets, -unused), current.cas) == WasmResult.Ok) return;
    }
  }
}
