// The Skiff host emulator: run a proxy-wasm module in Node as Envoy would, and drive it from a test.
// `import { Emulator } from "<repo>/sdk/testing/index.js"`; README.md has the tour.
export { Emulator, ManualClock } from "./emulator.js";
export type { EmulatorOptions, ForeignFunction, GrpcHandler, HttpCallHandler } from "./emulator.js";
export { HttpStream, Message } from "./http.js";
export type { Action, LocalResponse, SendOptions } from "./http.js";
export { TcpConnection, Flow } from "./tcp.js";
export type { Peer } from "./tcp.js";
export { HttpCall, GrpcCallout } from "./callouts.js";
export type { GrpcAnswer, HttpCallAnswer } from "./callouts.js";
export { Headers } from "./headers.js";
export { Worker } from "./worker.js";
export type { RootState as RootContext, StreamContext } from "./host.js";
export { GuestTrap } from "./guest.js";
export type { LogEntry, MetricKind, SharedValue } from "./shared.js";
export {
  BufferType, LogLevel, MapType, MetricType, PeerType, StreamType, WasmResult, deserializePairs, encodeProperty,
  serializePairs,
} from "./abi.js";
export type { HeaderPair, HeadersInit, LogLevelName, PropertyValue } from "./abi.js";
