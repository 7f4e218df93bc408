// One worker thread's VM: an instance of the module with Envoy's host functions (every env.proxy_* of ABI 0.2.1 and
// the WASI calls Envoy provides), its root contexts, and the streams and connections opened on it. Host-function
// semantics follow Envoy's source/extensions/common/wasm/context.cc and proxy-wasm-cpp-host's src/exports.cc.
import { webcrypto } from "node:crypto";
import {
  BufferType, type HeaderPair, LogLevel, MapType, WasmResult, concatBytes, decodeText, deserializePairs, encodeText,
  serializePairs,
} from "./abi.js";
import { GrpcCallout, HttpCall } from "./callouts.js";
import type { Emulator } from "./emulator.js";
import { ABI_VERSION_EXPORTS, type GuestExports, GuestTrap, Memory } from "./guest.js";
import { Headers } from "./headers.js";
import { HttpStream } from "./http.js";
import { TcpConnection } from "./tcp.js";

/** A readable (and, when `set` exists, writable) host buffer. */
export interface BufferSlot {
  bytes(): Uint8Array;
  set?(bytes: Uint8Array): void;
}

/** What a stream or connection exposes to the host functions. */
export interface StreamContext {
  readonly id: number;
  readonly properties: Map<string, Uint8Array>;
  /** The map, null when Envoy has none at this point (BadArgument), undefined when the type is not this context's. */
  headerMap(type: MapType, mutable: boolean): Headers | null | undefined;
  buffer(type: BufferType): BufferSlot | null | undefined;
  derivedProperty(key: string): Uint8Array | undefined;
  continueStream(stream: number): WasmResult;
  closeStream(stream: number): WasmResult;
  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: HeaderPair[], grpcStatus: number): WasmResult;
  clearRouteCache(): void;
}

export interface RootContext {
  readonly id: number;
  tickPeriodMs: number;
  nextTickAt: number;
}

const WASI_ERRNO_SUCCESS = 0;
const WASI_ERRNO_BADF = 8;
const WASI_ERRNO_INVAL = 28;

export class Worker {
  readonly exports: GuestExports;
  private readonly memory: Memory;
  private nextContextId = 1;
  private readonly roots = new Map<number, RootContext>();
  private readonly streams = new Map<number, StreamContext>();
  /** The root context new streams attach to: the one whose configuration was accepted last. */
  activeRoot: RootContext | null = null;
  /** The context host calls act for: the context of the current callback, or one set by proxy_set_effective_context. */
  private effectiveId = 0;
  private failed: Error | null = null;
  /** Plugin configuration as seen through BufferType.PluginConfiguration; set only during vm_start and configure. */
  private pluginConfigBuffer: Uint8Array | null = null;
  private foreignArgs: Uint8Array | null = null;
  private callResponse: { headers: Headers; body: Uint8Array; trailers: Headers } | null = null;
  private grpcInitial: Headers | null = null;
  private grpcTrailing: Headers | null = null;
  private grpcMessage: Uint8Array | null = null;
  private status = { code: 0, message: "" };
  private readonly metricIds = new Map<number, ReturnType<Emulator["metrics"]["define"]>>();
  private readonly nextMetricId = [0, 1, 2];
  private nextCallout = [0, 1, 2];
  private readonly callouts = new Map<number, HttpCall | GrpcCallout>();

  constructor(readonly emulator: Emulator, readonly index: number, module: WebAssembly.Module) {
    const instance = new WebAssembly.Instance(module, this.imports(module));
    this.exports = instance.exports as unknown as GuestExports;
    if (!(this.exports.memory instanceof WebAssembly.Memory)) throw new Error("the module does not export its memory");
    if (!ABI_VERSION_EXPORTS.some((name) => name in instance.exports)) {
      throw new Error(`the module exports no proxy-wasm ABI version (one of ${ABI_VERSION_EXPORTS.join(", ")})`);
    }
    this.memory = new Memory(this.exports);
    if (this.exports._initialize !== undefined) {
      this.invoke(0, "_initialize", () => this.exports._initialize!());
      if (this.exports.main !== undefined) this.invoke(0, "main", () => this.exports.main!(0, 0));
    } else if (this.exports._start !== undefined) this.invoke(0, "_start", () => this.exports._start!());
  }

  /** Whether the VM trapped; a failed worker refuses further calls, as Envoy does. */
  get failure(): Error | null {
    return this.failed;
  }

  // ------------------------------------------------------------------------------------------- driving the guest

  /** Calls into the guest for `contextId`, runs Envoy's after-call actions once the outermost call returns, and turns
   * a trap into a GuestTrap. */
  invoke<T>(contextId: number, label: string, fn: () => T): T {
    if (this.failed !== null) throw new Error(`worker ${this.index} failed earlier: ${this.failed.message}`);
    return this.emulator.run(() => {
      const saved = this.effectiveId;
      this.effectiveId = contextId;
      try {
        return fn();
      } catch (error) {
        if (error instanceof GuestTrap) throw error;
        const lastCritical = this.emulator.logs.filter((l) => l.worker === this.index && l.level === "critical").at(-1)?.message;
        this.failed = new GuestTrap(label, error, lastCritical);
        throw this.failed;
      } finally {
        this.effectiveId = saved;
      }
    });
  }

  newContextId(): number {
    return this.nextContextId++;
  }

  /** Creates a root context and starts it: proxy_on_context_create, proxy_on_vm_start, proxy_on_configure. Returns
   * the root when both accepted, null otherwise (the root is then torn down and the previous one stays). */
  startRoot(vmConfig: Uint8Array, pluginConfig: string): { root: RootContext | null; vmStarted: boolean } {
    const root: RootContext = { id: this.newContextId(), tickPeriodMs: 0, nextTickAt: Infinity };
    this.roots.set(root.id, root);
    const plugin = encodeText(pluginConfig);
    this.invoke(root.id, "proxy_on_context_create", () => this.exports.proxy_on_context_create?.(root.id, 0));
    this.pluginConfigBuffer = plugin;
    try {
      const vmStarted = this.invoke(root.id, "proxy_on_vm_start", () => (this.exports.proxy_on_vm_start?.(root.id, vmConfig.length) ?? 1) !== 0);
      if (!vmStarted) {
        this.teardownRoot(root);
        return { root: null, vmStarted: false };
      }
      const configured = this.invoke(root.id, "proxy_on_configure", () => (this.exports.proxy_on_configure?.(root.id, plugin.length) ?? 1) !== 0);
      if (!configured) {
        this.teardownRoot(root);
        return { root: null, vmStarted: true };
      }
    } finally {
      this.pluginConfigBuffer = null;
    }
    return { root, vmStarted: true };
  }

  /** Makes `root` the one new streams use, and retires the previous one as Envoy does when a plugin is replaced. */
  activate(root: RootContext): void {
    const previous = this.activeRoot;
    this.activeRoot = root;
    if (previous !== null && previous !== root) this.teardownRoot(previous);
  }

  teardownRoot(root: RootContext): void {
    if (!this.roots.has(root.id)) return;
    this.invoke(root.id, "proxy_on_done", () => this.exports.proxy_on_done?.(root.id));
    this.invoke(root.id, "proxy_on_delete", () => this.exports.proxy_on_delete?.(root.id));
    this.roots.delete(root.id);
  }

  /** Opens an HTTP stream on the active root context. As in Envoy, the VM hears of it (proxy_on_context_create) with
   * its first callback, the request headers: Envoy's decodeHeaders calls ContextBase::onCreate first. */
  http(): HttpStream {
    if (this.failed !== null) throw new Error(`worker ${this.index} failed earlier: ${this.failed.message}`);
    const root = this.requireRoot();
    const stream = new HttpStream(this, this.newContextId(), root.id);
    this.streams.set(stream.id, stream);
    return stream;
  }

  /** proxy_on_context_create for a stream or connection, right before its first callback. */
  createInVm(context: StreamContext & { readonly rootId: number }): void {
    this.invoke(context.id, "proxy_on_context_create", () => this.exports.proxy_on_context_create?.(context.id, context.rootId));
  }

  /** Opens a TCP connection on the active root context (proxy_on_new_connection). */
  tcp(): TcpConnection {
    const root = this.requireRoot();
    const connection = new TcpConnection(this, this.newContextId(), root.id);
    this.streams.set(connection.id, connection);
    this.createInVm(connection);
    connection.open();
    return connection;
  }

  /** Ends a stream's life in the VM: proxy_on_done, proxy_on_log, proxy_on_delete; nothing for a stream the VM never
   * heard of. */
  finishStream(context: StreamContext, createdInVm: boolean, duringLog: () => void, afterLog: () => void): void {
    if (!this.streams.has(context.id)) return;
    if (!createdInVm) {
      this.streams.delete(context.id);
      return;
    }
    this.invoke(context.id, "proxy_on_done", () => this.exports.proxy_on_done?.(context.id));
    duringLog();
    try {
      this.invoke(context.id, "proxy_on_log", () => this.exports.proxy_on_log?.(context.id));
    } finally {
      afterLog();
    }
    this.invoke(context.id, "proxy_on_delete", () => this.exports.proxy_on_delete?.(context.id));
    this.streams.delete(context.id);
  }

  /** Calls proxy_on_tick on every root context whose timer is due at `now`. */
  fireTicks(now: number): void {
    for (const root of this.roots.values()) {
      if (root.tickPeriodMs > 0 && root.nextTickAt <= now) {
        root.nextTickAt += root.tickPeriodMs;
        this.invoke(root.id, "proxy_on_tick", () => this.exports.proxy_on_tick?.(root.id));
      }
    }
  }

  nextTick(): number {
    let next = Infinity;
    for (const root of this.roots.values()) if (root.tickPeriodMs > 0) next = Math.min(next, root.nextTickAt);
    return next;
  }

  queueReady(rootId: number, token: number): void {
    if (!this.roots.has(rootId) || this.failed !== null) return;
    this.invoke(rootId, "proxy_on_queue_ready", () => this.exports.proxy_on_queue_ready?.(rootId, token));
  }

  /** Calls proxy_on_foreign_function on the active root context with `args` in the foreign-function buffer. */
  foreignFunction(functionId: number, args: Uint8Array): void {
    const root = this.requireRoot();
    this.foreignArgs = args;
    try {
      this.invoke(root.id, "proxy_on_foreign_function", () => this.exports.proxy_on_foreign_function?.(root.id, functionId, args.length));
    } finally {
      this.foreignArgs = null;
    }
  }

  private requireRoot(): RootContext {
    if (this.activeRoot === null) throw new Error("no plugin configuration was accepted: the filter rejected it in proxy_on_configure");
    return this.activeRoot;
  }

  private current(): StreamContext | undefined {
    return this.streams.get(this.effectiveId);
  }

  private rootOf(contextId: number): RootContext | undefined {
    const root = this.roots.get(contextId);
    if (root !== undefined) return root;
    const stream = this.streams.get(contextId);
    return stream === undefined ? undefined : this.roots.get((stream as HttpStream | TcpConnection).rootId);
  }

  // ------------------------------------------------------------------------------------------- callout delivery

  deliverHttpResponse(call: HttpCall, headers: HeaderPair[], body: Uint8Array, trailers: HeaderPair[]): void {
    if (!this.callouts.delete(call.token) || !this.isAlive(call.contextId)) return;
    this.callResponse = { headers: new Headers(headers), body, trailers: new Headers(trailers) };
    try {
      this.invoke(call.contextId, "proxy_on_http_call_response", () =>
        this.exports.proxy_on_http_call_response?.(call.contextId, call.token, headers.length, body.length, trailers.length));
    } finally {
      this.callResponse = null;
    }
  }

  deliverHttpFailure(call: HttpCall): void {
    if (!this.callouts.delete(call.token) || !this.isAlive(call.contextId)) return;
    this.status = { code: WasmResult.BrokenConnection, message: "reset" };
    try {
      this.invoke(call.contextId, "proxy_on_http_call_response", () => this.exports.proxy_on_http_call_response?.(call.contextId, call.token, 0, 0, 0));
    } finally {
      this.status = { code: 0, message: "" };
    }
  }

  deliverGrpc(callout: GrpcCallout, what: "initial" | "message" | "trailing", pairs: HeaderPair[], message: Uint8Array): void {
    if (!this.callouts.has(callout.token) || !this.isAlive(callout.contextId)) return;
    const { token, contextId } = callout;
    if (what === "initial") {
      this.grpcInitial = new Headers(pairs);
      try {
        this.invoke(contextId, "proxy_on_grpc_receive_initial_metadata", () => this.exports.proxy_on_grpc_receive_initial_metadata?.(contextId, token, pairs.length));
      } finally {
        this.grpcInitial = null;
      }
    } else if (what === "trailing") {
      this.grpcTrailing = new Headers(pairs);
      try {
        this.invoke(contextId, "proxy_on_grpc_receive_trailing_metadata", () => this.exports.proxy_on_grpc_receive_trailing_metadata?.(contextId, token, pairs.length));
      } finally {
        this.grpcTrailing = null;
      }
    } else {
      // A unary call's response is its last callback.
      if (callout.kind === "call") this.callouts.delete(token);
      this.grpcMessage = message;
      try {
        this.invoke(contextId, "proxy_on_grpc_receive", () => this.exports.proxy_on_grpc_receive?.(contextId, token, message.length));
      } finally {
        this.grpcMessage = null;
      }
    }
  }

  deliverGrpcClose(callout: GrpcCallout, status: number, message: string): void {
    if (!this.callouts.delete(callout.token) || !this.isAlive(callout.contextId)) return;
    this.status = { code: status, message };
    try {
      this.invoke(callout.contextId, "proxy_on_grpc_close", () => this.exports.proxy_on_grpc_close?.(callout.contextId, callout.token, status));
    } finally {
      this.status = { code: 0, message: "" };
    }
  }

  private isAlive(contextId: number): boolean {
    return this.roots.has(contextId) || this.streams.has(contextId);
  }

  // ------------------------------------------------------------------------------------------- host functions

  private imports(module: WebAssembly.Module): WebAssembly.Imports {
    const env = this.proxyFunctions();
    const wasi = this.wasiFunctions();
    const provided: Record<string, Record<string, unknown>> = { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
    const missing = WebAssembly.Module.imports(module)
      .filter((i) => provided[i.module]?.[i.name] === undefined)
      .map((i) => `${i.module}.${i.name}`);
    if (missing.length > 0) {
      throw new Error(`the module imports ${missing.join(", ")}, which Envoy does not provide: Envoy would refuse to load it`);
    }
    return provided as WebAssembly.Imports;
  }

  private wasiFunctions(): Record<string, unknown> {
    const m = () => this.memory;
    return {
      fd_write: (fd: number, iovs: number, iovsLength: number, writtenPtr: number): number => {
        if (fd !== 1 && fd !== 2) return WASI_ERRNO_BADF;
        let text = "";
        let written = 0;
        for (let i = 0; i < iovsLength; i++) {
          const ptr = m().readU32(iovs + i * 8);
          const length = m().readU32(iovs + i * 8 + 4);
          text += m().text(ptr, length);
          written += length;
        }
        // Envoy logs a module's stdout at info and its stderr at error, without the trailing newline.
        if (written > 0) this.emulator.log(this.index, this.effectiveId, fd === 1 ? LogLevel.Info : LogLevel.Error, text.replace(/\n$/, ""));
        m().u32(writtenPtr, written);
        return WASI_ERRNO_SUCCESS;
      },
      clock_time_get: (clockId: number, _precision: bigint, timePtr: number): number => {
        if (clockId === 0) m().u64(timePtr, this.emulator.clock.realtimeNanos());
        else if (clockId === 1) m().u64(timePtr, this.emulator.clock.monotonicNanos());
        else return WASI_ERRNO_INVAL;
        return WASI_ERRNO_SUCCESS;
      },
      random_get: (ptr: number, length: number): number => {
        // Envoy serves at most 64 KiB a call (BoringSSL RAND_bytes per call), and answers INVAL beyond.
        if (length > 65536) return WASI_ERRNO_INVAL;
        const bytes = new Uint8Array(length);
        webcrypto.getRandomValues(bytes);
        m().write(ptr, bytes);
        return WASI_ERRNO_SUCCESS;
      },
      environ_sizes_get: (countPtr: number, sizePtr: number): number => {
        m().u32(countPtr, 0);
        m().u32(sizePtr, 0);
        return WASI_ERRNO_SUCCESS;
      },
      environ_get: (): number => WASI_ERRNO_SUCCESS,
      args_sizes_get: (countPtr: number, sizePtr: number): number => {
        m().u32(countPtr, 0);
        m().u32(sizePtr, 0);
        return WASI_ERRNO_SUCCESS;
      },
      args_get: (): number => WASI_ERRNO_SUCCESS,
      // Envoy only notes the call (at trace level) and returns; a guest that expects no return traps right after.
      proc_exit: (code: number): void => {
        this.emulator.log(this.index, this.effectiveId, LogLevel.Trace, `wasi proc_exit(${code})`);
      },
    };
  }

  private proxyFunctions(): Record<string, unknown> {
    const m = () => this.memory;
    const em = this.emulator;
    return {
      // ----- logging, time, timers
      proxy_log: (level: number, ptr: number, size: number): number => {
        if (level < 0 || level > LogLevel.Critical) return WasmResult.BadArgument;
        em.log(this.index, this.effectiveId, level, m().text(ptr, size));
        return WasmResult.Ok;
      },
      proxy_get_log_level: (levelPtr: number): number => {
        m().u32(levelPtr, em.logLevel);
        return WasmResult.Ok;
      },
      proxy_get_current_time_nanoseconds: (timePtr: number): number => {
        m().u64(timePtr, em.clock.realtimeNanos());
        return WasmResult.Ok;
      },
      proxy_set_tick_period_milliseconds: (periodMs: number): number => {
        const root = this.rootOf(this.effectiveId);
        if (root === undefined) return WasmResult.BadArgument;
        root.tickPeriodMs = periodMs >>> 0;
        root.nextTickAt = root.tickPeriodMs > 0 ? em.clock.nowMs + root.tickPeriodMs : Infinity;
        return WasmResult.Ok;
      },

      // ----- context
      proxy_set_effective_context: (contextId: number): number => {
        if (!this.isAlive(contextId)) return WasmResult.BadArgument;
        this.effectiveId = contextId;
        return WasmResult.Ok;
      },
      proxy_done: (): number => (this.roots.has(this.effectiveId) ? WasmResult.Ok : WasmResult.NotFound),

      // ----- buffers
      proxy_get_buffer_status: (type: number, lengthPtr: number, flagsPtr: number): number => {
        const buffer = this.buffer(type);
        if (buffer === null) return WasmResult.NotFound;
        m().u32(lengthPtr, buffer.bytes().length);
        m().u32(flagsPtr, 0);
        return WasmResult.Ok;
      },
      proxy_get_buffer_bytes: (type: number, start: number, length: number, ptrPtr: number, sizePtr: number): number => {
        const buffer = this.buffer(type);
        if (buffer === null) return WasmResult.NotFound;
        const bytes = buffer.bytes();
        const from = start >>> 0;
        let count = length >>> 0;
        if (from + count > bytes.length) count = Math.max(0, bytes.length - from);
        if (count > 0) m().returnBytes(bytes.subarray(from, from + count), ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
      proxy_set_buffer_bytes: (type: number, start: number, length: number, dataPtr: number, dataSize: number): number => {
        const buffer = this.buffer(type);
        if (buffer === null) return WasmResult.NotFound;
        if (buffer.set === undefined) return WasmResult.BadArgument;
        const data = m().bytes(dataPtr, dataSize);
        const current = buffer.bytes();
        const from = start >>> 0;
        const count = length >>> 0;
        // Envoy's Buffer::copyFrom: prepend, replace all, or append; anything else is refused.
        if (from === 0 && count === 0) buffer.set(concatBytes(data, current));
        else if (from === 0 && count >= current.length) buffer.set(data);
        else if (from >= current.length) buffer.set(concatBytes(current, data));
        else return WasmResult.BadArgument;
        return WasmResult.Ok;
      },

      // ----- header maps
      proxy_get_header_map_pairs: (type: number, ptrPtr: number, sizePtr: number): number => {
        const map = this.headerMap(type, false);
        const pairs = map === null || map === undefined ? [] : map.entries();
        if (pairs.length === 0) {
          m().u32(ptrPtr, 0);
          m().u32(sizePtr, 0);
          return WasmResult.Ok;
        }
        m().returnBytes(serializePairs(pairs), ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
      proxy_set_header_map_pairs: (type: number, ptr: number, size: number): number => {
        const map = this.headerMap(type, true);
        if (map === null || map === undefined) return WasmResult.BadArgument;
        let pairs: HeaderPair[];
        try {
          pairs = deserializePairs(m().bytes(ptr, size));
        } catch {
          return WasmResult.BadArgument;
        }
        map.replaceAll(pairs);
        this.headersModified(type);
        return WasmResult.Ok;
      },
      proxy_get_header_map_size: (type: number, sizePtr: number): number => {
        const map = this.headerMap(type, true);
        if (map === null || map === undefined) return WasmResult.BadArgument;
        m().u32(sizePtr, map.byteSize);
        return WasmResult.Ok;
      },
      proxy_get_header_map_value: (type: number, keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number): number => {
        const map = this.headerMap(type, false);
        if (map === undefined) return WasmResult.BadArgument;
        if (map === null) return this.current() !== undefined && this.accessLogPhase() ? WasmResult.NotFound : WasmResult.BadArgument;
        const value = map.get(m().text(keyPtr, keySize));
        if (value === null) return WasmResult.NotFound;
        m().returnBytes(encodeText(value), ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
      proxy_add_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
        const map = this.headerMap(type, true);
        if (map === null || map === undefined) return WasmResult.BadArgument;
        map.add(m().text(keyPtr, keySize), m().text(valuePtr, valueSize));
        this.headersModified(type);
        return WasmResult.Ok;
      },
      proxy_replace_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
        const map = this.headerMap(type, true);
        if (map === null || map === undefined) return WasmResult.BadArgument;
        map.set(m().text(keyPtr, keySize), m().text(valuePtr, valueSize));
        this.headersModified(type);
        return WasmResult.Ok;
      },
      proxy_remove_header_map_value: (type: number, keyPtr: number, keySize: number): number => {
        const map = this.headerMap(type, true);
        if (map === null || map === undefined) return WasmResult.BadArgument;
        map.remove(m().text(keyPtr, keySize));
        this.headersModified(type);
        return WasmResult.Ok;
      },

      // ----- properties
      proxy_get_property: (pathPtr: number, pathSize: number, ptrPtr: number, sizePtr: number): number => {
        const value = this.property(m().text(pathPtr, pathSize));
        if (value === undefined) return WasmResult.NotFound;
        m().returnBytes(value, ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
      proxy_set_property: (pathPtr: number, pathSize: number, valuePtr: number, valueSize: number): number => {
        const stream = this.current();
        if (stream === undefined) return WasmResult.NotFound;
        stream.properties.set(m().text(pathPtr, pathSize), m().bytes(valuePtr, valueSize));
        return WasmResult.Ok;
      },

      // ----- stream control
      proxy_continue_stream: (type: number): number => this.current()?.continueStream(type) ?? WasmResult.NotFound,
      proxy_close_stream: (type: number): number => this.current()?.closeStream(type) ?? WasmResult.NotFound,
      proxy_get_status: (codePtr: number, ptrPtr: number, sizePtr: number): number => {
        m().u32(codePtr, this.status.code);
        m().returnBytes(encodeText(this.status.message), ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
      proxy_send_local_response: (
        status: number, detailsPtr: number, detailsSize: number, bodyPtr: number, bodySize: number,
        headersPtr: number, headersSize: number, grpcStatus: number,
      ): number => {
        const stream = this.current();
        if (stream === undefined) return WasmResult.BadArgument;
        let headers: HeaderPair[];
        try {
          headers = deserializePairs(m().bytes(headersPtr, headersSize));
        } catch {
          return WasmResult.BadArgument;
        }
        return stream.sendLocalResponse(status >>> 0, m().text(detailsPtr, detailsSize), m().bytes(bodyPtr, bodySize), headers, grpcStatus | 0);
      },

      // ----- callouts
      proxy_http_call: (
        clusterPtr: number, clusterSize: number, headersPtr: number, headersSize: number, bodyPtr: number, bodySize: number,
        trailersPtr: number, trailersSize: number, timeoutMs: number, tokenPtr: number,
      ): number => {
        const cluster = m().text(clusterPtr, clusterSize);
        if ((timeoutMs | 0) < 0 || !em.knowsCluster(cluster)) return WasmResult.BadArgument;
        let headers: HeaderPair[];
        let trailers: HeaderPair[];
        try {
          headers = deserializePairs(m().bytes(headersPtr, headersSize)).map(([n, v]): HeaderPair => [n.toLowerCase(), v]);
          trailers = deserializePairs(m().bytes(trailersPtr, trailersSize));
        } catch {
          return WasmResult.BadArgument;
        }
        // Envoy requires :path, :method and :authority (Host) on a callout.
        const names = new Set(headers.map(([n]) => n));
        if (!names.has(":path") || !names.has(":method") || !(names.has(":authority") || names.has("host"))) return WasmResult.BadArgument;
        const body = m().bytes(bodyPtr, bodySize);
        if (body.length > 0) headers = [...headers.filter(([n]) => n !== "content-length"), ["content-length", String(body.length)]];
        const root = this.rootOf(this.effectiveId);
        if (root === undefined) return WasmResult.BadArgument;
        const token = (this.nextCallout[0] += 4);
        const timeout = timeoutMs >>> 0;
        const deadline = timeout > 0 ? em.clock.nowMs + timeout : Infinity;
        const call = new HttpCall(em.delivery(this), token, this.index, root.id, this.effectiveId, cluster, headers, body, trailers, timeout, deadline);
        this.callouts.set(token, call);
        em.httpCallMade(call);
        m().u32(tokenPtr, token);
        return WasmResult.Ok;
      },
      proxy_grpc_call: (
        upstreamPtr: number, upstreamSize: number, servicePtr: number, serviceSize: number, methodPtr: number, methodSize: number,
        metadataPtr: number, metadataSize: number, messagePtr: number, messageSize: number, timeoutMs: number, tokenPtr: number,
      ): number => this.openGrpc("call", m().bytes(upstreamPtr, upstreamSize), m().text(servicePtr, serviceSize), m().text(methodPtr, methodSize),
        m().bytes(metadataPtr, metadataSize), m().bytes(messagePtr, messageSize), timeoutMs >>> 0, tokenPtr),
      proxy_grpc_stream: (
        upstreamPtr: number, upstreamSize: number, servicePtr: number, serviceSize: number, methodPtr: number, methodSize: number,
        metadataPtr: number, metadataSize: number, tokenPtr: number,
      ): number => this.openGrpc("stream", m().bytes(upstreamPtr, upstreamSize), m().text(servicePtr, serviceSize), m().text(methodPtr, methodSize),
        m().bytes(metadataPtr, metadataSize), new Uint8Array(0), 0, tokenPtr),
      proxy_grpc_send: (token: number, messagePtr: number, messageSize: number, endStream: number): number => {
        if ((token & 3) !== 2) return WasmResult.BadArgument;
        const stream = this.callouts.get(token);
        if (!(stream instanceof GrpcCallout)) return WasmResult.NotFound;
        stream.sent.push(m().bytes(messagePtr, messageSize));
        if (endStream !== 0) stream.localClosed = true;
        em.grpcStreamMessage(stream);
        return WasmResult.Ok;
      },
      proxy_grpc_cancel: (token: number): number => {
        if ((token & 3) === 0) return WasmResult.BadArgument;
        const callout = this.callouts.get(token);
        if (!(callout instanceof GrpcCallout)) return WasmResult.NotFound;
        callout.cancelled = true;
        this.callouts.delete(token);
        return WasmResult.Ok;
      },
      proxy_grpc_close: (token: number): number => {
        if ((token & 3) === 0) return WasmResult.BadArgument;
        const callout = this.callouts.get(token);
        if (!(callout instanceof GrpcCallout)) return WasmResult.NotFound;
        callout.localClosed = true;
        // Closing a unary call cancels it; a stream stays open for the remote side's close.
        if (callout.kind === "call") {
          callout.cancelled = true;
          this.callouts.delete(token);
        }
        return WasmResult.Ok;
      },

      // ----- shared data and queues
      proxy_get_shared_data: (keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number, casPtr: number): number => {
        const entry = em.sharedData.get(m().text(keyPtr, keySize));
        if (entry === undefined) return WasmResult.NotFound;
        m().returnBytes(entry.value, ptrPtr, sizePtr);
        m().u32(casPtr, entry.cas);
        return WasmResult.Ok;
      },
      proxy_set_shared_data: (keyPtr: number, keySize: number, valuePtr: number, valueSize: number, cas: number): number =>
        em.sharedData.set(m().text(keyPtr, keySize), m().bytes(valuePtr, valueSize), cas >>> 0),
      proxy_register_shared_queue: (namePtr: number, nameSize: number, tokenPtr: number): number => {
        const root = this.rootOf(this.effectiveId);
        if (root === undefined) return WasmResult.BadArgument;
        m().u32(tokenPtr, em.queues.register(m().text(namePtr, nameSize), this.index, root.id));
        return WasmResult.Ok;
      },
      proxy_resolve_shared_queue: (vmIdPtr: number, vmIdSize: number, namePtr: number, nameSize: number, tokenPtr: number): number => {
        if (m().text(vmIdPtr, vmIdSize) !== em.vmId) return WasmResult.NotFound;
        const token = em.queues.resolve(m().text(namePtr, nameSize));
        if (token === undefined) return WasmResult.NotFound;
        m().u32(tokenPtr, token);
        return WasmResult.Ok;
      },
      proxy_enqueue_shared_queue: (token: number, valuePtr: number, valueSize: number): number =>
        em.queues.enqueueByToken(token, m().bytes(valuePtr, valueSize)),
      proxy_dequeue_shared_queue: (token: number, ptrPtr: number, sizePtr: number): number => {
        const { result, value } = em.queues.dequeueByToken(token);
        if (value !== undefined) m().returnBytes(value, ptrPtr, sizePtr);
        return result;
      },

      // ----- metrics (Envoy: ids carry the type in their low two bits; counters only go up)
      proxy_define_metric: (type: number, namePtr: number, nameSize: number, idPtr: number): number => {
        const metric = em.metrics.define(type, m().text(namePtr, nameSize));
        if (metric === undefined) return WasmResult.BadArgument;
        const id = (this.nextMetricId[type] += 4);
        this.metricIds.set(id, metric);
        m().u32(idPtr, id);
        return WasmResult.Ok;
      },
      proxy_increment_metric: (id: number, offset: bigint): number => {
        const type = id & 3;
        const metric = this.metricIds.get(id >>> 0);
        if (type === 0) {
          if (metric === undefined) return WasmResult.NotFound;
          if (offset <= 0n) return WasmResult.BadArgument;
          metric.value += offset;
          return WasmResult.Ok;
        }
        if (type === 1) {
          if (metric === undefined) return WasmResult.NotFound;
          metric.value = BigInt.asUintN(64, metric.value + offset);
          return WasmResult.Ok;
        }
        return WasmResult.BadArgument;
      },
      proxy_record_metric: (id: number, value: bigint): number => {
        const metric = this.metricIds.get(id >>> 0);
        if (metric === undefined) return WasmResult.NotFound;
        const unsigned = BigInt.asUintN(64, value);
        if (metric.kind === "counter") metric.value += unsigned;
        else if (metric.kind === "gauge") metric.value = unsigned;
        else metric.samples.push(unsigned);
        return WasmResult.Ok;
      },
      proxy_get_metric: (id: number, valuePtr: number): number => {
        const type = id & 3;
        if (type === 2) return WasmResult.BadArgument;
        const metric = this.metricIds.get(id >>> 0);
        if (metric === undefined) return WasmResult.NotFound;
        m().u64(valuePtr, metric.value);
        return WasmResult.Ok;
      },

      // ----- foreign functions
      proxy_call_foreign_function: (namePtr: number, nameSize: number, argsPtr: number, argsSize: number, ptrPtr: number, sizePtr: number): number => {
        const name = m().text(namePtr, nameSize);
        const args = m().bytes(argsPtr, argsSize);
        if (name === "clear_route_cache") {
          const stream = this.current();
          if (stream === undefined) return WasmResult.NotFound;
          stream.clearRouteCache();
          return WasmResult.Ok;
        }
        const handler = em.foreignFunctions.get(name);
        if (handler === undefined) return WasmResult.NotFound;
        const result = handler(args, { worker: this.index, contextId: this.effectiveId });
        m().returnBytes(typeof result === "string" ? encodeText(result) : result ?? new Uint8Array(0), ptrPtr, sizePtr);
        return WasmResult.Ok;
      },
    };
  }

  private openGrpc(
    kind: "call" | "stream", upstream: Uint8Array, service: string, method: string, metadataBytes: Uint8Array,
    message: Uint8Array, timeoutMs: number, tokenPtr: number,
  ): number {
    const cluster = grpcCluster(upstream);
    if (!this.emulator.knowsCluster(cluster)) return WasmResult.ParseFailure;
    let metadata: HeaderPair[];
    try {
      metadata = deserializePairs(metadataBytes);
    } catch {
      return WasmResult.BadArgument;
    }
    const root = this.rootOf(this.effectiveId);
    if (root === undefined) return WasmResult.BadArgument;
    const slot = kind === "call" ? 1 : 2;
    const token = (this.nextCallout[slot] += 4);
    const callout = new GrpcCallout(this.emulator.delivery(this), kind, token, this.index, root.id, this.effectiveId, cluster, service, method, metadata, message, timeoutMs);
    this.callouts.set(token, callout);
    this.emulator.grpcOpened(callout);
    this.memory.u32(tokenPtr, token);
    return WasmResult.Ok;
  }

  private accessLogPhase(): boolean {
    const stream = this.current();
    return stream instanceof HttpStream && stream.inAccessLog;
  }

  private headerMap(type: number, mutable: boolean): Headers | null | undefined {
    switch (type) {
      case MapType.HttpCallResponseHeaders:
        return mutable ? null : this.callResponse?.headers ?? null;
      case MapType.HttpCallResponseTrailers:
        return mutable ? null : this.callResponse?.trailers ?? null;
      case MapType.GrpcInitialMetadata:
        return mutable ? null : this.grpcInitial;
      case MapType.GrpcTrailingMetadata:
        return mutable ? null : this.grpcTrailing;
      default: {
        const stream = this.current();
        if (stream === undefined) return null;
        return stream.headerMap(type, mutable);
      }
    }
  }

  private headersModified(type: number): void {
    if (type === MapType.RequestHeaders) this.current()?.clearRouteCache();
  }

  private buffer(type: number): BufferSlot | null {
    switch (type) {
      case BufferType.VmConfiguration:
        return constant(this.emulator.vmConfig);
      case BufferType.PluginConfiguration:
        return this.pluginConfigBuffer === null ? null : constant(this.pluginConfigBuffer);
      case BufferType.ForeignFunctionArguments:
        return this.foreignArgs === null ? null : constant(this.foreignArgs);
      case BufferType.HttpCallResponseBody:
        return this.callResponse === null ? null : constant(this.callResponse.body);
      case BufferType.GrpcReceiveBuffer:
        return this.grpcMessage === null ? null : constant(this.grpcMessage);
      default:
        return this.current()?.buffer(type) ?? null;
    }
  }

  private property(key: string): Uint8Array | undefined {
    const stream = this.current();
    const fromStream = stream?.properties.get(key) ?? stream?.derivedProperty(key);
    if (fromStream !== undefined) return fromStream;
    return this.emulator.property(key);
  }
}

function constant(bytes: Uint8Array): BufferSlot {
  return { bytes: () => bytes };
}

/** The cluster of a gRPC callout's upstream argument: a serialised envoy.config.core.v3.GrpcService whose envoy_grpc
 * (field 1) has cluster_name (field 1), or, as Envoy falls back to when that does not parse, the plain cluster name. */
export function grpcCluster(upstream: Uint8Array): string {
  const nested = lengthDelimitedField(upstream, 1);
  const name = nested === undefined ? undefined : lengthDelimitedField(nested, 1);
  return name === undefined ? decodeText(upstream) : decodeText(name);
}

function lengthDelimitedField(bytes: Uint8Array, field: number): Uint8Array | undefined {
  let at = 0;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (at >= bytes.length) return undefined;
      const byte = bytes[at++];
      value |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value >>> 0;
    }
    return undefined;
  };
  while (at < bytes.length) {
    const key = varint();
    if (key === undefined || (key & 7) !== 2) return undefined;
    const length = varint();
    if (length === undefined || at + length > bytes.length) return undefined;
    if (key >>> 3 === field) return bytes.subarray(at, at + length);
    at += length;
  }
  return undefined;
}
