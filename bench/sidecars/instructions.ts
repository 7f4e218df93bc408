// The sidecars' instructions per request, counted by valgrind's callgrind inside both sidecar Envoys of a variant: the
// figure of the sidecar benchmark that other processes on the shared cores cannot move (latency and CPU time both
// move with the load; an instruction count does not, and it does not depend on how much CPU the run got, so it is
// also exact when the bench runs at nice priority on a busy machine). Both sidecars run under callgrind with counting
// off while they start, get their configuration and warm up; then per window counting is zeroed in both, the client
// pod's app sends a fixed number of requests through them (closed loop, keep-alive connections), and the two dumps'
// totals, less what the two Envoys spend idle in that time (measured in a window without requests), over the requests
// answered, are the cost of one request through both sidecars.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Envoy } from "../../test/harness/envoy.js";
import type { TestPod } from "../../test/harness/pods.js";
import { callgrindControl, callgrindWrapper, countedWindow } from "../lib/callgrind.js";

export interface SidecarInstructionOptions {
  /** Requests before counting starts (connections, first-use allocations). */
  warmupRequests: number;
  /** Requests per counted window. */
  requests: number;
  windows: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Seconds of the window without requests that measures the idle cost. */
  idleS: number;
}

export interface SidecarPair {
  name: string;
  client: TestPod;
  server: TestPod;
  bootstraps: [Record<string, unknown>, Record<string, unknown>];
  /** Resolves when both sidecars have the configuration the variant needs (e.g. from the control plane). */
  ready: (sidecars: Envoy[]) => Promise<void>;
  /** Where the client's app sends. */
  target: { host: string; port: number; headers?: Record<string, string> };
  /** A stat of the client's sidecar read before and after the counted windows (e.g. its TLS handshakes). */
  windowStat?: string;
  /** Stats of the counted sidecars (client's, server's) read after the windows: what path the counted requests took. */
  proof?: (sidecars: Envoy[]) => Promise<string>;
}

export interface SidecarInstructionResult {
  /** Instructions of both sidecars per request, idle cost taken off, one per window. */
  perRequest: number[];
  /** Instructions per second of both sidecars idle. */
  idlePerSecond: number;
  /** How much `windowStat` grew over the counted windows. */
  windowStatDelta?: number;
  proof?: string;
}

/** Counts `pair`'s two sidecars, started afresh under callgrind (as uid 1337 in their pods, like the sidecars they
 * stand in for), and stops them again. */
export async function sidecarInstructions(
  pair: SidecarPair,
  startSidecar: (pod: TestPod, bootstrap: Record<string, unknown>, wrapper: string[]) => Promise<Envoy>,
  options: SidecarInstructionOptions,
  log: (line: string) => void,
): Promise<SidecarInstructionResult> {
  // One dump folder per sidecar, writable by the sidecar's uid (callgrind writes as the process it counts).
  const dirs = [0, 1].map(() => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-callgrind-sidecar-"));
    chmodSync(dir, 0o777);
    return dir;
  });
  const sidecars: Envoy[] = [];
  try {
    sidecars.push(await startSidecar(pair.client, pair.bootstraps[0], callgrindWrapper(dirs[0])));
    sidecars.push(await startSidecar(pair.server, pair.bootstraps[1], callgrindWrapper(dirs[1])));
    await pair.ready(sidecars);
    const app = await pair.client.startApp({ uid: 1000 });
    const send = async (count: number) => {
      const tally = await app.load(pair.target.host, pair.target.port, { count, concurrency: options.concurrency, headers: pair.target.headers, timeoutMs: 60_000 });
      const answered = tally.byStatus[200] ?? 0;
      if (answered !== count) throw new Error(`${pair.name} under callgrind: ${count - answered} of ${count} requests failed (${JSON.stringify({ byStatus: tally.byStatus, errors: tally.errors })})`);
      return answered;
    };
    await send(options.warmupRequests);
    for (const sidecar of sidecars) await callgrindControl(sidecar.pid, "-i", "on");
    // Both sidecars counted over the same time: the client's window encloses the server's.
    const counted = (during: () => Promise<void>) =>
      countedWindow(sidecars[0].pid, dirs[0], async () => {
        const inner = await countedWindow(sidecars[1].pid, dirs[1], during);
        innerInstructions = inner.instructions;
      });
    let innerInstructions = 0;
    const idle = await counted(() => sleep(options.idleS * 1000));
    const idlePerSecond = (idle.instructions + innerInstructions) / idle.seconds;
    const perRequest: number[] = [];
    const statBefore = pair.windowStat ? ((await sidecars[0].stat(pair.windowStat)) ?? 0) : 0;
    for (let window = 0; window < options.windows; window++) {
      let answered = 0;
      const outer = await counted(async () => {
        answered = await send(options.requests);
      });
      perRequest.push((outer.instructions + innerInstructions - idlePerSecond * outer.seconds) / answered);
      log(`instructions ${pair.name} window ${window + 1}: ${perRequest.at(-1)!.toFixed(0)} per request through both sidecars (${answered} requests in ${outer.seconds.toFixed(1)} s, idle ${(idlePerSecond / 1e6).toFixed(2)} M/s)`);
    }
    const windowStatDelta = pair.windowStat ? ((await sidecars[0].stat(pair.windowStat)) ?? 0) - statBefore : undefined;
    const proof = pair.proof ? await pair.proof(sidecars) : undefined;
    await app.stop();
    return { perRequest, idlePerSecond, windowStatDelta, proof };
  } finally {
    for (const sidecar of sidecars) await sidecar.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}
