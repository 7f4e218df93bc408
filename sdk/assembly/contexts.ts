// The API a filter author writes against: a root context per plugin, an HTTP or TCP context per stream. Every
// callback has a no-op default, so a filter overrides only what it needs. Read this file to learn the SDK.
import * as host from "./hostcalls";
import { EncodedHeader, HeaderNames } from "./hostcalls";
import { UNARY_CALLOUT, registerCallout } from "./registry";
import {
  BufferType, DataAction, GrpcStatus, Header, HeadersAction, MapType, MetricType, NetworkAction, PeerType,
  StreamType, WasmResult,
} from "./types";

// ---------------------------------------------------------------------------------------------- messages

/** One header map of the current stream (request or response headers or trailers, or an HTTP call's response).
 * The object holds no data: every call asks the host, for that one header only. Writes return the host's status:
 * Ok, or BadArgument when the map cannot be written now (request headers after their callback continued, a
 * callout's response). */
export class HeaderMap {
  constructor(readonly type: MapType) {}
  /** The value of `name` (lower case), or null when the map has no such header or is not readable now: lookup()
   * tells the two apart. */
  get(name: string): string | null {
    return host.getHeader(this.type, name) == WasmResult.Ok ? host.headerValue : null;
  }
  /** The value of `name` with the host's status: Ok, NotFound (no such header) or BadArgument (the map is not
   * readable now, e.g. request headers in a response callback). */
  lookup(name: string): HeaderValue {
    const status = host.getHeader(this.type, name);
    return new HeaderValue(status, status == WasmResult.Ok ? host.headerValue : "");
  }
  has(name: string): bool { return host.hasHeader(this.type, name); }
  /** The first value of each of `names` (null when absent), in their order, read with one host call for the whole
   * map instead of one per name: cheaper than get() once a filter reads several headers, most of them usually
   * absent. Make the HeaderNames once, at load. */
  getEach(names: HeaderNames): Array<string | null> { return host.getHeaderValues(this.type, names); }
  /** Sets `name` to `value`, replacing any existing values. */
  set(name: string, value: string): WasmResult { return host.replaceHeader(this.type, name, value); }
  /** set() with a header encoded once (EncodedHeader, made at load): for a header written on every request. */
  setEncoded(header: EncodedHeader): WasmResult { return host.replaceEncodedHeader(this.type, header); }
  /** Adds a value, keeping existing ones. */
  add(name: string, value: string): WasmResult { return host.addHeader(this.type, name, value); }
  /** Removes every value of `name`; Ok also when there was none. */
  remove(name: string): WasmResult { return host.removeHeader(this.type, name); }
  /** Every header, in order (one host call for all of them); empty when the map is not readable now. */
  all(): Header[] { return host.getHeaders(this.type); }
  /** Replaces the whole map. */
  replaceAll(headers: Header[]): WasmResult { return host.setHeaders(this.type, headers); }
  /** The map's size in bytes (names plus values), which is what Envoy's proxy_get_header_map_size reports; the
   * header count comes with each headers callback (numHeaders). */
  size(): usize { return host.getHeaderMapSize(this.type); }
}

/** What HeaderMap.lookup found. */
export class HeaderValue {
  constructor(readonly status: WasmResult, readonly value: string) {}
  get found(): bool { return this.status == WasmResult.Ok; }
}

/** A body or a chunk of TCP data: what the host has buffered so far for the current callback. */
export class Body {
  constructor(readonly type: BufferType) {}
  size(): usize { return host.getBufferSize(this.type); }
  bytes(start: usize = 0, maxSize: usize = <usize>i32.MAX_VALUE): ArrayBuffer { return host.getBufferBytes(this.type, start, maxSize); }
  text(start: usize = 0, maxSize: usize = <usize>i32.MAX_VALUE): string { return host.getBufferString(this.type, start, maxSize); }
  replace(data: ArrayBuffer): WasmResult { return host.setBufferBytes(this.type, 0, <usize>i32.MAX_VALUE, data); }
  append(data: ArrayBuffer): WasmResult { return host.setBufferBytes(this.type, <usize>i32.MAX_VALUE, 0, data); }
  prepend(data: ArrayBuffer): WasmResult { return host.setBufferBytes(this.type, 0, 0, data); }
  replaceText(text: string): WasmResult { return this.replace(String.UTF8.encode(text)); }
  appendText(text: string): WasmResult { return this.append(String.UTF8.encode(text)); }
  prependText(text: string): WasmResult { return this.prepend(String.UTF8.encode(text)); }
}

/** The request or the response of the current HTTP stream. */
export class HttpMessage {
  readonly headers: HeaderMap;
  readonly trailers: HeaderMap;
  readonly body: Body;
  constructor(headers: MapType, trailers: MapType, body: BufferType, readonly stream: StreamType) {
    this.headers = new HeaderMap(headers);
    this.trailers = new HeaderMap(trailers);
    this.body = new Body(body);
  }
  /** Resumes a message paused by returning Pause from a callback. */
  resume(): WasmResult { return host.continueStream(this.stream); }
  /** Resets the stream in this direction. */
  close(): WasmResult { return host.closeStream(this.stream); }
}

// These carry no per-stream state, so one of each serves every context.
const REQUEST = new HttpMessage(MapType.RequestHeaders, MapType.RequestTrailers, BufferType.RequestBody, StreamType.Request);
const RESPONSE = new HttpMessage(MapType.ResponseHeaders, MapType.ResponseTrailers, BufferType.ResponseBody, StreamType.Response);
const DOWNSTREAM_DATA = new Body(BufferType.DownstreamData);
const UPSTREAM_DATA = new Body(BufferType.UpstreamData);
const CALL_RESPONSE_HEADERS = new HeaderMap(MapType.HttpCallResponseHeaders);
const CALL_RESPONSE_TRAILERS = new HeaderMap(MapType.HttpCallResponseTrailers);
const CALL_RESPONSE_BODY = new Body(BufferType.HttpCallResponseBody);

/** What an HTTP callout returned; valid only inside onHttpCallResponse. */
export class HttpCallResponse {
  readonly headers: HeaderMap = CALL_RESPONSE_HEADERS;
  readonly trailers: HeaderMap = CALL_RESPONSE_TRAILERS;
  readonly body: Body = CALL_RESPONSE_BODY;
  constructor(readonly numHeaders: u32, readonly bodySize: usize, readonly numTrailers: u32) {}
  /** The :status, or 0 when the call failed without a response (timeout, reset, no healthy upstream). */
  get status(): u32 {
    const value = CALL_RESPONSE_HEADERS.get(":status");
    return value === null ? 0 : <u32>I32.parseInt(value);
  }
}

// ---------------------------------------------------------------------------------------------- contexts

/** What every context can do: callouts and their callbacks. Callbacks arrive on the context that made the call. */
export class Context {
  constructor(readonly id: u32) {}

  /** Sends an HTTP request to an Envoy cluster; returns the callout id, or 0 if the host refused it.
   * `headers` need :method, :path and :authority. The answer comes to onHttpCallResponse. */
  httpCall(cluster: string, headers: Header[], body: ArrayBuffer | null, timeoutMs: u32): u32 {
    return registerCallout(host.httpCall(cluster, headers, body, [], timeoutMs), this.id);
  }
  onHttpCallResponse(calloutId: u32, response: HttpCallResponse): void {}

  /** A unary gRPC call. Envoy answers with exactly one callback: onGrpcReceive with the response message on
   * success, or onGrpcClose with the status on failure. */
  grpcCall(cluster: string, service: string, method: string, metadata: Header[], message: ArrayBuffer, timeoutMs: u32): u32 {
    return registerCallout(host.grpcCall(cluster, service, method, metadata, message, timeoutMs), this.id | UNARY_CALLOUT);
  }
  /** Opens a gRPC stream; send with grpcSend, answers come to the onGrpc* callbacks. */
  grpcStream(cluster: string, service: string, method: string, metadata: Header[]): u32 {
    return registerCallout(host.grpcStream(cluster, service, method, metadata), this.id);
  }
  grpcSend(token: u32, message: ArrayBuffer, endStream: bool): WasmResult { return host.grpcSend(token, message, endStream); }
  grpcCancel(token: u32): WasmResult { return host.grpcCancel(token); }
  grpcClose(token: u32): WasmResult { return host.grpcClose(token); }

  onGrpcReceiveInitialMetadata(token: u32, metadata: HeaderMap): void {}
  /** `message` is readable only during this callback. */
  onGrpcReceive(token: u32, message: Body): void {}
  onGrpcReceiveTrailingMetadata(token: u32, metadata: HeaderMap): void {}
  onGrpcClose(token: u32, status: GrpcStatus, message: string): void {}

  /** Return false to keep the context alive after the host is done with it; call finish() later. */
  onDone(): bool { return true; }
  onLog(): void {}
  onDelete(): void {}
  /** Lets the host finalise a context whose onDone returned false. */
  finish(): void { host.done(); }
}

/** One per plugin (per worker thread): configuration, timers, queues, and the factory of stream contexts. */
export class RootContext extends Context {
  /** VM configuration; true to accept it. */
  onVmStart(vmConfigurationSize: usize): bool { return true; }
  /** Plugin configuration; return false to reject it, and Envoy keeps the previous configuration. */
  onConfigure(configurationSize: usize): bool { return true; }
  onTick(): void {}
  onQueueReady(queueId: u32): void {}
  /** A host call of a function this plugin registered with the host; arguments via foreignFunctionArguments(). */
  onForeignFunction(functionId: u32, argumentsSize: usize): void {}

  /** A new HTTP stream, on its first callback (request headers, or the access log of a request an earlier filter
   * answered); return null when this plugin is not an HTTP filter. */
  createHttpContext(contextId: u32): HttpContext | null { return null; }
  /** A new TCP connection (network filter), on proxy_on_new_connection; return null when this plugin has none. */
  createTcpContext(contextId: u32): TcpContext | null { return null; }

  pluginConfiguration(): string { return host.getBufferString(BufferType.PluginConfiguration, 0, <usize>i32.MAX_VALUE); }
  vmConfiguration(): string { return host.getBufferString(BufferType.VmConfiguration, 0, <usize>i32.MAX_VALUE); }
  foreignFunctionArguments(): ArrayBuffer { return host.getBufferBytes(BufferType.ForeignFunctionArguments, 0, <usize>i32.MAX_VALUE); }
  setTickPeriod(milliseconds: u32): void { host.setTickPeriodMilliseconds(milliseconds); }
}

/** One per HTTP request/response pair, made by RootContext.createHttpContext when Envoy first calls the stream.
 * Return Pause from a callback to hold the stream, then resume() it. A filter's stream class takes its own root as
 * a typed constructor parameter: `constructor(id: u32, readonly plugin: MyRoot) { super(id); }`. */
export class HttpContext extends Context {

  get request(): HttpMessage { return REQUEST; }
  get response(): HttpMessage { return RESPONSE; }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction { return HeadersAction.Continue; }
  onRequestBody(bodySize: usize, endOfStream: bool): DataAction { return DataAction.Continue; }
  onRequestTrailers(numTrailers: u32): DataAction { return DataAction.Continue; }
  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction { return HeadersAction.Continue; }
  onResponseBody(bodySize: usize, endOfStream: bool): DataAction { return DataAction.Continue; }
  onResponseTrailers(numTrailers: u32): DataAction { return DataAction.Continue; }

  /** Answers the request from the filter; the upstream is not called. Return Pause from the callback after it.
   * `details` is Envoy's response code details (%RESPONSE_CODE_DETAILS%); a `grpcStatus` of 0 or more makes a gRPC
   * answer (Envoy sends it as a trailers-only response, HTTP 200 with `grpc-status`). */
  sendLocalResponse(status: u32, body: string, headers: Header[] = [], details: string = "", grpcStatus: i32 = -1): WasmResult {
    return host.sendLocalResponse(status, details, String.UTF8.encode(body), headers, grpcStatus);
  }
}

/** One per TCP connection, made by RootContext.createTcpContext when the connection opens. */
export class TcpContext extends Context {

  get downstreamData(): Body { return DOWNSTREAM_DATA; }
  get upstreamData(): Body { return UPSTREAM_DATA; }

  onNewConnection(): NetworkAction { return NetworkAction.Continue; }
  onDownstreamData(dataSize: usize, endOfStream: bool): NetworkAction { return NetworkAction.Continue; }
  onUpstreamData(dataSize: usize, endOfStream: bool): NetworkAction { return NetworkAction.Continue; }
  onDownstreamConnectionClose(peer: PeerType): void {}
  onUpstreamConnectionClose(peer: PeerType): void {}

  resumeDownstream(): WasmResult { return host.continueStream(StreamType.Downstream); }
  resumeUpstream(): WasmResult { return host.continueStream(StreamType.Upstream); }
  closeDownstream(): WasmResult { return host.closeStream(StreamType.Downstream); }
  closeUpstream(): WasmResult { return host.closeStream(StreamType.Upstream); }
}

// ---------------------------------------------------------------------------------------------- metrics
//
// The convention: name a metric `<filter>.<metric>` in snake_case (Envoy's /stats shows it as
// `wasmcustom.<filter>.<metric>`), and define it as a readonly field of the root context, which the host creates once
// per plugin configuration and worker: `readonly requests: Counter = new Counter("greeter.requests")`. A metric named
// after the configuration (a rule's name) is defined in onConfigure, once the configuration is accepted. Defining the
// same name again (a new configuration, another worker) reaches the same metric.

/** A counter: only goes up. */
export class Counter {
  readonly id: u32;
  constructor(name: string) { this.id = host.defineMetric(MetricType.Counter, name); }
  /** Counters only go up: Envoy rejects a zero or negative offset. */
  increment(by: i64 = 1): void { if (by > 0) host.incrementMetric(this.id, by); }
  value(): u64 { return host.getMetric(this.id); }
}

/** A gauge: a value that goes up and down. */
export class Gauge {
  readonly id: u32;
  constructor(name: string) { this.id = host.defineMetric(MetricType.Gauge, name); }
  set(value: u64): void { host.recordMetric(this.id, value); }
  add(delta: i64): void { host.incrementMetric(this.id, delta); }
  value(): u64 { return host.getMetric(this.id); }
}

/** A histogram of recorded values. */
export class Histogram {
  readonly id: u32;
  constructor(name: string) { this.id = host.defineMetric(MetricType.Histogram, name); }
  record(value: u64): void { host.recordMetric(this.id, value); }
}
