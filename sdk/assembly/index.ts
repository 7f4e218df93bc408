// The SDK in one import: `import { RootContext, HttpContext, registerRootContext, ... } from "<sdk>/index"`.
export * from "./types";
export * from "./contexts";
export {
  PropertyPath, SharedValue, callForeignFunction, clearRouteCache, dequeueSharedQueue, enqueueSharedQueue, getProperty,
  getPropertyString, getPropertyU64, getSharedData, log, logEnabled, logLevel, monotonicNanos, nowNanos, randomBytes,
  randomU64, registerSharedQueue, resolveSharedQueue, setProperty, setSharedData,
} from "./hostcalls";
export { ConfigReader, JsonKind, JsonParser, JsonValue, parseDurationMs } from "./config";
