// The maximum rate: wrk (closed loop, C, one thread on the load CPU) drives Envoy as fast as it answers. Closed-loop
// is right here: the question is how many requests per second one Envoy worker completes when saturated.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { LOAD_CPU } from "./session.js";

const run = promisify(execFile);

export interface WrkResult {
  requestsPerSecond: number;
  /** Responses completed during the run. */
  requests: number;
  /** Non-2xx/3xx responses and socket errors. */
  errors: number;
}

export async function wrk(port: number, options: { durationS: number; connections: number; headers?: Record<string, string>; timeoutS?: number }): Promise<WrkResult> {
  const headerArgs = Object.entries({ "x-user-id": "user-4711", "x-cohort": "internal", ...options.headers }).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const { stdout } = await run(
    "taskset",
    ["-c", String(LOAD_CPU), "wrk", "-t1", `-c${options.connections}`, `-d${options.durationS}s`, `--timeout`, `${options.timeoutS ?? 2}s`, ...headerArgs, `http://127.0.0.1:${port}/`],
    { env: { ...process.env, SKIFF_TEST_CHILD: process.env.SKIFF_TEST_RUN }, timeout: (options.durationS + 30) * 1000 },
  );
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  if (!rate) throw new Error(`cannot read wrk output:\n${stdout}`);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = Number(non2xx?.[1] ?? 0) + (socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0);
  const completed = /(\d+) requests in /.exec(stdout);
  if (!completed) throw new Error(`cannot read wrk output:\n${stdout}`);
  return { requestsPerSecond: Number(rate[1]), requests: Number(completed[1]), errors };
}
