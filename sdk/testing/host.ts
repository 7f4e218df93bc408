// The narrow interfaces between the emulator's parts, so that they depend on each other one way only:
// Emulator (process-wide state) -> Worker (one VM) -> host functions and streams. Each part sees the others through
// the interface below that says what it uses, never through the class.
import type { BufferType, HeaderPair, MapType, WasmResult } from "./abi.js";
import type { CalloutDelivery, CalloutTable, GrpcCallout, HttpCall } from "./callouts.js";
import type { GuestExports, Memory } from "./guest.js";
import type { Headers } from "./headers.js";
import type { LogEntry, Metrics, SharedData, SharedQueues } from "./shared.js";

/** A readable (and, when `set` exists, writable) host buffer. */
export interface BufferSlot {
  bytes(): Uint8Array;
  set?(bytes: Uint8Array): void;
}

/** What the host functions need from a stream (HTTP) or connection (TCP). */
export interface StreamContext {
  readonly id: number;
  /** The root context the stream belongs to. */
  readonly rootId: number;
  readonly properties: Map<string, Uint8Array>;
  /** The map, null when Envoy has none at this point (BadArgument), undefined when the type is not this context's. */
  headerMap(type: MapType, mutable: boolean): Headers | null | undefined;
  buffer(type: BufferType): BufferSlot | null | undefined;
  derivedProperty(key: string): Uint8Array | undefined;
  /** Whether the host is running the stream's access log (proxy_on_log), when Envoy lets a filter read what is left. */
  readonly inAccessLog: boolean;
  continueStream(stream: number): WasmResult;
  closeStream(stream: number): WasmResult;
  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: HeaderPair[], grpcStatus: number): WasmResult;
  clearRouteCache(): void;
}

/** A root context as the host keeps it: its timer. */
export interface RootState {
  readonly id: number;
  tickPeriodMs: number;
  nextTickAt: number;
}

/** What a stream or connection needs from the VM that runs it. */
export interface StreamHost {
  readonly exports: GuestExports;
  /** Envoy's `allow_on_headers_stop_iteration`. */
  readonly allowOnHeadersStopIteration: boolean;
  /** Calls into the guest for `contextId` (see Worker.invoke). */
  invoke<T>(contextId: number, label: string, fn: () => T): T;
  /** proxy_on_context_create for the stream, right before its first callback. */
  createInVm(context: StreamContext): void;
  /** proxy_on_done, proxy_on_log, proxy_on_delete; nothing but forgetting it for a stream the VM never heard of. */
  finishStream(context: StreamContext, createdInVm: boolean, duringLog: () => void, afterLog: () => void): void;
  /** Runs `action` after the guest call that is running returns (Envoy's after-VM-call actions). */
  defer(action: () => void): void;
}

/** What the host holds for the callback that is running: Envoy's per-call buffers and maps, and proxy_get_status. */
export interface CallState {
  /** Plugin configuration; readable only during proxy_on_vm_start and proxy_on_configure. */
  pluginConfig: Uint8Array | null;
  foreignArgs: Uint8Array | null;
  callResponse: { headers: Headers; body: Uint8Array; trailers: Headers } | null;
  grpcInitial: Headers | null;
  grpcTrailing: Headers | null;
  grpcMessage: Uint8Array | null;
  status: { code: number; message: string };
}

/** One worker's VM as its host functions see it. */
export interface Vm {
  readonly index: number;
  readonly memory: Memory;
  readonly process: ProcessHost;
  /** The context host calls act for: the callback's, or one set by proxy_set_effective_context. */
  effectiveId: number;
  readonly call: CallState;
  readonly callouts: CalloutTable;
  /** The stream or connection of the effective context, if it is one. */
  current(): StreamContext | undefined;
  /** The root context of `contextId` (itself, or the root of its stream). */
  rootOf(contextId: number): RootState | undefined;
  isRoot(contextId: number): boolean;
  isAlive(contextId: number): boolean;
  /** Where callout answers for this worker go. */
  delivery(): CalloutDelivery;
}

/** The worker's side of callout delivery: the emulator calls these once a guest call is over. */
export interface CalloutReceiver {
  deliverHttpResponse(call: HttpCall, headers: HeaderPair[], body: Uint8Array, trailers: HeaderPair[]): void;
  deliverHttpFailure(call: HttpCall): void;
  deliverGrpc(callout: GrpcCallout, what: "initial" | "message" | "trailing", metadata: HeaderPair[], message: Uint8Array): void;
  deliverGrpcClose(callout: GrpcCallout, status: number, message: string): void;
}

export type ForeignFunction = (args: Uint8Array, caller: { worker: number; contextId: number }) => Uint8Array | string | void;

/** What Envoy keeps process-wide, across worker VMs, as the worker and its host functions use it: the Emulator. */
export interface ProcessHost {
  readonly clock: { readonly nowMs: number; realtimeNanos(): bigint; monotonicNanos(): bigint };
  readonly sharedData: SharedData;
  readonly queues: SharedQueues;
  readonly metrics: Metrics;
  readonly logs: readonly LogEntry[];
  readonly vmId: string;
  readonly vmConfig: Uint8Array;
  /** What proxy_get_log_level reports (LogLevel). */
  readonly logLevel: number;
  readonly allowOnHeadersStopIteration: boolean;
  log(worker: number, contextId: number, level: number, message: string): void;
  /** A property every context reads, by NUL-joined path. */
  property(key: string): Uint8Array | undefined;
  knowsCluster(cluster: string): boolean;
  foreignFunction(name: string): ForeignFunction | undefined;
  /** Runs a guest call and, once the outermost returns, the deferred actions. */
  run<T>(fn: () => T): T;
  defer(action: () => void): void;
  httpCallMade(call: HttpCall): void;
  grpcOpened(callout: GrpcCallout): void;
  grpcStreamMessage(stream: GrpcCallout): void;
  delivery(receiver: CalloutReceiver): CalloutDelivery;
}
