// What every benchmark run shares: the harness's process tracking outside vitest, CPU pinning, machine facts, and
// a guarantee that every process the run started is stopped, also when the run fails or is interrupted.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { locateEnvoy } from "../../control/envoy-binary/locate.js";
export { ensureAptTool } from "../../control/mesh/host.js";
import { leftoverProcesses, runningThings } from "../../test/harness/processes.js";

/** Envoy under test runs alone on this CPU; the load generator, the upstream and this process share the other. */
export const ENVOY_CPU = 0;
export const LOAD_CPU = 1;

/** Runs `body` with the harness's process tracking on; stops everything it started, whatever happens. */
export async function benchSession<T>(body: () => Promise<T>): Promise<T> {
  // The harness marks its children with this id (test/harness/processes.ts), so leftovers can be found and killed.
  process.env.SKIFF_TEST_RUN ??= `bench-${randomUUID()}`;
  const runId = process.env.SKIFF_TEST_RUN;
  const stopAll = async () => {
    for (const thing of runningThings().reverse()) await thing.stop().catch(() => {});
    for (const { pid } of leftoverProcesses(runId)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void stopAll().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    pin(process.pid, LOAD_CPU);
    return await body();
  } finally {
    await stopAll();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Pins every thread of `pid` to one CPU (a no-op on a one-CPU machine). */
export function pin(pid: number, cpu: number): void {
  if (cpus().length < 2) return;
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

/** Pids of the live processes this run started (Envoys, load generators). */
export function startedPids(): number[] {
  return leftoverProcesses(process.env.SKIFF_TEST_RUN!).map((p) => p.pid);
}

/** CPU time (user + system) a process has used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  // Fields after the command: state is index 0, so utime and stime (fields 14 and 15 of stat) are 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface MachineFacts {
  date: string;
  nproc: number;
  cpuModel: string;
  envoy: string;
  node: string;
  wrk: string;
  loadAverage: string;
}

export function machineFacts(): MachineFacts {
  const envoy = locateEnvoy();
  let wrk = "not installed";
  try {
    wrk = execFileSync("wrk", ["-v"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0];
  } catch (error) {
    // `wrk -v` prints its version and exits 1.
    const out = (error as { stdout?: string }).stdout;
    if (out) wrk = out.split("\n")[0];
  }
  return {
    date: new Date().toISOString(),
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    envoy: `${envoy.version} (${envoy.source})`,
    node: process.version,
    wrk: wrk.trim(),
    loadAverage: loadAverage(),
  };
}

/** The 1, 5 and 15 minute load averages: on two shared cores, how busy the machine was besides the benchmark. */
export function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}
