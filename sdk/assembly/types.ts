// The enums of proxy-wasm ABI 0.2.1, with Envoy's extras. Plain TypeScript on purpose: the host emulator
// (sdk/testing/abi.ts) imports this same file, so guest and host can never disagree on a number.

/** proxy_status_t: what every host call returns. */
export enum WasmResult {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  InternalFailure = 10,
  /** Envoy-specific: an HTTP call whose connection failed. */
  BrokenConnection = 11,
  Unimplemented = 12,
}

/** proxy_log_level_t */
export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

/** proxy_map_type_t */
export enum MapType {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  GrpcInitialMetadata = 4,
  GrpcTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

/** proxy_buffer_type_t */
export enum BufferType {
  RequestBody = 0,
  ResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
  ForeignFunctionArguments = 8,
}

/** proxy_metric_type_t */
export enum MetricType {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

/** proxy_peer_type_t: who closed a TCP connection. */
export enum PeerType {
  Unknown = 0,
  Local = 1,
  Remote = 2,
}

/** proxy_stream_type_t: for continueStream / closeStream. */
export enum StreamType {
  Request = 0,
  Response = 1,
  Downstream = 2,
  Upstream = 3,
}

/** What a headers callback returns. */
export enum HeadersAction {
  Continue = 0,
  /** Hold the message until `request.resume()` / `response.resume()`. Envoy turns this into
   * StopAllIterationAndWatermark (body and trailers wait too, buffered) unless the plugin config sets
   * `allow_on_headers_stop_iteration`, in which case only the headers wait and body callbacks still come. */
  Pause = 1,
  /** Envoy-specific: StopAllIterationAndBuffer. */
  StopAllAndBuffer = 3,
  /** Envoy-specific: StopAllIterationAndWatermark. */
  StopAllAndWatermark = 4,
}

/** What a body, trailers or TCP data callback returns. */
export enum DataAction {
  Continue = 0,
  /** Stop and buffer until end of stream (body), or pause (TCP). */
  Pause = 1,
}

/** What a TCP new-connection callback returns. */
export enum NetworkAction {
  Continue = 0,
  Pause = 1,
}

/** gRPC status codes, as proxy_on_grpc_close reports them. */
export enum GrpcStatus {
  Ok = 0,
  Cancelled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** A header or trailer: name and value, as the host gives them. */
export class Header {
  constructor(public name: string, public value: string) {}
}
