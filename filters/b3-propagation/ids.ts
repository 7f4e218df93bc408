// Identifiers from the host's CSPRNG (WASI random_get, BoringSSL in Envoy), written as lower-case hex straight into
// a new string: one allocation per identifier, no intermediate bytes or concatenation.
import { randomU64 } from "@skiff/proxy-wasm";

const HEX: usize = memory.data<u8>([
  0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
]);

/** A random u64 other than 0 (B3 forbids all-zero ids). */
function nonZeroRandom(): u64 {
  let value = randomU64();
  while (value == 0) value = randomU64();
  return value;
}

/** A string of `length` UTF-16 code units, to be filled in by the caller. */
function newString(length: i32): string {
  return changetype<string>(__new(<usize>length << 1, idof<string>()));
}

/** Writes the low `digits` nibbles of `value` as hex digits at code unit `at` of `text`, most significant first. */
function writeHex(text: string, at: i32, value: u64, digits: i32): void {
  const base = changetype<usize>(text) + (<usize>at << 1);
  for (let i = 0; i < digits; i++) {
    const digit = <usize>((value >> <u64>(4 * (digits - 1 - i))) & 0xf);
    store<u16>(base + (<usize>i << 1), load<u8>(HEX + digit));
  }
}

/** Writes `value` as 16 hex digits at code unit `at` of `text`. */
function writeHex64(text: string, at: i32, value: u64): void {
  writeHex(text, at, value, 16);
}

/** A 64-bit span id: 16 hex digits. */
export function newSpanId(): string {
  const text = newString(16);
  writeHex64(text, 0, nonZeroRandom());
  return text;
}

/** A 128-bit trace id: 32 hex digits. */
export function newTraceId(): string {
  const text = newString(32);
  writeHex64(text, 0, nonZeroRandom());
  writeHex64(text, 16, randomU64());
  return text;
}

/** An RFC 4122 version 4 UUID: 122 random bits as 8-4-4-4-12 hex digits, version nibble 4, variant bits 10. */
export function newUuid4(): string {
  // Digit 12 (bits 15-12 of the first half) is the version; the top two bits of the second half are the variant.
  const high = (randomU64() & ~(<u64>0xf << 12)) | (<u64>0x4 << 12);
  const low = (randomU64() & ~(<u64>0x3 << 62)) | (<u64>0x2 << 62);
  const text = newString(36);
  writeHex(text, 0, high >> 32, 8);
  writeHex(text, 9, high >> 16, 4);
  writeHex(text, 14, high, 4);
  writeHex(text, 19, low >> 48, 4);
  writeHex(text, 24, low, 12);
  const base = changetype<usize>(text);
  store<u16>(base + (8 << 1), 0x2d);
  store<u16>(base + (13 << 1), 0x2d);
  store<u16>(base + (18 << 1), 0x2d);
  store<u16>(base + (23 << 1), 0x2d);
  return text;
}

/** The value of a lower-case hex digit, or -1. */
function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Whether `text[start, end)` is lower-case hex of `end - start` digits, not all zeros (a valid B3 id). */
export function isB3Id(text: string, start: i32, end: i32): bool {
  let nonZero = false;
  for (let i = start; i < end; i++) {
    const c = <i32>text.charCodeAt(i);
    if (hexValue(c) < 0) return false;
    if (c != 0x30) nonZero = true;
  }
  return nonZero;
}
