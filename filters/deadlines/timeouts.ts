// The deadline encodings the filter reads and writes, in nanoseconds. Each parser returns NOT_A_TIMEOUT for a value
// that does not follow its format, so that a malformed header is told apart from an expired one (0).

export const NOT_A_TIMEOUT: i64 = -1;
export const NANOS_PER_MS: i64 = 1_000_000;

/** gRPC's `grpc-timeout` (PROTOCOL-HTTP2.md): at most 8 ASCII digits and a unit, H(our) M(inute) S(econd)
 * m(illisecond) u (microsecond) n(anosecond). "0m" is a deadline already reached. */
export function parseGrpcTimeout(value: string): i64 {
  const length = value.length;
  if (length < 2 || length > 9) return NOT_A_TIMEOUT;
  const amount = digits(value, 0, length - 1);
  if (amount < 0) return NOT_A_TIMEOUT;
  const unit = value.charCodeAt(length - 1);
  if (unit == 0x48 /* H */) return amount * 3_600_000_000_000;
  if (unit == 0x4d /* M */) return amount * 60_000_000_000;
  if (unit == 0x53 /* S */) return amount * 1_000_000_000;
  if (unit == 0x6d /* m */) return amount * NANOS_PER_MS;
  if (unit == 0x75 /* u */) return amount * 1_000;
  if (unit == 0x6e /* n */) return amount;
  return NOT_A_TIMEOUT;
}

/** `grpc-timeout` for a budget in milliseconds: the finest unit whose value fits gRPC's 8 digits. */
export function formatGrpcTimeout(ms: i64): string {
  if (ms <= 99_999_999) return ms.toString() + "m";
  const seconds = ms / 1000;
  if (seconds <= 99_999_999) return seconds.toString() + "S";
  return min<i64>(seconds / 60, 99_999_999).toString() + "M";
}

/** Milliseconds as Envoy writes them in `x-envoy-expected-rq-timeout-ms`: decimal digits only. */
export function parseMillis(value: string): i64 {
  if (value.length == 0 || value.length > 12) return NOT_A_TIMEOUT;
  const amount = digits(value, 0, value.length);
  return amount < 0 ? NOT_A_TIMEOUT : amount * NANOS_PER_MS;
}

/** The non-negative decimal number in value[from, to), or -1 when it holds anything but digits. */
function digits(value: string, from: i32, to: i32): i64 {
  if (to <= from) return -1;
  let amount: i64 = 0;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    amount = amount * 10 + <i64>(c - 0x30);
  }
  return amount;
}
