// A backend process (Prometheus, Jaeger) on 127.0.0.1: started with its log in a temporary folder, ready when an
// HTTP check answers 200, stopped with SIGTERM (SIGKILL after 5 s) and its folder removed, also when it never got
// ready. The demo and the tests (test/harness/backends.ts) start them through here.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { closedNetwork, MESH_RANGE } from "../mesh/addresses.js";

export interface BackendOptions {
  name: string;
  binary: string;
  /** Arguments; `dir` is the backend's own temporary folder (config, data, log). */
  args: (dir: string) => string[];
  /** Files to write into `dir` before starting (a config file). */
  files?: (dir: string) => Record<string, string>;
  /** Answers 200 once the backend serves. */
  readyUrl: string;
  readyTimeoutMs?: number;
  env?: Record<string, string>;
}

export class Backend {
  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<number | null>,
  ) {}

  get description(): string {
    return `${this.name} pid ${this.child.pid} (files in ${this.dir})`;
  }

  static async start(options: BackendOptions): Promise<Backend> {
    const dir = mkdtempSync(join(tmpdir(), `skiff-${options.name}-`));
    for (const [file, text] of Object.entries(options.files?.(dir) ?? {})) writeFileSync(join(dir, file), text);
    const log = createWriteStream(join(dir, "log"));
    const child = spawn(options.binary, options.args(dir), { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
    child.stdout!.pipe(log);
    child.stderr!.pipe(log);
    const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
    const backend = new Backend(options.name, dir, child, exited);
    let exitCode: number | null | undefined;
    void exited.then((code) => (exitCode = code));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (exitCode !== undefined) break;
      try {
        if ((await fetch(options.readyUrl, { signal: AbortSignal.timeout(1_000) })).status === 200) return backend;
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    const tail = backend.logTail();
    await backend.stop();
    throw new Error(`${options.name} ${exitCode !== undefined ? `exited with ${exitCode}` : "was not ready"} (${options.readyUrl}); its log ends:\n${tail}`);
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(join(this.dir, "log"), "utf8").split("\n").slice(-lines - 1).join("\n");
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      if (!(await Promise.race([this.exited.then(() => true), sleep(5_000).then(() => false)]))) {
        this.child.kill("SIGKILL");
        await this.exited;
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `host`, if a backend may listen there: the backends answer anyone without authentication, so only on loopback or a
 * mesh bridge address (control/mesh: nothing from another machine reaches either). */
export function checkBackendHost(name: string, host: string): string {
  if (!closedNetwork(host)) throw new Error(`${name} cannot listen on ${host}: it answers without authentication, so only on 127.0.0.1 or a mesh bridge address in ${MESH_RANGE}`);
  return host;
}

/** A port free on 127.0.0.1 right now (for backends that cannot be given port 0 and tell which one they took). */
export async function freeLocalPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
