// The proxy-wasm ABI 0.2.1 seen from the host: its enums, the header-map wire format, and how Envoy encodes property
// values. Shared by the emulator's host functions and by tests that want to speak the ABI directly.

export { BufferType, LogLevel, MapType, MetricType, PeerType, StreamType, WasmResult } from "../assembly/types.js";

export type LogLevelName = "trace" | "debug" | "info" | "warn" | "error" | "critical";
export const LOG_LEVEL_NAMES: readonly LogLevelName[] = ["trace", "debug", "info", "warn", "error", "critical"];

/** A header name and value, in order. */
export type HeaderPair = [name: string, value: string];
/** How a test passes headers: an object (one value per name) or ordered pairs (repeats allowed). */
export type HeadersInit = Record<string, string> | readonly (readonly [string, string])[];

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encodeText(text: string): Uint8Array {
  return utf8.encode(text);
}

export function decodeText(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

export function toPairs(init: HeadersInit | undefined): HeaderPair[] {
  if (init === undefined) return [];
  const entries = Array.isArray(init) ? (init as readonly (readonly [string, string])[]) : Object.entries(init as Record<string, string>);
  return entries.map(([name, value]) => [name, value]);
}

/** Serialises pairs the way the ABI specifies: u32 count, (u32 name length, u32 value length) per pair, then each
 * name and value followed by a NUL; little-endian. */
export function serializePairs(pairs: readonly HeaderPair[]): Uint8Array {
  const encoded = pairs.map(([name, value]) => [utf8.encode(name), utf8.encode(value)] as const);
  let size = 4 + encoded.length * 8;
  for (const [name, value] of encoded) size += name.length + value.length + 2;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, encoded.length, true);
  let strings = 4 + encoded.length * 8;
  encoded.forEach(([name, value], i) => {
    view.setUint32(4 + i * 8, name.length, true);
    view.setUint32(8 + i * 8, value.length, true);
    out.set(name, strings);
    strings += name.length + 1;
    out.set(value, strings);
    strings += value.length + 1;
  });
  return out;
}

/** Parses the ABI's serialised pairs; throws on a malformed map (Envoy answers such a call with BadArgument). */
export function deserializePairs(bytes: Uint8Array): HeaderPair[] {
  // The spec allows an empty map as no bytes or as a single NUL.
  if (bytes.length === 0 || (bytes.length === 1 && bytes[0] === 0)) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) throw new Error("header map shorter than its count");
  const count = view.getUint32(0, true);
  let strings = 4 + count * 8;
  if (strings > bytes.length) throw new Error("header map shorter than its size table");
  const pairs: HeaderPair[] = [];
  for (let i = 0; i < count; i++) {
    const nameLength = view.getUint32(4 + i * 8, true);
    const valueLength = view.getUint32(8 + i * 8, true);
    if (strings + nameLength + valueLength + 2 > bytes.length) throw new Error("header map string out of bounds");
    const name = utf8Decoder.decode(bytes.subarray(strings, strings + nameLength));
    strings += nameLength + 1;
    const value = utf8Decoder.decode(bytes.subarray(strings, strings + valueLength));
    strings += valueLength + 1;
    pairs.push([name, value]);
  }
  return pairs;
}

/** A property value as a test gives it. */
export type PropertyValue = string | number | bigint | boolean | Uint8Array;

/** Encodes a property value as Envoy does: strings as raw UTF-8, integers as 8 little-endian bytes (int64), booleans
 * as one byte, bytes as they are. A non-integer number is a double (8 bytes), as CEL doubles are. */
export function encodeProperty(value: PropertyValue): Uint8Array {
  if (typeof value === "string") return utf8.encode(value);
  if (value instanceof Uint8Array) return value;
  if (typeof value === "boolean") return Uint8Array.of(value ? 1 : 0);
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  if (typeof value === "bigint") view.setBigInt64(0, value, true);
  else if (Number.isInteger(value)) view.setBigInt64(0, BigInt(value), true);
  else view.setFloat64(0, value, true);
  return out;
}

/** A property path as the guest sends it: segments joined by NUL. */
export function propertyKey(path: readonly string[]): string {
  return path.join("\0");
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export function toBytes(data: string | Uint8Array | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return typeof data === "string" ? utf8.encode(data) : data;
}
