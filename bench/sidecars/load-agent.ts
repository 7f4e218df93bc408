// The load generator of the sidecar benchmark, run in the client pod (bench/sidecars/run.ts starts it with
// `pod.startApp({ agent })`): open-loop runs on command, each answered with its percentiles, in the line protocol of
// test/harness/pod-agent.ts ({ id, op: "openLoop", host, port, rate, durationMs, expectHeader } -> { id, result }).
import { createInterface } from "node:readline";
import { openLoop } from "../lib/open-loop.js";
import { percentile } from "../lib/stats.js";

interface Command {
  id: number;
  host: string;
  port: number;
  rate: number;
  durationMs: number;
  expectHeader?: string;
}

export interface LoadResult {
  p50Us: number;
  p90Us: number;
  p99Us: number;
  lagP99Us: number;
  errors: number;
  sent: number;
}

const output = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line) as Command;
  openLoop(command).then(
    (run) => {
      const result: LoadResult = {
        p50Us: percentile(run.latenciesUs, 50),
        p90Us: percentile(run.latenciesUs, 90),
        p99Us: percentile(run.latenciesUs, 99),
        lagP99Us: run.lagP99Us,
        errors: run.errors,
        sent: run.sent,
      };
      output({ id: command.id, result });
    },
    (error: NodeJS.ErrnoException) => output({ id: command.id, error: { code: error.code ?? "error", message: error.message } }),
  );
});
process.stdin.on("end", () => process.exit(0));
output({ ready: true });
