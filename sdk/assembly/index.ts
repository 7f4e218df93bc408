// The SDK's public API in one import: `import { RootContext, HttpContext, registerRootContext, ... } from
// "@skiff/proxy-wasm"`. A filter's entry file also re-exports the dispatcher (`export * from
// "@skiff/proxy-wasm/dispatcher"`), which holds the proxy_on_* functions the host calls.
export * from "./types";
export {
  Body, Context, Counter, Gauge, HeaderMap, HeaderValue, Histogram, HttpCallResponse, HttpContext, HttpMessage, RootContext,
  TcpContext,
} from "./contexts";
export { RootContextFactory, registerRootContext } from "./registry";
export {
  EncodedHeader, HeaderNames, PropertyPath, SharedValue, callForeignFunction, clearRouteCache, dequeueSharedQueue, enqueueSharedQueue, getProperty,
  getPropertyString, getPropertyU64, getSharedData, log, logEnabled, logLevel, monotonicNanos, nowNanos, randomBytes,
  randomU64, registerSharedQueue, resolveSharedQueue, setProperty, setSharedData,
} from "./hostcalls";
export { ConfigReader, JsonKind, JsonParser, JsonValue, parseDurationMs } from "./config";
