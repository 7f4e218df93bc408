// Typed wrappers over the raw host calls: strings in and out, header maps (de)serialised, results checked.
// Hot-path rules: arguments are encoded into a reused scratch buffer (no garbage), and every value the host hands
// back is decoded once and its host-allocated memory freed at once.
import * as raw from "./imports";
import { BufferType, Header, LogLevel, MapType, MetricType, StreamType, WasmResult } from "./types";

// Where the host writes returned pointers and sizes.
const RETURN_DATA = memory.data(8);
const RETURN_SIZE = memory.data(8);
const RETURN_EXTRA = memory.data(8);

// ---------------------------------------------------------------------------------------------- scratch encoding

let scratch: usize = heap.alloc(512);
let scratchCapacity: usize = 512;
// Lengths of the strings last encoded by encode1/encode2; the second starts at scratch + encodedA.
let encodedA: usize = 0;
let encodedB: usize = 0;

function reserve(bytes: usize): void {
  if (bytes > scratchCapacity) {
    scratch = heap.realloc(scratch, bytes);
    scratchCapacity = bytes;
  }
}

/** Encodes one string as UTF-8 into scratch; its length lands in encodedA. */
function encode1(a: string): usize {
  reserve(<usize>a.length * 3);
  encodedA = String.UTF8.encodeUnsafe(changetype<usize>(a), a.length, scratch);
  return scratch;
}

/** Encodes two strings back to back into scratch; lengths in encodedA and encodedB. */
function encode2(a: string, b: string): usize {
  reserve((<usize>a.length + <usize>b.length) * 3);
  encodedA = String.UTF8.encodeUnsafe(changetype<usize>(a), a.length, scratch);
  encodedB = String.UTF8.encodeUnsafe(changetype<usize>(b), b.length, scratch + encodedA);
  return scratch;
}

/** Takes ownership of memory the host allocated through proxy_on_memory_allocate. */
function takeString(data: usize, size: usize): string {
  if (data == 0) return "";
  const text = String.UTF8.decodeUnsafe(data, size);
  heap.free(data);
  return text;
}

function takeBytes(data: usize, size: usize): ArrayBuffer {
  const bytes = new ArrayBuffer(<i32>size);
  if (data != 0) {
    memory.copy(changetype<usize>(bytes), data, size);
    heap.free(data);
  }
  return bytes;
}

function returnedString(): string {
  return takeString(load<usize>(RETURN_DATA), load<usize>(RETURN_SIZE));
}

function returnedBytes(): ArrayBuffer {
  return takeBytes(load<usize>(RETURN_DATA), load<usize>(RETURN_SIZE));
}

function clearReturn(): void {
  store<usize>(RETURN_DATA, 0);
  store<usize>(RETURN_SIZE, 0);
}

// ---------------------------------------------------------------------------------------------- logging and time

/** The host's log level; ask before building an expensive message. */
export function logLevel(): LogLevel {
  raw.proxy_get_log_level(RETURN_EXTRA);
  return <LogLevel>load<u32>(RETURN_EXTRA);
}

export function logEnabled(level: LogLevel): bool {
  return level >= logLevel();
}

export function log(level: LogLevel, message: string): void {
  if (level < logLevel()) return;
  const data = encode1(message);
  raw.proxy_log(level, data, encodedA);
}

/** Wall-clock time in nanoseconds (the host may freeze it for the duration of a callback). */
export function nowNanos(): u64 {
  raw.proxy_get_current_time_nanoseconds(RETURN_EXTRA);
  return load<u64>(RETURN_EXTRA);
}

/** Monotonic time in nanoseconds, for measuring intervals. */
export function monotonicNanos(): u64 {
  raw.wasi_clock_time_get(1, 0, RETURN_EXTRA);
  return load<u64>(RETURN_EXTRA);
}

export function setTickPeriodMilliseconds(periodMs: u32): void {
  raw.proxy_set_tick_period_milliseconds(periodMs);
}

/** Fills `bytes` from the host's CSPRNG, in calls of at most 64 KiB (Envoy refuses larger ones). */
export function randomBytes(bytes: ArrayBuffer): void {
  const base = changetype<usize>(bytes);
  const size = <usize>bytes.byteLength;
  for (let at: usize = 0; at < size; at += 65536) raw.wasi_random_get(base + at, min<usize>(65536, size - at));
}

// randomU64 draws from a pool of CSPRNG bytes refilled RANDOM_POOL_BYTES at a time: one host call per 64 values
// instead of one per value (a B3 filter takes six per request). Each byte is handed out once.
const RANDOM_POOL_BYTES: usize = 512;
const RANDOM_POOL = memory.data(<i32>RANDOM_POOL_BYTES, 8);
let randomPoolUsed: usize = RANDOM_POOL_BYTES;

/** A random u64 from the host's CSPRNG, without allocating. */
export function randomU64(): u64 {
  if (randomPoolUsed == RANDOM_POOL_BYTES) {
    raw.wasi_random_get(RANDOM_POOL, RANDOM_POOL_BYTES);
    randomPoolUsed = 0;
  }
  const value = load<u64>(RANDOM_POOL + randomPoolUsed);
  randomPoolUsed += 8;
  return value;
}

// ---------------------------------------------------------------------------------------------- header maps

/** The value the last getHeader that returned Ok read. */
export let headerValue: string = "";

/** Reads one header into headerValue. Ok; NotFound when the map has no such header; BadArgument when the host has no
 * such map now (request headers once their callback continued, a response map in a request callback). */
export function getHeader(map: MapType, name: string): WasmResult {
  const key = encode1(name);
  clearReturn();
  const result = <WasmResult>raw.proxy_get_header_map_value(map, key, encodedA, RETURN_DATA, RETURN_SIZE);
  if (result == WasmResult.Ok) headerValue = returnedString();
  return result;
}

/** Whether the map has `name`: the value the host copies into guest memory is freed undecoded. */
export function hasHeader(map: MapType, name: string): bool {
  const key = encode1(name);
  clearReturn();
  if (raw.proxy_get_header_map_value(map, key, encodedA, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return false;
  const data = load<usize>(RETURN_DATA);
  if (data != 0) heap.free(data);
  return true;
}

export function replaceHeader(map: MapType, name: string, value: string): WasmResult {
  const data = encode2(name, value);
  return <WasmResult>raw.proxy_replace_header_map_value(map, data, encodedA, data + encodedA, encodedB);
}

/** A header, name and value, UTF-8 encoded once: for one a filter writes on many requests (HeaderMap.setEncoded).
 * Writing it hands the host these bytes; set() encodes both strings on every call (for a long value, such as a
 * base64 blob, that is most of what the write costs the filter). */
export class EncodedHeader {
  readonly name: ArrayBuffer;
  readonly value: ArrayBuffer;
  constructor(name: string, value: string) {
    this.name = String.UTF8.encode(name);
    this.value = String.UTF8.encode(value);
  }
}

export function replaceEncodedHeader(map: MapType, header: EncodedHeader): WasmResult {
  const name = header.name;
  const value = header.value;
  return <WasmResult>raw.proxy_replace_header_map_value(map, changetype<usize>(name), name.byteLength, changetype<usize>(value), value.byteLength);
}

export function addHeader(map: MapType, name: string, value: string): WasmResult {
  const data = encode2(name, value);
  return <WasmResult>raw.proxy_add_header_map_value(map, data, encodedA, data + encodedA, encodedB);
}

export function removeHeader(map: MapType, name: string): WasmResult {
  const key = encode1(name);
  return <WasmResult>raw.proxy_remove_header_map_value(map, key, encodedA);
}

/** Header names for getHeaderValues, UTF-8 encoded once, back to back, with A-Z lower-cased (header names are
 * ASCII; Envoy's maps hold them in lower case). */
export class HeaderNames {
  readonly count: i32;
  readonly encoded: ArrayBuffer;
  /** Where each name starts in `encoded`; the last entry is the end. */
  readonly offsets: StaticArray<u32>;
  constructor(names: string[]) {
    this.count = names.length;
    this.encoded = String.UTF8.encode(names.join(""));
    this.offsets = new StaticArray<u32>(names.length + 1);
    let at: u32 = 0;
    for (let i = 0; i < names.length; i++) {
      unchecked((this.offsets[i] = at));
      at += <u32>String.UTF8.byteLength(names[i]);
    }
    unchecked((this.offsets[names.length] = at));
    const base = changetype<usize>(this.encoded);
    for (let i: usize = 0; i < <usize>at; i++) {
      const c = load<u8>(base + i);
      if (c >= 0x41 && c <= 0x5a) store<u8>(base + i, c + 0x20);
    }
  }
}

/** The first value of each of `names` (null when absent), read with one host call for the whole map: the pairs are
 * scanned where the host put them and only the values asked for are decoded. Null for all when the map is not
 * readable now. */
export function getHeaderValues(map: MapType, names: HeaderNames): Array<string | null> {
  const values = new Array<string | null>(names.count);
  clearReturn();
  if (raw.proxy_get_header_map_pairs(map, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return values;
  const data = load<usize>(RETURN_DATA);
  if (data == 0) return values;
  const size = load<usize>(RETURN_SIZE);
  const count = size >= 4 ? load<u32>(data) : 0;
  const wanted = changetype<usize>(names.encoded);
  let sizes = data + 4;
  let strings = data + 4 + <usize>count * 8;
  let missing = names.count;
  for (let i: u32 = 0; i < count && missing > 0; i++) {
    const nameLength = load<u32>(sizes);
    const valueLength = load<u32>(sizes, 4);
    sizes += 8;
    for (let j = 0; j < names.count; j++) {
      const from = unchecked(names.offsets[j]);
      if (unchecked(names.offsets[j + 1]) - from != nameLength || unchecked(values[j]) !== null) continue;
      if (memory.compare(strings, wanted + from, nameLength) != 0) continue;
      unchecked((values[j] = String.UTF8.decodeUnsafe(strings + nameLength + 1, valueLength)));
      missing--;
      break;
    }
    strings += <usize>nameLength + 1 + <usize>valueLength + 1;
  }
  heap.free(data);
  return values;
}

export function getHeaderMapSize(map: MapType): usize {
  if (raw.proxy_get_header_map_size(map, RETURN_EXTRA) != WasmResult.Ok) return 0;
  return load<usize>(RETURN_EXTRA);
}

export function getHeaders(map: MapType): Header[] {
  clearReturn();
  if (raw.proxy_get_header_map_pairs(map, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return [];
  const data = load<usize>(RETURN_DATA);
  const headers = deserializeHeaders(data, load<usize>(RETURN_SIZE));
  if (data != 0) heap.free(data);
  return headers;
}

export function setHeaders(map: MapType, headers: Header[]): WasmResult {
  const bytes = serializeHeaders(headers);
  return <WasmResult>raw.proxy_set_header_map_pairs(map, changetype<usize>(bytes), bytes.byteLength);
}

/** The ABI's header map format: u32 count, (u32 name length, u32 value length) per pair, then each name and value
 * followed by a NUL. Little-endian, as Wasm memory is. */
export function serializeHeaders(headers: Header[]): ArrayBuffer {
  let size: usize = 4 + <usize>headers.length * 8;
  for (let i = 0; i < headers.length; i++) {
    const h = unchecked(headers[i]);
    size += <usize>String.UTF8.byteLength(h.name) + <usize>String.UTF8.byteLength(h.value) + 2;
  }
  const bytes = new ArrayBuffer(<i32>size);
  const base = changetype<usize>(bytes);
  store<u32>(base, headers.length);
  let sizes = base + 4;
  let strings = base + 4 + <usize>headers.length * 8;
  for (let i = 0; i < headers.length; i++) {
    const h = unchecked(headers[i]);
    const nameLength = String.UTF8.encodeUnsafe(changetype<usize>(h.name), h.name.length, strings, true);
    strings += nameLength;
    const valueLength = String.UTF8.encodeUnsafe(changetype<usize>(h.value), h.value.length, strings, true);
    strings += valueLength;
    // encodeUnsafe counted the NUL it wrote.
    store<u32>(sizes, <u32>nameLength - 1);
    store<u32>(sizes, <u32>valueLength - 1, 4);
    sizes += 8;
  }
  return bytes;
}

export function deserializeHeaders(data: usize, size: usize): Header[] {
  if (data == 0 || size < 4) return [];
  const count = load<u32>(data);
  const headers = new Array<Header>(<i32>count);
  let sizes = data + 4;
  let strings = data + 4 + <usize>count * 8;
  for (let i: u32 = 0; i < count; i++) {
    const nameLength = <usize>load<u32>(sizes);
    const valueLength = <usize>load<u32>(sizes, 4);
    sizes += 8;
    const name = String.UTF8.decodeUnsafe(strings, nameLength);
    strings += nameLength + 1;
    const value = String.UTF8.decodeUnsafe(strings, valueLength);
    strings += valueLength + 1;
    unchecked((headers[i] = new Header(name, value)));
  }
  return headers;
}

// ---------------------------------------------------------------------------------------------- buffers

/** Size of a buffer, or 0 when the host has none of that type now. */
export function getBufferSize(buffer: BufferType): usize {
  if (raw.proxy_get_buffer_status(buffer, RETURN_EXTRA, RETURN_SIZE) != WasmResult.Ok) return 0;
  return load<usize>(RETURN_EXTRA);
}

export function getBufferBytes(buffer: BufferType, start: usize, maxSize: usize): ArrayBuffer {
  clearReturn();
  if (raw.proxy_get_buffer_bytes(buffer, start, maxSize, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return new ArrayBuffer(0);
  return returnedBytes();
}

export function getBufferString(buffer: BufferType, start: usize, maxSize: usize): string {
  clearReturn();
  if (raw.proxy_get_buffer_bytes(buffer, start, maxSize, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return "";
  return returnedString();
}

export function setBufferBytes(buffer: BufferType, start: usize, size: usize, data: ArrayBuffer): WasmResult {
  return <WasmResult>raw.proxy_set_buffer_bytes(buffer, start, size, changetype<usize>(data), data.byteLength);
}

// ---------------------------------------------------------------------------------------------- properties

/** A property path such as ["upstream", "address"], encoded once (segments joined by NUL) so that reading it on
 * every request costs one host call and nothing else. */
export class PropertyPath {
  readonly encoded: ArrayBuffer;
  constructor(segments: string[]) {
    this.encoded = String.UTF8.encode(segments.join("\0"));
  }
}

/** The raw bytes of a property, or null when the host does not have it. */
export function getProperty(path: PropertyPath): ArrayBuffer | null {
  clearReturn();
  const encoded = path.encoded;
  if (raw.proxy_get_property(changetype<usize>(encoded), encoded.byteLength, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) {
    return null;
  }
  return returnedBytes();
}

/** A string property (Envoy hands strings as raw UTF-8), or null. */
export function getPropertyString(path: PropertyPath): string | null {
  clearReturn();
  const encoded = path.encoded;
  if (raw.proxy_get_property(changetype<usize>(encoded), encoded.byteLength, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) {
    return null;
  }
  return returnedString();
}

/** An integer property (Envoy hands them as 8 little-endian bytes), or `fallback` when the host does not have it.
 * Read straight from the host's buffer: nothing is allocated in the guest. */
export function getPropertyU64(path: PropertyPath, fallback: u64 = 0): u64 {
  clearReturn();
  const encoded = path.encoded;
  if (raw.proxy_get_property(changetype<usize>(encoded), encoded.byteLength, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) {
    return fallback;
  }
  const data = load<usize>(RETURN_DATA);
  if (data == 0) return fallback;
  const value = load<usize>(RETURN_SIZE) >= 8 ? load<u64>(data) : fallback;
  heap.free(data);
  return value;
}

export function setProperty(path: PropertyPath, value: ArrayBuffer): WasmResult {
  const encoded = path.encoded;
  return <WasmResult>raw.proxy_set_property(changetype<usize>(encoded), encoded.byteLength, changetype<usize>(value), value.byteLength);
}

// ---------------------------------------------------------------------------------------------- stream control

export function continueStream(stream: StreamType): WasmResult {
  return <WasmResult>raw.proxy_continue_stream(stream);
}

export function closeStream(stream: StreamType): WasmResult {
  return <WasmResult>raw.proxy_close_stream(stream);
}

export function sendLocalResponse(status: u32, details: string, body: ArrayBuffer, headers: Header[], grpcStatus: i32 = -1): WasmResult {
  const serialized = serializeHeaders(headers);
  const detailsBytes = String.UTF8.encode(details);
  return <WasmResult>raw.proxy_send_local_response(
    status, changetype<usize>(detailsBytes), detailsBytes.byteLength, changetype<usize>(body), body.byteLength,
    changetype<usize>(serialized), serialized.byteLength, grpcStatus);
}

/** Status of the last gRPC close: code and message. */
export class Status {
  constructor(public code: u32, public message: string) {}
}

export function getStatus(): Status {
  clearReturn();
  raw.proxy_get_status(RETURN_EXTRA, RETURN_DATA, RETURN_SIZE);
  const code = load<u32>(RETURN_EXTRA);
  return new Status(code, returnedString());
}

export function setEffectiveContext(contextId: u32): WasmResult {
  return <WasmResult>raw.proxy_set_effective_context(contextId);
}

export function done(): WasmResult {
  return <WasmResult>raw.proxy_done();
}

// ---------------------------------------------------------------------------------------------- callouts

/** Sends an HTTP request to `cluster`; returns the callout id, or 0 when the host refused (unknown cluster, bad
 * headers). `headers` must include :method, :path and :authority. */
export function httpCall(cluster: string, headers: Header[], body: ArrayBuffer | null, trailers: Header[], timeoutMs: u32): u32 {
  const clusterBytes = String.UTF8.encode(cluster);
  const headerBytes = serializeHeaders(headers);
  const trailerBytes = serializeHeaders(trailers);
  const bodyPtr: usize = body === null ? 0 : changetype<usize>(body);
  const bodySize: usize = body === null ? 0 : <usize>body.byteLength;
  const result = raw.proxy_http_call(
    changetype<usize>(clusterBytes), clusterBytes.byteLength, changetype<usize>(headerBytes), headerBytes.byteLength,
    bodyPtr, bodySize, changetype<usize>(trailerBytes), trailerBytes.byteLength, timeoutMs, RETURN_EXTRA);
  return result == WasmResult.Ok ? load<u32>(RETURN_EXTRA) : 0;
}

/** `cluster` as a serialised envoy.config.core.v3.GrpcService { envoy_grpc { cluster_name } }. Envoy parses the
 * upstream argument of a gRPC callout as that message and uses the raw bytes as a cluster name only when they do not
 * parse; some plain names do parse (as unknown fields), so the SDK always sends the message. */
export function grpcService(cluster: string): ArrayBuffer {
  const name = String.UTF8.encode(cluster);
  const nameLength = <u32>name.byteLength;
  const innerLength = 1 + varintSize(nameLength) + nameLength;
  const bytes = new ArrayBuffer(<i32>(1 + varintSize(innerLength) + innerLength));
  let at = changetype<usize>(bytes);
  store<u8>(at++, 0x0a); // field 1 (envoy_grpc), length-delimited
  at = writeVarint(at, innerLength);
  store<u8>(at++, 0x0a); // field 1 (cluster_name), length-delimited
  at = writeVarint(at, nameLength);
  memory.copy(at, changetype<usize>(name), nameLength);
  return bytes;
}

function varintSize(value: u32): u32 {
  let size: u32 = 1;
  while (value >= 0x80) {
    value >>= 7;
    size++;
  }
  return size;
}

function writeVarint(at: usize, value: u32): usize {
  while (value >= 0x80) {
    store<u8>(at++, <u8>(value & 0x7f) | 0x80);
    value >>= 7;
  }
  store<u8>(at++, <u8>value);
  return at;
}

/** A unary gRPC call to `cluster`; returns the callout id, or 0 when the host refused. */
export function grpcCall(cluster: string, service: string, method: string, metadata: Header[], message: ArrayBuffer, timeoutMs: u32): u32 {
  const clusterBytes = grpcService(cluster);
  const serviceBytes = String.UTF8.encode(service);
  const methodBytes = String.UTF8.encode(method);
  const metadataBytes = serializeHeaders(metadata);
  const result = raw.proxy_grpc_call(
    changetype<usize>(clusterBytes), clusterBytes.byteLength, changetype<usize>(serviceBytes), serviceBytes.byteLength,
    changetype<usize>(methodBytes), methodBytes.byteLength, changetype<usize>(metadataBytes), metadataBytes.byteLength,
    changetype<usize>(message), message.byteLength, timeoutMs, RETURN_EXTRA);
  return result == WasmResult.Ok ? load<u32>(RETURN_EXTRA) : 0;
}

/** Opens a gRPC stream to `cluster`; returns its token, or 0 when the host refused. */
export function grpcStream(cluster: string, service: string, method: string, metadata: Header[]): u32 {
  const clusterBytes = grpcService(cluster);
  const serviceBytes = String.UTF8.encode(service);
  const methodBytes = String.UTF8.encode(method);
  const metadataBytes = serializeHeaders(metadata);
  const result = raw.proxy_grpc_stream(
    changetype<usize>(clusterBytes), clusterBytes.byteLength, changetype<usize>(serviceBytes), serviceBytes.byteLength,
    changetype<usize>(methodBytes), methodBytes.byteLength, changetype<usize>(metadataBytes), metadataBytes.byteLength,
    RETURN_EXTRA);
  return result == WasmResult.Ok ? load<u32>(RETURN_EXTRA) : 0;
}

export function grpcSend(token: u32, message: ArrayBuffer, endStream: bool): WasmResult {
  return <WasmResult>raw.proxy_grpc_send(token, changetype<usize>(message), message.byteLength, endStream ? 1 : 0);
}

export function grpcCancel(token: u32): WasmResult {
  return <WasmResult>raw.proxy_grpc_cancel(token);
}

export function grpcClose(token: u32): WasmResult {
  return <WasmResult>raw.proxy_grpc_close(token);
}

// ---------------------------------------------------------------------------------------------- shared data, queues

/** A value from shared data with the CAS token to update it with. */
export class SharedValue {
  constructor(public value: ArrayBuffer | null, public cas: u32) {}
}

export function getSharedData(key: string): SharedValue {
  const data = encode1(key);
  clearReturn();
  store<u32>(RETURN_EXTRA, 0);
  if (raw.proxy_get_shared_data(data, encodedA, RETURN_DATA, RETURN_SIZE, RETURN_EXTRA) != WasmResult.Ok) {
    return new SharedValue(null, 0);
  }
  const cas = load<u32>(RETURN_EXTRA);
  return new SharedValue(returnedBytes(), cas);
}

/** Stores `value` under `key`. With cas != 0 the write succeeds only if nobody wrote since the read that returned
 * `cas` (else CasMismatch); with cas == 0 it always succeeds. */
export function setSharedData(key: string, value: ArrayBuffer, cas: u32 = 0): WasmResult {
  const data = encode1(key);
  return <WasmResult>raw.proxy_set_shared_data(data, encodedA, changetype<usize>(value), value.byteLength, cas);
}

export function registerSharedQueue(name: string): u32 {
  const data = encode1(name);
  if (raw.proxy_register_shared_queue(data, encodedA, RETURN_EXTRA) != WasmResult.Ok) return 0;
  return load<u32>(RETURN_EXTRA);
}

/** Finds a queue that another plugin (in VM `vmId`) registered; 0 when there is none. */
export function resolveSharedQueue(vmId: string, name: string): u32 {
  const data = encode2(vmId, name);
  if (raw.proxy_resolve_shared_queue(data, encodedA, data + encodedA, encodedB, RETURN_EXTRA) != WasmResult.Ok) return 0;
  return load<u32>(RETURN_EXTRA);
}

export function enqueueSharedQueue(queueId: u32, value: ArrayBuffer): WasmResult {
  return <WasmResult>raw.proxy_enqueue_shared_queue(queueId, changetype<usize>(value), value.byteLength);
}

/** The next item of a queue, or null when it is empty (or unknown). */
export function dequeueSharedQueue(queueId: u32): ArrayBuffer | null {
  clearReturn();
  if (raw.proxy_dequeue_shared_queue(queueId, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) return null;
  return returnedBytes();
}

// ---------------------------------------------------------------------------------------------- metrics

export function defineMetric(type: MetricType, name: string): u32 {
  const data = encode1(name);
  if (raw.proxy_define_metric(type, data, encodedA, RETURN_EXTRA) != WasmResult.Ok) return 0;
  return load<u32>(RETURN_EXTRA);
}

export function incrementMetric(metricId: u32, offset: i64): WasmResult {
  return <WasmResult>raw.proxy_increment_metric(metricId, offset);
}

export function recordMetric(metricId: u32, value: u64): WasmResult {
  return <WasmResult>raw.proxy_record_metric(metricId, value);
}

export function getMetric(metricId: u32): u64 {
  if (raw.proxy_get_metric(metricId, RETURN_EXTRA) != WasmResult.Ok) return 0;
  return load<u64>(RETURN_EXTRA);
}

// ---------------------------------------------------------------------------------------------- foreign functions

/** Calls a host extension such as Envoy's `clear_route_cache`; null when the host has no such function. */
export function callForeignFunction(name: string, args: ArrayBuffer): ArrayBuffer | null {
  const data = encode1(name);
  clearReturn();
  if (raw.proxy_call_foreign_function(data, encodedA, changetype<usize>(args), args.byteLength, RETURN_DATA, RETURN_SIZE) != WasmResult.Ok) {
    return null;
  }
  return returnedBytes();
}

const CLEAR_ROUTE_CACHE = String.UTF8.encode("clear_route_cache");

/** Asks Envoy to pick the route again for the current request (Envoy's `clear_route_cache` foreign function). Setting
 * a request header already does this under ABI 0.2.1; call it after changing what a route matches some other way.
 * Returns false when the host has no such function. */
export function clearRouteCache(): bool {
  clearReturn();
  const found = raw.proxy_call_foreign_function(
    changetype<usize>(CLEAR_ROUTE_CACHE), CLEAR_ROUTE_CACHE.byteLength, 0, 0, RETURN_DATA, RETURN_SIZE) == WasmResult.Ok;
  // Envoy returns no result for this function; free one if a host does, rather than leak it on every call.
  const data = load<usize>(RETURN_DATA);
  if (data != 0) heap.free(data);
  return found;
}
