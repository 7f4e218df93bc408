// One worker thread's VM: an instance of the module with Envoy's host functions (host-*.ts), its root contexts, the
// streams and connections opened on it, and the delivery of callout answers. Lifecycle semantics follow Envoy's
// source/extensions/common/wasm/context.cc and proxy-wasm-cpp-host's src/context.cc.
import { type HeaderPair, WasmResult, encodeText } from "./abi.js";
import { CalloutTable, type GrpcCallout, type HttpCall } from "./callouts.js";
import { ABI_VERSION_EXPORTS, type GuestExports, GuestTrap, Memory } from "./guest.js";
import { Headers } from "./headers.js";
import type { CallState, CalloutReceiver, ProcessHost, RootState, StreamContext, StreamHost, Vm } from "./host.js";
import { calloutFunctions } from "./host-callouts.js";
import { processFunctions } from "./host-process.js";
import { streamFunctions } from "./host-streams.js";
import { wasiFunctions } from "./host-wasi.js";
import { HttpStream } from "./http.js";
import { TcpConnection } from "./tcp.js";

export type { RootState as RootContext } from "./host.js";

export class Worker implements Vm, StreamHost, CalloutReceiver {
  readonly exports: GuestExports;
  readonly memory: Memory;
  readonly call: CallState = {
    pluginConfig: null, foreignArgs: null, callResponse: null, grpcInitial: null, grpcTrailing: null, grpcMessage: null,
    status: { code: 0, message: "" },
  };
  readonly callouts = new CalloutTable();
  /** The root context new streams attach to: the one whose configuration was accepted last. */
  activeRoot: RootState | null = null;
  /** The context host calls act for: the context of the current callback, or one set by proxy_set_effective_context. */
  effectiveId = 0;
  private nextContextId = 1;
  private readonly roots = new Map<number, RootState>();
  private readonly streams = new Map<number, StreamContext>();
  private failed: Error | null = null;

  constructor(readonly process: ProcessHost, readonly index: number, module: WebAssembly.Module) {
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

  get allowOnHeadersStopIteration(): boolean {
    return this.process.allowOnHeadersStopIteration;
  }

  // ------------------------------------------------------------------------------------------- driving the guest

  /** Calls into the guest for `contextId`, runs Envoy's after-call actions once the outermost call returns, and turns
   * a trap into a GuestTrap. */
  invoke<T>(contextId: number, label: string, fn: () => T): T {
    if (this.failed !== null) throw new Error(`worker ${this.index} failed earlier: ${this.failed.message}`);
    return this.process.run(() => {
      const saved = this.effectiveId;
      this.effectiveId = contextId;
      try {
        return fn();
      } catch (error) {
        if (error instanceof GuestTrap) throw error;
        const lastCritical = this.process.logs.filter((l) => l.worker === this.index && l.level === "critical").at(-1)?.message;
        this.failed = new GuestTrap(label, error, lastCritical);
        throw this.failed;
      } finally {
        this.effectiveId = saved;
      }
    });
  }

  defer(action: () => void): void {
    this.process.defer(action);
  }

  delivery() {
    return this.process.delivery(this);
  }

  /** Creates a root context and starts it: proxy_on_context_create, proxy_on_vm_start, proxy_on_configure. Returns
   * the root when both accepted, null otherwise (the root is then torn down and the previous one stays). */
  startRoot(vmConfig: Uint8Array, pluginConfig: string): { root: RootState | null; vmStarted: boolean } {
    const root: RootState = { id: this.nextContextId++, tickPeriodMs: 0, nextTickAt: Infinity };
    this.roots.set(root.id, root);
    const plugin = encodeText(pluginConfig);
    this.invoke(root.id, "proxy_on_context_create", () => this.exports.proxy_on_context_create?.(root.id, 0));
    this.call.pluginConfig = plugin;
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
      this.call.pluginConfig = null;
    }
    return { root, vmStarted: true };
  }

  /** Makes `root` the one new streams use, and retires the previous one as Envoy does when a plugin is replaced. */
  activate(root: RootState): void {
    const previous = this.activeRoot;
    this.activeRoot = root;
    if (previous !== null && previous !== root) this.teardownRoot(previous);
  }

  teardownRoot(root: RootState): void {
    if (!this.roots.has(root.id)) return;
    this.invoke(root.id, "proxy_on_done", () => this.exports.proxy_on_done?.(root.id));
    this.invoke(root.id, "proxy_on_delete", () => this.exports.proxy_on_delete?.(root.id));
    this.roots.delete(root.id);
  }

  /** Opens an HTTP stream on the active root context. As in Envoy, the VM hears of it (proxy_on_context_create) with
   * its first callback, the request headers: Envoy's decodeHeaders calls ContextBase::onCreate first. */
  http(): HttpStream {
    if (this.failed !== null) throw new Error(`worker ${this.index} failed earlier: ${this.failed.message}`);
    const stream = new HttpStream(this, this.nextContextId++, this.requireRoot().id);
    this.streams.set(stream.id, stream);
    return stream;
  }

  /** Opens a TCP connection on the active root context: proxy_on_context_create, proxy_on_new_connection. */
  tcp(): TcpConnection {
    const connection = new TcpConnection(this, this.nextContextId++, this.requireRoot().id);
    this.streams.set(connection.id, connection);
    this.createInVm(connection);
    connection.open();
    return connection;
  }

  createInVm(context: StreamContext): void {
    this.invoke(context.id, "proxy_on_context_create", () => this.exports.proxy_on_context_create?.(context.id, context.rootId));
  }

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
    this.call.foreignArgs = args;
    try {
      this.invoke(root.id, "proxy_on_foreign_function", () => this.exports.proxy_on_foreign_function?.(root.id, functionId, args.length));
    } finally {
      this.call.foreignArgs = null;
    }
  }

  private requireRoot(): RootState {
    if (this.activeRoot === null) throw new Error("no plugin configuration was accepted: the filter rejected it in proxy_on_configure");
    return this.activeRoot;
  }

  // ------------------------------------------------------------------------------------------- contexts, for the host functions

  current(): StreamContext | undefined {
    return this.streams.get(this.effectiveId);
  }

  rootOf(contextId: number): RootState | undefined {
    const root = this.roots.get(contextId);
    if (root !== undefined) return root;
    const stream = this.streams.get(contextId);
    return stream === undefined ? undefined : this.roots.get(stream.rootId);
  }

  isRoot(contextId: number): boolean {
    return this.roots.has(contextId);
  }

  isAlive(contextId: number): boolean {
    return this.roots.has(contextId) || this.streams.has(contextId);
  }

  // ------------------------------------------------------------------------------------------- callout delivery

  deliverHttpResponse(call: HttpCall, headers: HeaderPair[], body: Uint8Array, trailers: HeaderPair[]): void {
    if (!this.callouts.take(call.token) || !this.isAlive(call.contextId)) return;
    this.call.callResponse = { headers: new Headers(headers), body, trailers: new Headers(trailers) };
    try {
      this.invoke(call.contextId, "proxy_on_http_call_response", () =>
        this.exports.proxy_on_http_call_response?.(call.contextId, call.token, headers.length, body.length, trailers.length));
    } finally {
      this.call.callResponse = null;
    }
  }

  deliverHttpFailure(call: HttpCall): void {
    if (!this.callouts.take(call.token) || !this.isAlive(call.contextId)) return;
    this.withStatus(WasmResult.BrokenConnection, "reset", () =>
      this.invoke(call.contextId, "proxy_on_http_call_response", () => this.exports.proxy_on_http_call_response?.(call.contextId, call.token, 0, 0, 0)));
  }

  deliverGrpc(callout: GrpcCallout, what: "initial" | "message" | "trailing", pairs: HeaderPair[], message: Uint8Array): void {
    if (!this.callouts.has(callout.token) || !this.isAlive(callout.contextId)) return;
    const { token, contextId } = callout;
    if (what === "initial") {
      this.call.grpcInitial = new Headers(pairs);
      try {
        this.invoke(contextId, "proxy_on_grpc_receive_initial_metadata", () => this.exports.proxy_on_grpc_receive_initial_metadata?.(contextId, token, pairs.length));
      } finally {
        this.call.grpcInitial = null;
      }
    } else if (what === "trailing") {
      this.call.grpcTrailing = new Headers(pairs);
      try {
        this.invoke(contextId, "proxy_on_grpc_receive_trailing_metadata", () => this.exports.proxy_on_grpc_receive_trailing_metadata?.(contextId, token, pairs.length));
      } finally {
        this.call.grpcTrailing = null;
      }
    } else {
      // A unary call's response is its last callback.
      if (callout.kind === "call") this.callouts.take(token);
      this.call.grpcMessage = message;
      try {
        this.invoke(contextId, "proxy_on_grpc_receive", () => this.exports.proxy_on_grpc_receive?.(contextId, token, message.length));
      } finally {
        this.call.grpcMessage = null;
      }
    }
  }

  deliverGrpcClose(callout: GrpcCallout, status: number, message: string): void {
    if (!this.callouts.take(callout.token) || !this.isAlive(callout.contextId)) return;
    this.withStatus(status, message, () =>
      this.invoke(callout.contextId, "proxy_on_grpc_close", () => this.exports.proxy_on_grpc_close?.(callout.contextId, callout.token, status)));
  }

  /** Runs `fn` with what proxy_get_status reports set to `code` and `message`. */
  private withStatus(code: number, message: string, fn: () => void): void {
    this.call.status = { code, message };
    try {
      fn();
    } finally {
      this.call.status = { code: 0, message: "" };
    }
  }

  // ------------------------------------------------------------------------------------------- linking

  /** Envoy's host functions, refusing (as Envoy does) a module that imports anything else. */
  private imports(module: WebAssembly.Module): WebAssembly.Imports {
    const env = { ...processFunctions(this), ...streamFunctions(this), ...calloutFunctions(this) };
    const wasi = wasiFunctions(this);
    const provided: Record<string, Record<string, unknown>> = { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
    const missing = WebAssembly.Module.imports(module)
      .filter((i) => provided[i.module]?.[i.name] === undefined)
      .map((i) => `${i.module}.${i.name}`);
    if (missing.length > 0) {
      throw new Error(`the module imports ${missing.join(", ")}, which Envoy does not provide: Envoy would refuse to load it`);
    }
    return provided as WebAssembly.Imports;
  }
}
