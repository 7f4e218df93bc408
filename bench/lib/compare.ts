// Measures a set of Envoy variants in one run, interleaved: every round visits every variant (in a rotated order,
// so no variant always runs first or right after another), first at a fixed rate (latency), then saturated (max
// rate). Medians over the rounds are reported, with the spread, because the machine's two cores are shared.
import { openLoop } from "./open-loop.js";
import { cpuSeconds } from "./session.js";
import { median, percentile, spreadPercent } from "./stats.js";
import { type PinnedEnvoy, startFastUpstream, startVariant, type VariantSpec } from "./envoys.js";
import { wrk } from "./wrk.js";

export interface CompareOptions {
  rounds: number;
  /** Fixed request rate for the latency runs, requests per second. */
  rate: number;
  latencyDurationMs: number;
  maxRateDurationS: number;
  /** wrk connections for the max-rate runs. */
  maxRateConnections: number;
  log?: (line: string) => void;
}

export interface VariantResult {
  spec: VariantSpec;
  /** Per round. */
  p50Us: number[];
  p99Us: number[];
  /** How late the generator wrote requests against its schedule (p99), per round. */
  lagUs: number[];
  maxRps: number[];
  /** Envoy's CPU use during the max-rate runs, as a fraction of one core (1.0 = saturated). */
  envoyCpu: number[];
  /** Envoy CPU time per request during the max-rate runs, microseconds. */
  cpuUsPerRequest: number[];
  errors: number;
  requests: number;
  maxRateErrors: number;
  lagP99Us: number;
  /** The proofStats counters at the end of the run (non-zero ones). */
  proof: string;
}

export interface Summary {
  name: string;
  description: string;
  p50Us: number;
  p99Us: number;
  /** Latency added versus the baseline, paired per round, median of rounds (microseconds). */
  addedP50Us: number;
  addedP99Us: number;
  maxRps: number;
  /** Max rate relative to the baseline's (1.0 = as fast). */
  rpsRatio: number;
  envoyCpu: number;
  cpuUsPerRequest: number;
  /** Envoy CPU per request above the baseline's, paired per round, median (microseconds). */
  addedCpuUs: number;
  /** Requests per second one saturated worker would complete: 1 / (CPU time per request). */
  capacityRps: number;
  capacityRatio: number;
  p50SpreadPct: number;
  p99SpreadPct: number;
  rpsSpreadPct: number;
  errors: number;
  requests: number;
  maxRateErrors: number;
  lagP99Us: number;
  /** The proofStats counters at the end of the run (non-zero ones). */
  proof: string;
}

export async function compareInEnvoy(specs: VariantSpec[], options: CompareOptions): Promise<VariantResult[]> {
  const log = options.log ?? (() => {});
  const upstream = await startFastUpstream();
  const envoys: PinnedEnvoy[] = [];
  for (const spec of specs) envoys.push(await startVariant(spec, upstream.port));
  const results: VariantResult[] = specs.map((spec) => ({ spec, p50Us: [], p99Us: [], lagUs: [], maxRps: [], envoyCpu: [], cpuUsPerRequest: [], errors: 0, requests: 0, maxRateErrors: 0, lagP99Us: 0, proof: "" }));
  // Warm-up: connections, Wasm VMs and JIT tiers settle before anything is recorded.
  for (const envoy of envoys) await openLoop({ port: envoy.port, rate: options.rate, durationMs: 1000 });
  for (let round = 0; round < options.rounds; round++) {
    const order = specs.map((_, i) => (i + round) % specs.length);
    for (const i of order) {
      const run = await openLoop({
        port: envoys[i].port,
        rate: options.rate,
        durationMs: options.latencyDurationMs,
        expectHeader: specs[i].expectHeader,
        headers: specs[i].requestHeaders,
      });
      const result = results[i];
      result.p50Us.push(percentile(run.latenciesUs, 50));
      result.p99Us.push(percentile(run.latenciesUs, 99));
      result.errors += run.errors;
      result.requests += run.sent;
      result.lagP99Us = Math.max(result.lagP99Us, run.lagP99Us);
      result.lagUs.push(run.lagP99Us);
      log(`round ${round + 1} ${specs[i].name}: p50 ${result.p50Us.at(-1)!.toFixed(0)} us, p99 ${result.p99Us.at(-1)!.toFixed(0)} us, errors ${run.errors}, lag p99 ${run.lagP99Us.toFixed(0)} us`);
    }
    for (const i of order) {
      const cpuBefore = cpuSeconds(envoys[i].pid);
      const started = Date.now();
      const run = await wrk(envoys[i].port, { durationS: options.maxRateDurationS, connections: options.maxRateConnections, headers: specs[i].requestHeaders });
      const elapsedS = (Date.now() - started) / 1000;
      const cpuUsed = cpuSeconds(envoys[i].pid) - cpuBefore;
      const cpu = cpuUsed / elapsedS;
      results[i].maxRps.push(run.requestsPerSecond);
      results[i].envoyCpu.push(cpu);
      results[i].cpuUsPerRequest.push((cpuUsed * 1e6) / (run.requestsPerSecond * options.maxRateDurationS));
      results[i].maxRateErrors += run.errors;
      log(`round ${round + 1} ${specs[i].name}: ${run.requestsPerSecond.toFixed(0)} req/s, envoy cpu ${(cpu * 100).toFixed(0)}%, errors ${run.errors}`);
    }
  }
  for (let i = 0; i < specs.length; i++) {
    const filter = specs[i].proofStats;
    if (!filter) continue;
    const stats = await envoys[i].envoy.stats(filter);
    results[i].proof = [...stats].filter(([, value]) => value > 0).map(([name, value]) => `${name}: ${value}`).join(", ") || "all zero";
  }
  for (const envoy of envoys) await envoy.envoy.stop();
  await upstream.envoy.stop();
  return results;
}

/** A latency round counts only if the generator kept its schedule for every variant in it (write lag p99 under
 * this): a larger lag means the load side itself was starved by other processes, and the latencies of that round
 * measure the machine, not Envoy. */
export const CLEAN_LAG_US = 2000;
/** With fewer clean rounds than this, every round is used (and the table says so). */
const MIN_CLEAN_ROUNDS = 3;

/** Which rounds' latencies to use: the clean ones if there are enough, else all. */
export function latencyRounds(results: VariantResult[]): { rounds: number[]; clean: boolean; cleanCount: number; total: number } {
  const total = results[0]?.p50Us.length ?? 0;
  const all = Array.from({ length: total }, (_, i) => i);
  const clean = all.filter((i) => results.every((r) => r.lagUs[i] < CLEAN_LAG_US));
  return clean.length >= MIN_CLEAN_ROUNDS
    ? { rounds: clean, clean: true, cleanCount: clean.length, total }
    : { rounds: all, clean: false, cleanCount: clean.length, total };
}

/** Medians over rounds, and each variant against `baseline` (paired per round, then the median). Latencies come
 * from the clean rounds (latencyRounds); CPU and rate figures from all rounds. */
export function summarise(results: VariantResult[], baseline: string): Summary[] {
  const base = results.find((r) => r.spec.name === baseline);
  if (!base) throw new Error(`no baseline variant ${baseline}`);
  const { rounds } = latencyRounds(results);
  const pick = (values: number[]) => rounds.map((i) => values[i]);
  return results.map((r) => ({
    name: r.spec.name,
    description: r.spec.description,
    p50Us: median(pick(r.p50Us)),
    p99Us: median(pick(r.p99Us)),
    addedP50Us: median(rounds.map((i) => r.p50Us[i] - base.p50Us[i])),
    addedP99Us: median(rounds.map((i) => r.p99Us[i] - base.p99Us[i])),
    maxRps: median(r.maxRps),
    rpsRatio: median(r.maxRps.map((v, i) => v / base.maxRps[i])),
    envoyCpu: median(r.envoyCpu),
    cpuUsPerRequest: median(r.cpuUsPerRequest),
    addedCpuUs: median(r.cpuUsPerRequest.map((v, i) => v - base.cpuUsPerRequest[i])),
    capacityRps: 1e6 / median(r.cpuUsPerRequest),
    capacityRatio: median(r.cpuUsPerRequest.map((v, i) => base.cpuUsPerRequest[i] / v)),
    p50SpreadPct: spreadPercent(pick(r.p50Us)),
    p99SpreadPct: spreadPercent(pick(r.p99Us)),
    rpsSpreadPct: spreadPercent(r.cpuUsPerRequest),
    errors: r.errors,
    requests: r.requests,
    maxRateErrors: r.maxRateErrors,
    lagP99Us: r.lagP99Us,
    proof: r.proof,
  }));
}

/** The Envoy table of RESULTS.md, with a line on which rounds the latencies come from. */
export function envoyTable(results: VariantResult[], summaries: Summary[], baseline: string): string {
  const { rounds, clean, cleanCount, total } = latencyRounds(results);
  const roundsLine = clean
    ? `Latencies from the ${rounds.length} clean rounds of ${total} (rounds where the generator's write lag p99 stayed under ${CLEAN_LAG_US} µs for every variant); CPU and rate figures from all ${total} rounds.`
    : `Only ${cleanCount} of ${total} rounds were clean (generator write lag p99 under ${CLEAN_LAG_US} µs for every variant), fewer than ${MIN_CLEAN_ROUNDS}: latencies are from ALL rounds and mostly measure the machine's load, not Envoy.`;
  const rows = summaries.map((s) =>
    `| ${s.name} | ${s.description} | ${s.p50Us.toFixed(0)} | ${s.name === baseline ? "—" : `${signed(s.addedP50Us)}`} | ${s.p99Us.toFixed(0)} | ${s.name === baseline ? "—" : signed(s.addedP99Us)} | ${s.maxRps.toFixed(0)} | ${s.rpsRatio.toFixed(2)}x | ${(s.envoyCpu * 100).toFixed(0)}% | ${s.cpuUsPerRequest.toFixed(1)} | ${s.name === baseline ? "—" : signed(s.addedCpuUs, 1)} | ${s.capacityRps.toFixed(0)} | ${s.capacityRatio.toFixed(2)}x | ±${(s.p50SpreadPct / 2).toFixed(0)}% / ±${(s.p99SpreadPct / 2).toFixed(0)}% / ±${(s.rpsSpreadPct / 2).toFixed(0)}% | ${s.errors} of ${s.requests}; ${s.maxRateErrors} |`,
  );
  return [
    roundsLine,
    "",
    `| variant | what | p50 µs | p50 added µs | p99 µs | p99 added µs | max req/s (wrk) | vs ${baseline} | Envoy CPU at max | Envoy CPU µs per request | CPU µs added | one-worker capacity req/s | capacity vs ${baseline} | noise p50 / p99 / CPU per request (half-range over rounds) | errors: fixed rate; max rate |`,
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...rows,
  ].join("\n");
}

function signed(value: number, digits = 0): string {
  return `${value >= 0 ? "+" : ""}${value.toFixed(digits)}`;
}
