// Envoy's instructions per request, counted by valgrind's callgrind in the Envoy process itself: a figure the other
// processes on the shared cores cannot move (wall-clock CPU per request moved 2x between days here). Envoy runs
// under callgrind with counting off while it starts and warms up (connections, Wasm VMs, V8's tier-up); then, per
// window, counting is zeroed, wrk drives it until enough requests are answered, and the dump's total over wrk's
// completed requests is the cost of a request. What Envoy spends idle in a window (timers, stats flushes) is measured
// in a window without load and taken off in proportion to the time. Windows of one Envoy agree within 1-2% on a quiet
// machine; timing moves them more under load (see load()).
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { startEnvoy } from "../../test/harness/envoy.js";
import { variantBootstrap, type VariantSpec } from "./envoys.js";
import { ENVOY_CPU, pin } from "./session.js";
import { wrk } from "./wrk.js";

const run = promisify(execFile);

export interface InstructionOptions {
  /** Requests before counting starts (V8 compiles and tiers up the module meanwhile). */
  warmupRequests: number;
  /** Requests per counted window, at least. */
  windowRequests: number;
  windows: number;
  log?: (line: string) => void;
}

export interface InstructionResult {
  spec: VariantSpec;
  /** Instructions per request, one per window, idle cost taken off. */
  perRequest: number[];
  /** Requests completed in each window. */
  requests: number[];
  /** Instructions per second of the idle Envoy. */
  idlePerSecond: number;
}

/** Sends a command (-z zero, -d dump, "-i on" count) to Envoy under callgrind. It runs as the Envoy's user: vgdb, which
 * carries the command, makes a reply FIFO in /tmp (mode 0600) that only its own user can open, so as root against a
 * sidecar's uid 1337 it hangs, leaving the sidecar stopped under ptrace. */
export async function callgrindControl(pid: number, ...command: string[]): Promise<void> {
  const [uid, gid] = ["Uid", "Gid"].map((field) => new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]);
  const asOwner = Number(uid) === process.getuid?.() ? [] : ["setpriv", "--reuid", uid, "--regid", gid, "--clear-groups", "--"];
  // The FIFOs' prefix valgrind was given (callgrindWrapper): callgrind_control must name the same one.
  const prefix = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").find((arg) => arg.startsWith("--vgdb-prefix="));
  const [binary, ...args] = [...asOwner, "callgrind_control", ...(prefix ? [prefix] : []), ...command, String(pid)];
  await run(binary, args, { timeout: 120_000 });
}

/** The command that runs Envoy under callgrind with counting off until asked (`callgrind_control -i on`), its dumps
 * in `dir`; --smc-check lets valgrind see V8's generated code change. vgdb's FIFOs go in `dir` too: under the
 * default prefix (/tmp/vgdb-pipe-*-<pid>-...) a FIFO a killed run left behind, owned by another user, makes a later
 * Envoy with that pid fail to start ("cannot create shared_mem file ... Permission denied"). */
export function callgrindWrapper(dir: string): string[] {
  return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", `--vgdb-prefix=${dir}/vgdb`, `--callgrind-out-file=${dir}/callgrind.%p`];
}

/** Zeroes the counts, runs `during` (returning its duration in seconds), dumps, and returns the dump's total. Windows
 * of several processes nest (each in its own `dir`): the outer one counts a little longer, idle time it takes off. */
export async function countedWindow(pid: number, dir: string, during: () => Promise<void>): Promise<{ instructions: number; seconds: number }> {
  const dumpsBefore = new Set(readdirSync(dir));
  await callgrindControl(pid, "-z");
  const started = Date.now();
  await during();
  const seconds = (Date.now() - started) / 1000;
  await callgrindControl(pid, "-d");
  // callgrind writes the dump asynchronously to the request: wait for the new file to be complete (its summary line).
  for (let i = 0; i < 600; i++) {
    const fresh = readdirSync(dir).filter((name) => name.startsWith("callgrind.") && !dumpsBefore.has(name));
    for (const name of fresh) {
      const text = readFileSync(join(dir, name), "utf8");
      const total = /^(?:summary|totals): (\d+)/m.exec(text);
      if (total && statSync(join(dir, name)).size > 0) return { instructions: Number(total[1]), seconds };
    }
    await sleep(100);
  }
  throw new Error(`no callgrind dump appeared in ${dir}`);
}

/** Drives Envoy with wrk, in 3 s runs, until `requests` have been answered; returns how many were. Under valgrind
 * Envoy answers 50-100x slower than natively, and slower still when the machine is busy, so counts, not durations,
 * make the windows alike. Four connections keep the slowed Envoy busy: with one, at load average 40, each request waited
 * on three processes' turns for a CPU and Envoy answered about ten a second. How many requests one wake-up serves
 * still depends on the other processes' timing, which moves the count per request between windows (by up to 10% at
 * load average 35), hence three windows and their median. */
async function load(port: number, spec: VariantSpec, requests: number): Promise<number> {
  let completed = 0;
  while (completed < requests) {
    const result = await wrk(port, { durationS: 3, connections: 4, headers: spec.requestHeaders, timeoutS: 60 });
    if (result.errors > 0) throw new Error(`${spec.name}: ${result.errors} failed requests under callgrind`);
    completed += result.requests;
  }
  return completed;
}

/** Envoy's instructions per request for one variant, under callgrind, pinned to the Envoy CPU. */
export async function envoyInstructions(spec: VariantSpec, upstreamPort: number, options: InstructionOptions): Promise<InstructionResult> {
  const log = options.log ?? (() => {});
  const dir = join("/tmp", `skiff-callgrind-${process.pid}-${spec.name}`);
  await run("mkdir", ["-p", dir]);
  const envoy = await startEnvoy({
    bootstrap: variantBootstrap(spec, upstreamPort),
    concurrency: 1,
    wrapper: callgrindWrapper(dir),
    readyTimeoutMs: 180_000,
  });
  try {
    pin(envoy.pid, ENVOY_CPU);
    const port = await envoy.listenerPort();
    await load(port, spec, options.warmupRequests);
    await callgrindControl(envoy.pid, "-i", "on");
    const idle = await countedWindow(envoy.pid, dir, () => sleep(5000));
    const idlePerSecond = idle.instructions / idle.seconds;
    const perRequest: number[] = [];
    const requests: number[] = [];
    for (let i = 0; i < options.windows; i++) {
      let completed = 0;
      const window = await countedWindow(envoy.pid, dir, async () => {
        completed = await load(port, spec, options.windowRequests);
      });
      perRequest.push((window.instructions - idlePerSecond * window.seconds) / completed);
      requests.push(completed);
      log(`instructions ${spec.name} window ${i + 1}: ${perRequest.at(-1)!.toFixed(0)} per request (${completed} requests, idle ${(idlePerSecond / 1e6).toFixed(1)} M/s)`);
    }
    return { spec, perRequest, requests, idlePerSecond };
  } finally {
    await envoy.stop();
    await run("rm", ["-rf", dir]);
  }
}
