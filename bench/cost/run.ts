// What the SDK and each filter cost inside Envoy, against the floor (issue 10): a hand-written raw-ABI module that
// reads three request headers and adds one response header, allocating nothing. All in one run: Envoy with no
// filter, the floor, the SDK's hello filter, the floor's own behaviour written with the SDK, and every filter, each
// measured twice: Envoy's CPU time per request at its maximum rate (interleaved rounds, lib/compare.ts) and Envoy's
// instructions per request under callgrind (lib/callgrind.ts), which the shared machine's load cannot move.
import { compileFilter, projectFilters } from "../../sdk/tools/compile.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { wasmFilter } from "../../test/harness/bootstrap.js";
import { envoyInstructions, type InstructionOptions, type InstructionResult } from "../lib/callgrind.js";
import { compareInEnvoy, type CompareOptions, envoyTable, summarise } from "../lib/compare.js";
import { startFastUpstream, type VariantSpec } from "../lib/envoys.js";
import { median, spreadPercent } from "../lib/stats.js";
import { BENCHES, filterVariant } from "../filters/run.js";
import { benchModuleVariant, buildVariant, VARIANTS } from "../sdk-vs-peer/build.js";

/** Issue 10's targets: added cost as a multiple of the floor's added cost. */
const HELLO_TARGET = 1.25;
const FILTER_TARGET = 1.5;

interface CostVariant {
  spec: VariantSpec;
  /** Which target applies: the SDK's hello filter, a filter, or none (baselines, the SDK's floor-alike). */
  target: number | null;
}

/** The baselines every selection keeps: the ratios are against them. */
const BASELINES = ["no-filter", "floor"];

/** `only`: the variants to run (besides no-filter and the floor, always run); all when absent. */
async function variants(log: (line: string) => void, only?: string[]): Promise<CostVariant[]> {
  const wanted = (name: string) => !only || BASELINES.includes(name) || only.includes(name);
  for (const variant of VARIANTS.filter((v) => (v.name === "floor" || v.name === "skiff-small" || v.name === "skiff") && wanted(v.name))) await buildVariant(variant);
  const present = new Map(projectFilters(PROJECT_ROOT).map((filter) => [filter.name, filter]));
  const filters = ["hello", ...BENCHES.map((bench) => bench.filter)].filter(wanted);
  for (const name of filters) {
    const filter = present.get(name);
    if (!filter) throw new Error(`filter ${name} is not in filters/`);
    await compileFilter({ ...filter, config: "asconfig.json", baseDir: PROJECT_ROOT });
  }
  log(`cost: built the floor${only ? "" : ", the SDK variants"} and ${filters.length} filters`);
  const all: CostVariant[] = [
    { spec: { name: "no-filter", description: "Envoy, router only" }, target: null },
    { spec: benchModuleVariant("floor", "the floor: 3 header reads, 1 header added, raw ABI, nothing allocated"), target: null },
    {
      spec: { name: "hello", description: "the SDK's hello filter (default build target): sets 1 response header", httpFilters: [wasmFilter("hello", { configuration: "bench" })], expectHeader: "x-skiff-hello" },
      target: HELLO_TARGET,
    },
    { spec: benchModuleVariant("skiff", "the floor's behaviour written with the SDK (target release)"), target: null },
    { spec: benchModuleVariant("skiff-small", "the floor's behaviour written with the SDK (target small)"), target: null },
    ...BENCHES.map((bench) => ({ spec: filterVariant(bench), target: FILTER_TARGET })),
  ];
  if (only) {
    const unknown = only.filter((name) => !all.some((variant) => variant.spec.name === name));
    if (unknown.length > 0) throw new Error(`cost: no variant ${unknown.join(", ")}; have ${all.map((variant) => variant.spec.name).join(", ")}`);
  }
  return all.filter((variant) => wanted(variant.spec.name));
}

function verdict(ratio: number, target: number | null): string {
  if (target === null) return "—";
  return ratio <= target ? `meets (≤ ${target}x)` : `**misses** (≤ ${target}x)`;
}

export async function runCost(envoyOptions: CompareOptions, instructionOptions: InstructionOptions, log: (line: string) => void, only?: string[]): Promise<string> {
  const all = await variants(log, only);
  const specs = all.map((variant) => variant.spec);

  const cpuRuns = await compareInEnvoy(specs, { ...envoyOptions, log });
  const cpu = summarise(cpuRuns, "no-filter");
  const cpuAdded = (name: string) => cpu.find((s) => s.name === name)!.addedCpuUs;

  const upstream = await startFastUpstream();
  const counted: InstructionResult[] = [];
  try {
    for (const spec of specs) counted.push(await envoyInstructions(spec, upstream.port, { ...instructionOptions, log }));
  } finally {
    await upstream.envoy.stop();
  }
  const instructions = (name: string) => median(counted.find((c) => c.spec.name === name)!.perRequest);
  const base = instructions("no-filter");
  const instructionsAdded = (name: string) => instructions(name) - base;

  const floorCpu = cpuAdded("floor");
  const floorInstructions = instructionsAdded("floor");
  const rows = all.map(({ spec, target }) => {
    const name = spec.name;
    const windows = counted.find((c) => c.spec.name === name)!;
    if (name === "no-filter") {
      return `| ${name} | ${spec.description} | ${cpu.find((s) => s.name === name)!.cpuUsPerRequest.toFixed(1)} | — | — | ${base.toFixed(0)} | — | — | — | ±${(spreadPercent(windows.perRequest) / 2).toFixed(2)}% |`;
    }
    const cpuRatio = cpuAdded(name) / floorCpu;
    const instructionRatio = instructionsAdded(name) / floorInstructions;
    return `| ${name} | ${spec.description} | ${cpu.find((s) => s.name === name)!.cpuUsPerRequest.toFixed(1)} | +${cpuAdded(name).toFixed(1)} | ${name === "floor" ? "1.00x" : `${cpuRatio.toFixed(2)}x`} | ${instructions(name).toFixed(0)} | +${instructionsAdded(name).toFixed(0)} | ${name === "floor" ? "1.00x" : `${instructionRatio.toFixed(2)}x`} | ${name === "floor" ? "—" : verdict(instructionRatio, target)} (CPU: ${name === "floor" ? "—" : verdict(cpuRatio, target)}) | ±${(spreadPercent(windows.perRequest) / 2).toFixed(2)}% |`;
  });
  const cpuNoise = Math.max(...cpu.map((s) => s.rpsSpreadPct / 2));
  return [
    "Added cost = the variant's figure minus Envoy with no filter's, in the same run; \"x floor\" divides it by the floor's added cost. " +
      `Targets (issue 10): the SDK's hello filter ≤ ${HELLO_TARGET}x the floor, every filter ≤ ${FILTER_TARGET}x. ` +
      "The verdict is on instructions (callgrind, Envoy process), the steady measure; the CPU-time verdict follows in brackets.",
    "",
    `| variant | what | Envoy CPU µs per request | CPU added | x floor | Envoy instructions per request | instructions added | x floor | target | instruction noise (half-range of ${instructionOptions.windows} windows) |`,
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ...rows,
    "",
    `CPU time per request: median of ${envoyOptions.rounds} interleaved rounds of ${envoyOptions.maxRateDurationS} s of wrk -t1 -c${envoyOptions.maxRateConnections} per variant; half-range over rounds up to ±${cpuNoise.toFixed(0)}%. ` +
      `Instructions: Envoy under valgrind --tool=callgrind, counting only during ${instructionOptions.windows} windows of at least ${instructionOptions.windowRequests} requests (wrk -c4) after ${instructionOptions.warmupRequests} requests of warm-up, idle instructions (timers) measured per variant and taken off.`,
    "",
    "The CPU-time runs in full (latency at a fixed rate, and the maximum rate):",
    "",
    envoyTable(cpuRuns, cpu, "no-filter"),
  ].join("\n");
}
