// The host emulator: loads a proxy-wasm module into one VM per worker (as Envoy does with --concurrency N), with
// process-wide shared data, queues and metrics, a manual clock, and callouts the test answers. See README.md.
import { readFile } from "node:fs/promises";
import {
  LOG_LEVEL_NAMES, LogLevel, type LogLevelName, type PropertyValue, encodeProperty, encodeText,
  propertyKey,
} from "./abi.js";
import type { CalloutDelivery, GrpcCallout, HttpCall, HttpCallAnswer } from "./callouts.js";
import type { CalloutReceiver, ForeignFunction, ProcessHost } from "./host.js";
import type { HttpStream } from "./http.js";
import { type LogEntry, Metrics, SharedData, SharedQueues, levelName } from "./shared.js";
import type { TcpConnection } from "./tcp.js";
import { Worker } from "./worker.js";

export interface EmulatorOptions {
  /** Plugin configuration (Envoy's `configuration`); an object is sent as JSON. Default: empty. */
  pluginConfig?: string | object;
  /** VM configuration (Envoy's `vm_config.configuration`). Default: empty. */
  vmConfig?: string;
  /** Worker threads, one VM each (Envoy's --concurrency). Default 1. */
  workers?: number;
  /** Envoy's `root_id`, readable as the property plugin_root_id. Default "". */
  rootId?: string;
  /** Envoy's `vm_id`: the namespace of shared data and queues. Default "". */
  vmId?: string;
  /** Envoy's plugin `name`, readable as the property plugin_name. Default "". */
  pluginName?: string;
  /** What proxy_get_log_level reports, and the least level logged. Default "trace" (everything). */
  logLevel?: LogLevelName;
  /** Properties every context can read, by dotted path: { "node.id": "sidecar~1", "xds.cluster_name": "web" }. */
  properties?: Record<string, PropertyValue>;
  /** Clusters a callout may target; others get BadArgument as in Envoy. Default: any cluster. */
  clusters?: string[];
  /** Envoy's `allow_on_headers_stop_iteration`: a Pause from a headers callback stops only the headers. */
  allowOnHeadersStopIteration?: boolean;
  /** Wall-clock start of the manual clock. Default 2026-01-01T00:00:00Z. */
  startTime?: Date;
}

/** A manual clock: time moves only with Emulator.advance. */
export class ManualClock {
  nowMs: number;
  private readonly startMs: number;

  constructor(start: Date) {
    this.startMs = start.getTime();
    this.nowMs = this.startMs;
  }

  realtimeNanos(): bigint {
    return BigInt(this.nowMs) * 1_000_000n;
  }

  monotonicNanos(): bigint {
    return BigInt(this.nowMs - this.startMs) * 1_000_000n + 1_000_000_000n;
  }
}

export type HttpCallHandler = (call: HttpCall) => HttpCallAnswer | void;
export type GrpcHandler = (callout: GrpcCallout) => void;
export type { ForeignFunction };

export class Emulator implements ProcessHost {
  readonly workers: Worker[] = [];
  readonly clock: ManualClock;
  readonly sharedData = new SharedData();
  readonly queues = new SharedQueues();
  readonly metrics = new Metrics();
  readonly logs: LogEntry[] = [];
  /** Every HTTP callout made, in order. */
  readonly httpCalls: HttpCall[] = [];
  /** Every gRPC call and stream opened, in order. */
  readonly grpcCallouts: GrpcCallout[] = [];
  readonly foreignFunctions = new Map<string, ForeignFunction>();
  readonly vmId: string;
  readonly vmConfig: Uint8Array;
  readonly logLevel: LogLevel;
  readonly allowOnHeadersStopIteration: boolean;
  /** The plugin configuration in force (the last one the filter accepted). */
  pluginConfig: string;
  /** Whether the filter accepted a configuration; false only when the very first one was rejected. */
  configAccepted = false;

  private readonly properties = new Map<string, Uint8Array>();
  private readonly clusters: Set<string> | null;
  private httpCallHandler: HttpCallHandler | null = null;
  private grpcCallHandler: GrpcHandler | null = null;
  private grpcStreamHandler: GrpcHandler | null = null;
  private grpcMessageHandler: ((stream: GrpcCallout, message: Uint8Array) => void) | null = null;
  private depth = 0;
  private readonly pending: (() => void)[] = [];

  private constructor(options: EmulatorOptions) {
    this.clock = new ManualClock(options.startTime ?? new Date(Date.UTC(2026, 0, 1)));
    this.vmId = options.vmId ?? "";
    this.vmConfig = encodeText(options.vmConfig ?? "");
    this.logLevel = LOG_LEVEL_NAMES.indexOf(options.logLevel ?? "trace");
    this.allowOnHeadersStopIteration = options.allowOnHeadersStopIteration ?? false;
    this.pluginConfig = configText(options.pluginConfig);
    this.clusters = options.clusters === undefined ? null : new Set(options.clusters);
    this.properties.set("plugin_name", encodeText(options.pluginName ?? ""));
    this.properties.set("plugin_root_id", encodeText(options.rootId ?? ""));
    this.properties.set("plugin_vm_id", encodeText(this.vmId));
    for (const [path, value] of Object.entries(options.properties ?? {})) this.setProperty(path.split("."), value);
    this.queues.notify = (worker, contextId, token) => this.schedule(() => this.workers[worker].queueReady(contextId, token));
  }

  /** Loads a module (a path or its bytes), starts one VM per worker and configures the plugin. Throws when the module
   * would not load in Envoy (an import Envoy lacks, no ABI version export) or proxy_on_vm_start returns false. A
   * rejected plugin configuration does not throw: see `configAccepted`. */
  static async load(wasm: string | Uint8Array, options: EmulatorOptions = {}): Promise<Emulator> {
    const bytes = typeof wasm === "string" ? await readFile(wasm) : wasm;
    const module = await WebAssembly.compile(new Uint8Array(bytes));
    const emulator = new Emulator(options);
    for (let i = 0; i < (options.workers ?? 1); i++) emulator.workers.push(new Worker(emulator, i, module));
    for (const worker of emulator.workers) {
      const { root, vmStarted } = worker.startRoot(emulator.vmConfig, emulator.pluginConfig);
      if (!vmStarted) throw new Error(`proxy_on_vm_start returned false on worker ${worker.index}: Envoy would fail to start the VM`);
      if (root === null) break;
      worker.activate(root);
    }
    emulator.configAccepted = emulator.workers.every((w) => w.activeRoot !== null);
    return emulator;
  }

  worker(index: number): Worker {
    const worker = this.workers[index];
    if (worker === undefined) throw new Error(`there is no worker ${index}: the emulator runs ${this.workers.length}`);
    return worker;
  }

  /** Opens an HTTP stream on worker 0. */
  http(): HttpStream {
    return this.worker(0).http();
  }

  /** Opens a TCP connection on worker 0. */
  tcp(): TcpConnection {
    return this.worker(0).tcp();
  }

  /** Pushes a new plugin configuration, as an xDS update does: every worker creates a new root context and calls
   * proxy_on_configure. Returns whether the filter accepted it; when it did not, the previous configuration stays in
   * force on every worker, as in Envoy. */
  configure(pluginConfig: string | object): boolean {
    const text = configText(pluginConfig);
    const started = this.workers.map((w) => w.startRoot(this.vmConfig, text).root);
    if (started.some((root) => root === null)) {
      started.forEach((root, i) => root !== null && this.workers[i].teardownRoot(root));
      return false;
    }
    started.forEach((root, i) => this.workers[i].activate(root!));
    this.pluginConfig = text;
    this.configAccepted = true;
    return true;
  }

  /** Moves the manual clock forward. In time order, fires proxy_on_tick on every root context whose period elapses
   * and times out unanswered HTTP calls whose timeout passes (a 504, as Envoy answers). */
  advance(ms: number): void {
    const target = this.clock.nowMs + ms;
    for (;;) {
      const pending = this.pendingHttpCalls;
      const next = Math.min(...this.workers.map((w) => w.nextTick()), ...pending.map((c) => c.deadline));
      if (next > target) break;
      this.clock.nowMs = next;
      for (const call of pending) if (call.deadline <= next && !call.answered) call.timeOut();
      for (const worker of this.workers) worker.fireTicks(next);
    }
    this.clock.nowMs = target;
  }

  /** Sets a property by path, e.g. (["upstream", "address"], "10.0.0.1:8080"): strings are raw UTF-8, integers 8
   * little-endian bytes, as Envoy encodes them. A stream's own properties (HttpStream.setProperty) take precedence. */
  setProperty(path: readonly string[], value: PropertyValue): void {
    this.properties.set(propertyKey(path), encodeProperty(value));
  }

  property(key: string): Uint8Array | undefined {
    return this.properties.get(key);
  }

  // ------------------------------------------------------------------------------------------- observing

  /** Log messages, optionally only those at `level`. */
  logMessages(level?: LogLevelName): string[] {
    return this.logs.filter((l) => level === undefined || l.level === level).map((l) => l.message);
  }

  /** A counter's or gauge's value by name (as in /stats), or undefined when the filter never defined it. */
  metric(name: string): number | undefined {
    return this.metrics.get(name);
  }

  /** The values recorded in a histogram. */
  histogram(name: string): number[] {
    return this.metrics.samples(name);
  }

  /** HTTP callouts not answered yet. */
  get pendingHttpCalls(): HttpCall[] {
    return this.httpCalls.filter((c) => !c.answered);
  }

  // ------------------------------------------------------------------------------------------- answering callouts

  /** Answers every HTTP callout: return a response, call `call.fail()`, or return nothing to answer later with
   * `call.respond(...)`. Answers reach the filter after the guest call that made the callout returns. */
  onHttpCall(handler: HttpCallHandler): void {
    this.httpCallHandler = handler;
  }

  /** Handles unary gRPC calls: answer with `callout.answer({ status, message })`, or later. */
  onGrpcCall(handler: GrpcHandler): void {
    this.grpcCallHandler = handler;
  }

  /** Handles new gRPC streams, and (optionally) each message the filter sends on one. */
  onGrpcStream(opened: GrpcHandler, message?: (stream: GrpcCallout, message: Uint8Array) => void): void {
    this.grpcStreamHandler = opened;
    this.grpcMessageHandler = message ?? null;
  }

  /** Registers a host foreign function the filter may call with proxy_call_foreign_function. Envoy's
   * `clear_route_cache` is built in (see HttpStream.routeCacheCleared). */
  registerForeignFunction(name: string, fn: ForeignFunction): void {
    this.foreignFunctions.set(name, fn);
  }

  // ------------------------------------------------------------------------------------------- host internals

  /** Runs `fn` (a guest call) and, once the outermost call returns, Envoy's "after VM call" actions: continues,
   * local responses, callout answers, queue notifications. */
  run<T>(fn: () => T): T {
    this.depth++;
    let failed = true;
    try {
      const result = fn();
      failed = false;
      return result;
    } finally {
      this.depth--;
      if (failed) {
        if (this.depth === 0) this.pending.length = 0;
      } else if (this.depth === 0) {
        while (this.pending.length > 0) this.pending.shift()!();
      }
    }
  }

  defer(action: () => void): void {
    this.pending.push(action);
  }

  /** Runs `action` now when no guest call is running, else after it. */
  private schedule(action: () => void): void {
    if (this.depth > 0) this.defer(action);
    else this.run(action);
  }

  log(worker: number, contextId: number, level: number, message: string): void {
    if (level < this.logLevel) return;
    this.logs.push({ level: levelName(level), message, worker, contextId });
  }

  foreignFunction(name: string): ForeignFunction | undefined {
    return this.foreignFunctions.get(name);
  }

  knowsCluster(cluster: string): boolean {
    return this.clusters === null || this.clusters.has(cluster);
  }

  httpCallMade(call: HttpCall): void {
    this.httpCalls.push(call);
    const handler = this.httpCallHandler;
    if (handler === null) return;
    this.defer(() => {
      const answer = handler(call);
      if (answer !== undefined && !call.answered) call.respond(answer);
    });
  }

  grpcOpened(callout: GrpcCallout): void {
    this.grpcCallouts.push(callout);
    const handler = callout.kind === "call" ? this.grpcCallHandler : this.grpcStreamHandler;
    if (handler !== null) this.defer(() => handler(callout));
  }

  grpcStreamMessage(stream: GrpcCallout): void {
    const handler = this.grpcMessageHandler;
    const message = stream.sent.at(-1)!;
    if (handler !== null) this.defer(() => handler(stream, message));
  }

  delivery(worker: CalloutReceiver): CalloutDelivery {
    return {
      httpResponse: (call, headers, body, trailers) => this.schedule(() => worker.deliverHttpResponse(call, headers, body, trailers)),
      httpFailure: (call) => this.schedule(() => worker.deliverHttpFailure(call)),
      grpcInitialMetadata: (callout, metadata) => this.schedule(() => worker.deliverGrpc(callout, "initial", metadata, new Uint8Array(0))),
      grpcMessage: (callout, message) => this.schedule(() => worker.deliverGrpc(callout, "message", [], message)),
      grpcTrailingMetadata: (callout, metadata) => this.schedule(() => worker.deliverGrpc(callout, "trailing", metadata, new Uint8Array(0))),
      grpcClose: (callout, status, message) => this.schedule(() => worker.deliverGrpcClose(callout, status, message)),
    };
  }
}

function configText(config: string | object | undefined): string {
  if (config === undefined) return "";
  return typeof config === "string" ? config : JSON.stringify(config);
}
