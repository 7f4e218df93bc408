// Instructions per request, counted by valgrind (callgrind), for numbers the noisy shared cores cannot move: each
// module runs N1 and N2 requests in the bench host and the difference of the two totals, divided by N2 - N1, is the
// cost of one request (start-up cancels out). Wasm is compiled once by TurboFan up front (--no-liftoff
// --no-wasm-tier-up --no-wasm-lazy-compilation), so the guest's code is the same in every run, and V8 runs with
// --predictable (no background compiler or GC threads), which makes two runs of the same command differ by about
// 0.5 million instructions instead of 30 million.
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { buildVariant, VARIANTS } from "./build.js";

const run = promisify(execFile);
const N1 = 2_000;
const N2 = 22_000;

async function instructions(variant: string, requests: number): Promise<number> {
  const out = join(tmpdir(), `skiff-bench-callgrind-${process.pid}-${variant}-${requests}.out`);
  try {
    const { stderr } = await run(
      "valgrind",
      ["--tool=callgrind", `--callgrind-out-file=${out}`, "--smc-check=all-non-file",
        process.execPath, "--predictable", "--no-liftoff", "--no-wasm-tier-up", "--no-wasm-lazy-compilation", "--import", "tsx",
        join(PROJECT_ROOT, "bench", "sdk-vs-peer", "drive.ts"), variant, String(requests)],
      { cwd: PROJECT_ROOT, env: { ...process.env, SKIFF_TEST_CHILD: process.env.SKIFF_TEST_RUN }, maxBuffer: 1 << 24, timeout: 600_000 },
    );
    const collected = /Collected : (\d+)/.exec(stderr) ?? /summary: (\d+)/.exec(readFileSync(out, "utf8"));
    if (!collected) throw new Error(`no instruction count from valgrind for ${variant}:\n${stderr.slice(-2000)}`);
    return Number(collected[1]);
  } finally {
    rmSync(out, { force: true });
  }
}

export async function runInstructions(log: (line: string) => void): Promise<string> {
  try {
    await run("valgrind", ["--version"]);
  } catch {
    return "valgrind is not installed (`apt-get install valgrind`): instruction counts not measured.";
  }
  for (const variant of VARIANTS) await buildVariant(variant);
  const perRequest = new Map<string, number>();
  for (const variant of VARIANTS) {
    const small = await instructions(variant.name, N1);
    const large = await instructions(variant.name, N2);
    perRequest.set(variant.name, (large - small) / (N2 - N1));
    log(`instructions: ${variant.name} ${perRequest.get(variant.name)!.toFixed(0)} per request (${small} at ${N1}, ${large} at ${N2})`);
  }
  const floor = perRequest.get("floor")!;
  const peerSdk = perRequest.get("peer")! - floor;
  return [
    `Instructions per request (valgrind callgrind, whole Node process: the bench host's JS plus the guest), from runs of ${N1} and ${N2} requests per module. ` +
      `"SDK cost" subtracts the floor module (same host calls, no SDK). V8 runs with --predictable; two runs of the same command differ by about 0.5 million instructions, ` +
      `i.e. about ±${Math.round(0.5e6 / (N2 - N1))} per request here.`,
    "",
    "| variant | instructions per request | SDK cost (above floor) | SDK cost vs peer | target ≤ 0.7x of peer |",
    "| --- | ---: | ---: | ---: | --- |",
    ...VARIANTS.map((variant) => {
      const total = perRequest.get(variant.name)!;
      const sdk = total - floor;
      const ratio = sdk / peerSdk;
      return `| ${variant.name} | ${total.toFixed(0)} | ${variant.sdk === "floor" ? "—" : sdk.toFixed(0)} | ${variant.sdk === "floor" ? "—" : `${ratio.toFixed(2)}x`} | ${variant.sdk === "skiff" ? (ratio <= 0.7 ? "meets" : "**misses**") : "—"} |`;
    }),
  ].join("\n");
}
