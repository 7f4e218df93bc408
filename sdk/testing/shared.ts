// What Envoy keeps process-wide, across worker VMs: shared data (per vm_id, with CAS), shared queues, metrics by name,
// and the log. Semantics follow proxy-wasm-cpp-host (src/shared_data.cc, src/shared_queue.cc) and Envoy's
// source/extensions/common/wasm/context.cc.
import { LOG_LEVEL_NAMES, type LogLevelName, MetricType, WasmResult, decodeText, toBytes } from "./abi.js";

export interface SharedValue {
  value: Uint8Array;
  /** The value as UTF-8 text. */
  text: string;
  cas: number;
}

export class SharedData {
  private readonly entries = new Map<string, { value: Uint8Array; cas: number }>();
  private nextCas = 1;

  /** The value under `key` with its CAS, or undefined (the guest gets NOT_FOUND). */
  get(key: string): SharedValue | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    return { value: entry.value, text: decodeText(entry.value), cas: entry.cas };
  }

  /** Stores `value`. cas 0 writes unconditionally; a cas that is not the key's current one gives CAS_MISMATCH (a
   * missing key is written whatever the cas, as in proxy-wasm-cpp-host). */
  set(key: string, value: string | Uint8Array, cas = 0): WasmResult {
    const existing = this.entries.get(key);
    if (existing !== undefined && cas !== 0 && cas !== existing.cas) return WasmResult.CasMismatch;
    this.entries.set(key, { value: toBytes(value).slice(), cas: this.takeCas() });
    return WasmResult.Ok;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  private takeCas(): number {
    const cas = this.nextCas;
    this.nextCas = this.nextCas >= 0xffffffff ? 1 : this.nextCas + 1;
    return cas;
  }
}

interface Queue {
  token: number;
  name: string;
  items: Uint8Array[];
  /** The worker and root context that registered it first: they get proxy_on_queue_ready. */
  owner: { worker: number; contextId: number } | null;
}

export class SharedQueues {
  private readonly byName = new Map<string, Queue>();
  private readonly byToken = new Map<number, Queue>();
  private nextToken = 1;
  /** Called when an item is enqueued, to notify the registering root context. */
  notify: (worker: number, contextId: number, token: number) => void = () => {};

  register(name: string, worker: number, contextId: number): number {
    const existing = this.byName.get(name);
    if (existing !== undefined) {
      existing.owner ??= { worker, contextId };
      return existing.token;
    }
    const queue: Queue = { token: this.nextToken++, name, items: [], owner: { worker, contextId } };
    this.byName.set(name, queue);
    this.byToken.set(queue.token, queue);
    return queue.token;
  }

  /** The token of a registered queue, or undefined. */
  resolve(name: string): number | undefined {
    return this.byName.get(name)?.token;
  }

  enqueueByToken(token: number, value: Uint8Array): WasmResult {
    const queue = this.byToken.get(token);
    if (queue === undefined) return WasmResult.NotFound;
    queue.items.push(value.slice());
    if (queue.owner !== null) this.notify(queue.owner.worker, queue.owner.contextId, token);
    return WasmResult.Ok;
  }

  dequeueByToken(token: number): { result: WasmResult; value?: Uint8Array } {
    const queue = this.byToken.get(token);
    if (queue === undefined) return { result: WasmResult.NotFound };
    const value = queue.items.shift();
    return value === undefined ? { result: WasmResult.Empty } : { result: WasmResult.Ok, value };
  }

  /** Enqueues from the test; the queue must have been registered by the filter. */
  enqueue(name: string, value: string | Uint8Array): void {
    const queue = this.byName.get(name);
    if (queue === undefined) throw new Error(`no shared queue named '${name}' was registered`);
    this.enqueueByToken(queue.token, toBytes(value));
  }

  /** Takes the next item of a queue as text, or undefined when it is empty. */
  dequeue(name: string): string | undefined {
    const queue = this.byName.get(name);
    if (queue === undefined) throw new Error(`no shared queue named '${name}' was registered`);
    const value = queue.items.shift();
    return value === undefined ? undefined : decodeText(value);
  }

  /** The items waiting in a queue, as text, without taking them. */
  items(name: string): string[] {
    return (this.byName.get(name)?.items ?? []).map(decodeText);
  }
}

export type MetricKind = "counter" | "gauge" | "histogram";

interface Metric {
  kind: MetricKind;
  value: bigint;
  samples: bigint[];
}

const KIND_BY_TYPE: Record<number, MetricKind> = {
  [MetricType.Counter]: "counter",
  [MetricType.Gauge]: "gauge",
  [MetricType.Histogram]: "histogram",
};

/** Metrics by name, shared by all workers as Envoy's stats store is. Each worker keeps its own id table. */
export class Metrics {
  private readonly byName = new Map<string, Metric>();

  define(type: number, name: string): Metric | undefined {
    const kind = KIND_BY_TYPE[type];
    if (kind === undefined) return undefined;
    let metric = this.byName.get(name);
    if (metric === undefined) {
      metric = { kind, value: 0n, samples: [] };
      this.byName.set(name, metric);
    }
    return metric;
  }

  /** The value of a counter or gauge, or undefined when no filter defined it. */
  get(name: string): number | undefined {
    const metric = this.byName.get(name);
    if (metric === undefined || metric.kind === "histogram") return undefined;
    return Number(metric.value);
  }

  /** The values recorded in a histogram, in order. */
  samples(name: string): number[] {
    return (this.byName.get(name)?.samples ?? []).map(Number);
  }

  kind(name: string): MetricKind | undefined {
    return this.byName.get(name)?.kind;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}
export type { Metric };

export interface LogEntry {
  level: LogLevelName;
  message: string;
  worker: number;
  /** The context the message was logged for (0 for the VM itself, e.g. WASI stdout). */
  contextId: number;
}

export function levelName(level: number): LogLevelName {
  return LOG_LEVEL_NAMES[level] ?? "critical";
}
