// Starts a real Envoy for a test: free loopback ports (admin and listeners bound to port 0, then read back from the
// admin API), waits for /ready, keeps the log, and stops it in teardown even when the test throws.
import { type ChildProcess, spawn } from "node:child_process";
import { chownSync, createWriteStream, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "yaml";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { SIDECAR_ADMIN_PORT } from "../../control/mesh/capture.js";
import { podCommand } from "../../control/mesh/mesh.js";
import { CHILD_MARKER, testRunId, track, untrack } from "./processes.js";

export interface EnvoyOptions {
  /** The bootstrap, as an object (see loadBootstrap) or YAML text. */
  bootstrap: Record<string, unknown> | string;
  /** Worker threads (--concurrency); filters that share state are tested with 2 or more. */
  concurrency?: number;
  /** Extra command-line arguments, e.g. ["--component-log-level", "wasm:debug"]. */
  args?: string[];
  /** Wait for /ready (default true; a bootstrap waiting on a control plane may need longer). */
  readyTimeoutMs?: number;
  /** Serve the bootstrap's listeners from a file (LDS from the filesystem) instead, so that a test can change them
   * while Envoy runs, with publishListeners(). */
  listenersFromFile?: boolean;
  /** Run Envoy in a pod (see pods.ts): in its network namespace, as `uid` (and gid), with its admin on the pod's
   * address, port `adminPort` (default 15000, the sidecar's, excluded from capture), where the host reaches it. */
  pod?: { netns: string; address: string; uid: number; adminPort?: number };
  /** A command that runs Envoy, e.g. ["valgrind", "--tool=callgrind"] (the benchmark counts Envoy's instructions);
   * `pid` is then that command's. */
  wrapper?: string[];
}

const LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener";

/** Writes a bootstrap's static listeners as an LDS file; Envoy picks up the file being moved into place. */
function writeListenerFile(path: string, bootstrap: Record<string, unknown>): void {
  const listeners = ((bootstrap.static_resources as { listeners?: unknown[] } | undefined)?.listeners ?? []) as Array<Record<string, unknown>>;
  writeFileSync(`${path}.next`, JSON.stringify({ resources: listeners.map((listener) => ({ "@type": LISTENER_TYPE, ...listener })) }));
  renameSync(`${path}.next`, path);
}

/** Polls `condition` every 25 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

export class Envoy {
  readonly description: string;
  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly adminPort: number,
    readonly adminHost: string,
  ) {
    this.description = `envoy pid ${child.pid} (admin ${adminHost}:${adminPort}, files in ${dir})`;
  }

  static async start(options: EnvoyOptions): Promise<Envoy> {
    const binary = locateEnvoy();
    const dir = mkdtempSync(join(tmpdir(), "skiff-envoy-"));
    const bootstrap = typeof options.bootstrap === "string" ? (parse(options.bootstrap) as Record<string, unknown>) : structuredClone(options.bootstrap);
    const adminHost = options.pod?.address ?? "127.0.0.1";
    bootstrap.admin = { address: { socket_address: { address: adminHost, port_value: options.pod ? (options.pod.adminPort ?? SIDECAR_ADMIN_PORT) : 0 } } };
    const listenerFile = join(dir, "listeners.json");
    if (options.listenersFromFile) {
      writeListenerFile(listenerFile, bootstrap);
      const { listeners: _moved, ...otherStatics } = (bootstrap.static_resources ?? {}) as Record<string, unknown>;
      bootstrap.static_resources = otherStatics;
      bootstrap.node ??= { id: "skiff-test", cluster: "skiff-test" };
      bootstrap.dynamic_resources = { lds_config: { resource_api_version: "V3", path_config_source: { path: listenerFile } } };
    }
    const configPath = join(dir, "bootstrap.json");
    writeFileSync(configPath, JSON.stringify(bootstrap, null, 2), { mode: 0o600 });
    if (options.pod) {
      // The sidecar's uid owns its folder (mode 0700, from mkdtemp): it reads the bootstrap and writes the admin address.
      for (const path of [dir, configPath]) chownSync(path, options.pod.uid, options.pod.uid);
    }
    const adminAddressPath = join(dir, "admin-address");
    const logPath = join(dir, "envoy.log");
    const args = [
      "-c", configPath,
      "--admin-address-path", adminAddressPath,
      "--disable-hot-restart",
      "--concurrency", String(options.concurrency ?? 1),
      "--log-level", "info",
      ...(options.args ?? []),
    ];
    const [command, ...commandArgs] = options.pod
      ? podCommand(options.pod.netns, [...(options.wrapper ?? []), binary.path, ...args], options.pod.uid)
      : [...(options.wrapper ?? []), binary.path, ...args];
    const child = spawn(command, commandArgs, {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, [CHILD_MARKER]: testRunId() },
    });
    // Envoy logs to stderr; keep it in a file beside the bootstrap (unbuffered, unlike --log-path).
    const logFile = createWriteStream(logPath);
    child.stderr!.pipe(logFile);
    const logWritten = new Promise<void>((resolve) => logFile.once("close", () => resolve()));
    // "close" comes after stderr has ended, so the log is complete once it fired and logWritten resolved.
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    let exitCode: number | null | undefined;
    void exited.then((code) => (exitCode = code));
    const failed = async (reason: string): Promise<never> => {
      child.kill("SIGKILL");
      await exited;
      await logWritten;
      const log = readFileSync(logPath, "utf8");
      if (process.env.SKIFF_KEEP_ENVOY_FILES !== "1") rmSync(dir, { recursive: true, force: true });
      throw new Error(`${reason}:\n${tail(log, 40)}`);
    };

    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
    let adminPort = 0;
    while (Date.now() < deadline) {
      if (exitCode !== undefined) return failed(`Envoy exited with ${exitCode} before it was ready`);
      if (!adminPort && existsSync(adminAddressPath)) {
        const address = readFileSync(adminAddressPath, "utf8").trim();
        if (address) adminPort = Number(address.split(":").pop());
      }
      if (adminPort) {
        try {
          const response = await fetch(`http://${adminHost}:${adminPort}/ready`);
          if (response.status === 200) {
            const envoy = new Envoy(child, dir, adminPort, adminHost);
            envoy.exited = exited;
            track(envoy);
            return envoy;
          }
        } catch {
          // Admin not accepting yet.
        }
      }
      await sleep(50);
    }
    return failed(`Envoy was not ready within ${options.readyTimeoutMs ?? 20_000} ms`);
  }

  private exited!: Promise<number | null>;

  get pid(): number {
    return this.child.pid!;
  }

  get adminUrl(): string {
    return `http://${this.adminHost}:${this.adminPort}`;
  }

  async admin(path: string, init?: RequestInit): Promise<string> {
    const response = await fetch(this.adminUrl + path, init);
    return response.text();
  }

  /** Port of the listener called `name` (or the only listener). */
  async listenerPort(name?: string): Promise<number> {
    const data = JSON.parse(await this.admin("/listeners?format=json")) as {
      listener_statuses: Array<{ name: string; local_address: { socket_address: { port_value: number } } }>;
    };
    const statuses = data.listener_statuses ?? [];
    const listener = name === undefined ? (statuses.length === 1 ? statuses[0] : undefined) : statuses.find((l) => l.name === name);
    if (!listener) throw new Error(`no listener ${name ?? "(the only one)"}; have ${statuses.map((l) => l.name).join(", ")}`);
    return listener.local_address.socket_address.port_value;
  }

  /** Counters and gauges from /stats, by name. */
  async stats(filter?: string): Promise<Map<string, number>> {
    const text = await this.admin(`/stats${filter ? `?filter=${encodeURIComponent(filter)}` : ""}`);
    const stats = new Map<string, number>();
    for (const line of text.split("\n")) {
      // Names may hold colons themselves (Istio's tags: `spiffe://...` principals); the value is the last `: N`.
      const match = /^(.+): (\d+)$/.exec(line);
      if (match) stats.set(match[1], Number(match[2]));
    }
    return stats;
  }

  async stat(name: string): Promise<number | undefined> {
    return (await this.stats(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`)).get(name);
  }

  log(): string {
    const logPath = join(this.dir, "envoy.log");
    return existsSync(logPath) ? readFileSync(logPath, "utf8") : "";
  }

  /** Waits until the log contains `text` (the log trails /stats and responses by a few milliseconds). */
  async waitForLog(text: string | RegExp, timeoutMs = 15_000): Promise<void> {
    const found = () => (typeof text === "string" ? this.log().includes(text) : text.test(this.log()));
    await waitFor(found, `Envoy's log showing ${text}`, timeoutMs);
  }

  /** With `listenersFromFile`: replaces the listeners by those of `bootstrap` (e.g. the same bootstrap with another
   * filter configuration). Envoy applies or rejects the update asynchronously: watch listener_manager.lds.*. */
  publishListeners(bootstrap: Record<string, unknown>): void {
    writeListenerFile(join(this.dir, "listeners.json"), bootstrap);
  }

  logTail(lines = 40): string {
    return tail(this.log(), lines);
  }

  /** Stops Envoy and removes its files (kept when SKIFF_KEEP_ENVOY_FILES=1, for debugging). */
  async stop(): Promise<void> {
    untrack(this, this.logTail(40));
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      const stopped = await Promise.race([this.exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!stopped) {
        this.child.kill("SIGKILL");
        await this.exited;
      }
    }
    if (process.env.SKIFF_KEEP_ENVOY_FILES !== "1") rmSync(this.dir, { recursive: true, force: true });
  }
}

function tail(text: string, lines: number): string {
  return text.split("\n").slice(-lines - 1).join("\n");
}

export function startEnvoy(options: EnvoyOptions): Promise<Envoy> {
  return Envoy.start(options);
}

/** Reads a bootstrap from envoy-configs/, with listeners moved to free ports and clusters pointed at test upstreams
 * (cluster name -> port, or ports for several endpoints). */
export function loadBootstrap(file: string, upstreams: Record<string, number | number[]> = {}): Record<string, unknown> {
  const bootstrap = parse(readFileSync(join(PROJECT_ROOT, "envoy-configs", file), "utf8")) as Bootstrap;
  for (const listener of bootstrap.static_resources?.listeners ?? []) {
    listener.address.socket_address.port_value = 0;
  }
  for (const cluster of bootstrap.static_resources?.clusters ?? []) {
    const ports = upstreams[cluster.name];
    if (ports === undefined) continue;
    cluster.load_assignment = {
      cluster_name: cluster.name,
      endpoints: [
        {
          lb_endpoints: (Array.isArray(ports) ? ports : [ports]).map((port) => ({
            endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } },
          })),
        },
      ],
    };
  }
  return bootstrap as unknown as Record<string, unknown>;
}

interface Bootstrap {
  static_resources?: {
    listeners?: Array<{ address: { socket_address: { port_value: number } } }>;
    clusters?: Array<{ name: string; load_assignment?: unknown }>;
  };
}
