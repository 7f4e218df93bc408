// Sticky assignment: a user's key (a header value or a cookie) hashes to one of 10,000 buckets, and each percentage
// cohort owns a fixed range of buckets. The hash is a pure function of the key, so every worker thread and every
// Envoy running this module puts a user in the same bucket, with no shared state.

/** Buckets per 100%: cohorts are sized in basis points (0.01%). */
export const BUCKETS: u64 = 10_000;

/** FNV-1a (64-bit) over the UTF-16 code units of `text[start, end)`, finished with MurmurHash3's fmix64 so that keys
 * differing only in their last characters (user-1, user-2, ...) still spread evenly over the buckets. */
export function stickyBucket(text: string, start: i32, end: i32): u32 {
  let hash: u64 = 0xcbf29ce484222325;
  for (let i = start; i < end; i++) {
    hash ^= <u64>text.charCodeAt(i);
    hash *= 0x100000001b3;
  }
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccd;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53;
  hash ^= hash >> 33;
  return <u32>(hash % BUCKETS);
}

/** Where findCookie found the value: `[cookieStart, cookieEnd)` of the header. */
export let cookieStart: i32 = 0;
export let cookieEnd: i32 = 0;

/** Finds the value of cookie `name` in a `cookie` header ("a=1; user=abc") without allocating: sets `cookieStart`
 * and `cookieEnd` and returns true. Surrounding double quotes are not part of the value. */
export function findCookie(header: string, name: string): bool {
  const length = header.length;
  let at = 0;
  while (at < length) {
    while (at < length && (header.charCodeAt(at) == 0x20 || header.charCodeAt(at) == 0x09)) at++;
    let end = header.indexOf(";", at);
    if (end < 0) end = length;
    const valueAt = at + name.length + 1;
    if (valueAt <= end && header.charCodeAt(valueAt - 1) == 0x3d && header.startsWith(name, at)) {
      let valueEnd = end;
      while (valueEnd > valueAt && header.charCodeAt(valueEnd - 1) == 0x20) valueEnd--;
      let valueStart = valueAt;
      if (valueEnd - valueStart >= 2 && header.charCodeAt(valueStart) == 0x22 && header.charCodeAt(valueEnd - 1) == 0x22) {
        valueStart++;
        valueEnd--;
      }
      cookieStart = valueStart;
      cookieEnd = valueEnd;
      return true;
    }
    at = end + 1;
  }
  return false;
}
