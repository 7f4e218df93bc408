// One kind of object from the Kubernetes API, kept current as client-go's informers keep it: list, then watch from the
// list's resourceVersion; a watch that ends is resumed from the last resourceVersion seen, and one the server no
// longer has (410 Gone, "too old resource version") lists again (client-node's ListWatch does these); an error (the API
// server unreachable, a refused request) is retried with exponential backoff and jitter, as client-go's reflector does
// (k8s.io/client-go/tools/cache/reflector.go, NewExponentialBackoffManager(800ms, 30s, 2m, 2.0, 1.0): 800 ms at first,
// doubling to a 30 s cap, up to twice that with jitter, back to the start after two quiet minutes).
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from "@kubernetes/client-node";

export interface InformerOptions<T extends KubernetesObject> {
  /** What it is, for log lines: "services", "virtualservices.networking.istio.io". */
  description: string;
  /** The object kind, for a refusal's log line: "Service", "Telemetry", "Secret". */
  kind: string;
  /** The watch path, e.g. `/api/v1/services` or `/apis/networking.istio.io/v1/virtualservices`. */
  path: string;
  list(): Promise<KubernetesListObject<T>>;
  /** e.g. `metadata.name=tls-cert` (given to the watch; `list` must apply it too). */
  fieldSelector?: string;
  /** Called after any object was added, changed or removed. */
  onChange(): void;
  log(line: string): void;
}

const BACKOFF = { initialMs: 800, maxMs: 30_000, resetAfterMs: 120_000, jitter: 1.0 };

export class Informer<T extends KubernetesObject> {
  private readonly listWatch: ListWatch<T>;
  private attempts = 0;
  private lastErrorAt = 0;
  private retry?: NodeJS.Timeout;
  private stopped = false;
  private listedOnce = false;
  /** What the informer was doing when an error came: a list, or the watch that follows it. */
  private verb: "list" | "watch" = "list";
  private settle!: () => void;
  /** Resolves once a list has succeeded, or the API answered that it serves no such kind (404: a CRD not installed,
   * watched until it is). Other errors are retried and keep it pending, so nothing is served from a partial view. */
  readonly synced = new Promise<void>((resolve) => (this.settle = resolve));

  constructor(
    config: KubeConfig,
    private readonly options: InformerOptions<T>,
  ) {
    const list = async () => {
      this.verb = "list";
      const result = await options.list();
      this.verb = "watch";
      this.listedOnce = true;
      this.settle();
      return result;
    };
    this.listWatch = new ListWatch<T>(options.path, new Watch(config), list, false, undefined, options.fieldSelector);
    for (const verb of ["add", "update", "delete"] as const) this.listWatch.on(verb, () => options.onChange());
    this.listWatch.on("error", (error: unknown) => this.failed(error));
  }

  start(): this {
    void this.listWatch.start();
    return this;
  }

  /** The objects as last listed or watched. */
  objects(): readonly T[] {
    return this.listWatch.list();
  }

  /** True once a list has succeeded (an informer whose API is missing, e.g. a CRD not installed, stays false). */
  get listed(): boolean {
    return this.listedOnce;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.listWatch.stop();
  }

  private failed(error: unknown): void {
    if (this.stopped) return;
    const now = Date.now();
    if (now - this.lastErrorAt > BACKOFF.resetAfterMs) this.attempts = 0;
    this.lastErrorAt = now;
    const delay = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * 2 ** this.attempts++) * (1 + Math.random() * BACKOFF.jitter);
    // The first failure of a kind is worth a line; a server that stays away would otherwise fill the log.
    if (this.attempts <= 3 || this.attempts % 10 === 0) {
      // A refusal is the API server's RBAC answer: say which verb on which kind, as retrying will not fix it.
      const refused = status(error) === 403 ? `refused to ${this.verb} ${this.options.description} (kind ${this.options.kind}): ` : "";
      this.options.log(`kubernetes: ${this.options.description}: ${refused}${describe(error)}; retrying in ${(delay / 1000).toFixed(1)} s`);
    }
    if (status(error) === 404) this.settle();
    this.retry = setTimeout(() => {
      if (!this.stopped) void this.listWatch.start();
    }, delay);
  }
}

/** An API error's HTTP status (client-node's ApiException has `code`, a watch's error `statusCode`). */
function status(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown };
  const code = e.code ?? e.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** An API error as one line: the HTTP status and the server's message, or the network error. */
export function describe(error: unknown): string {
  const e = error as { body?: unknown; message?: string };
  const code = status(error);
  let message = e.message ?? String(error);
  if (typeof e.body === "string") {
    try {
      message = (JSON.parse(e.body) as { message?: string }).message ?? message;
    } catch {
      // Not a Status object.
    }
  }
  return code !== undefined ? `HTTP ${code}: ${message.split("\n")[0]}` : message.split("\n")[0]!;
}
