// Every process and server a test starts is registered here, so that teardown can stop what a test forgot and the
// suite can prove that nothing is left running.
import { readFileSync, readdirSync } from "node:fs";

export interface Stoppable {
  readonly description: string;
  stop(): Promise<void>;
  /** The last lines of the process's log, printed when a test fails. */
  logTail?(lines?: number): string;
}

const running = new Set<Stoppable>();
// Log tails of things stopped during the current test: a test's own teardown usually stops its Envoy before the
// harness learns that the test failed.
let stoppedTails: Array<{ description: string; tail: string }> = [];

export function track(thing: Stoppable): void {
  running.add(thing);
}

export function untrack(thing: Stoppable, lastLogLines?: string): void {
  running.delete(thing);
  if (lastLogLines) stoppedTails.push({ description: thing.description, tail: lastLogLines });
}

/** The log tails of everything running or stopped since the last call. */
export function takeLogTails(): Array<{ description: string; tail: string }> {
  const tails = [
    ...stoppedTails,
    ...[...running].flatMap((thing) => {
      const tail = thing.logTail?.(40);
      return tail ? [{ description: thing.description, tail }] : [];
    }),
  ];
  stoppedTails = [];
  return tails;
}

export function runningThings(): Stoppable[] {
  return [...running];
}

/** Children carry this variable, so a leftover process can be found even after its parent died. */
export const CHILD_MARKER = "SKIFF_TEST_CHILD";

export function testRunId(): string {
  const id = process.env.SKIFF_TEST_RUN;
  if (!id) throw new Error("SKIFF_TEST_RUN is not set: run the tests through vitest (test/harness/global-setup.ts)");
  return id;
}

/** Pids of live processes started by this test run (found by their marker, wherever they were reparented). */
export function leftoverProcesses(runId: string): Array<{ pid: number; command: string }> {
  const found: Array<{ pid: number; command: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, "utf8");
      if (!environ.split("\0").includes(`${CHILD_MARKER}=${runId}`)) continue;
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      if (/^State:\s+Z/m.test(status)) continue;
      const command = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
      found.push({ pid: Number(entry), command });
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}
