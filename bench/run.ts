// The one command for every benchmark: `npm run bench [-- sdk-vs-peer|filters] [--quick]`.
// Writes each benchmark's section into bench/RESULTS.md (between its markers; other sections are kept) and prints it.
import { execFileSync } from "node:child_process";
import { getPriority } from "node:os";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../control/envoy-binary/locate.js";
import type { CompareOptions } from "./lib/compare.js";
import { benchSession, ensureAptTool, loadAverage, machineFacts } from "./lib/session.js";
import { runCost } from "./cost/run.js";
import { runSoak } from "./soak/run.js";
import { runFilters } from "./filters/run.js";
import { runInstructions } from "./sdk-vs-peer/instructions.js";
import { runSdkVsPeer } from "./sdk-vs-peer/run.js";
import { runSidecars } from "./sidecars/run.js";
import { runKubernetes } from "./kubernetes/run.js";
import { runTcpExchange } from "./tcp-exchange/run.js";
import { hasNetAdmin } from "../control/mesh/host.js";
import { writeResultsSection } from "./lib/results.js";

const BENCHMARKS = ["sdk-vs-peer", "instructions", "filters", "cost", "soak", "sidecars", "kubernetes", "tcp-exchange"] as const;
const TITLES: Record<(typeof BENCHMARKS)[number], string> = {
  "sdk-vs-peer": "SDK vs peer (issue 3, item 7): size, guest time, inside Envoy",
  instructions: "SDK vs peer: instructions per request (valgrind)",
  filters: "Filters (issue 4): latency added and one-worker capacity, against no filter and Envoy's native features",
  cost: "Cost against the floor (issue 10): Envoy CPU and Envoy instructions per request, the SDK and every filter",
  soak: "Soak of the build targets (issue 10): every filter, release and small, at maximum rate for minutes",
  sidecars: "Two sidecars (issue 8, item 8): their instructions per request, and the latency they add between two pods at a fixed rate",
  kubernetes: "Kubernetes as the source (issue 14, item 6): EndpointSlice change -> every proxy ACKed, memory per proxy, against the folder mode",
  "tcp-exchange": "Istio's TCP metadata exchange (issue 11): Envoy instructions per mTLS connection through two Envoys, with and without it",
};

const { values, positionals } = parseArgs({ allowPositionals: true, options: { quick: { type: "boolean", default: false }, rounds: { type: "string" }, "instructions-only": { type: "boolean", default: false }, proxies: { type: "string" }, variants: { type: "string" } } });
// --variants a,b (cost only): run those variants beside no filter and the floor; the run writes its own section
// (cost-selected), so a partial run never replaces the full run's table.
const selected = values.variants?.split(",").map((name) => name.trim()).filter(Boolean);
if (selected && (positionals.length !== 1 || positionals[0] !== "cost")) throw new Error("--variants applies to the cost benchmark alone: npm run bench -- cost --variants istio-stats,hello");
// The sidecar benchmark makes pods (root only); run without root and without naming it, the others still run.
const which = positionals.length > 0 ? positionals : BENCHMARKS.filter((name) => name !== "kubernetes" && name !== "tcp-exchange" && (name !== "sidecars" || hasNetAdmin()));
if (!which.includes("sidecars") && positionals.length === 0) console.log("not root: the sidecars benchmark (pods) is skipped");
if (positionals.length === 0) console.log("the kubernetes benchmark (kube-apiserver + etcd, about 10 minutes) runs only when named: npm run bench -- kubernetes");
for (const name of which) if (!(BENCHMARKS as readonly string[]).includes(name)) throw new Error(`unknown benchmark ${name}; have ${BENCHMARKS.join(", ")}`);

// --quick: a smoke run to check the harness (numbers not worth reporting).
const envoyOptions: CompareOptions = values.quick
  ? { rounds: 1, rate: 500, latencyDurationMs: 1500, maxRateDurationS: 2, maxRateConnections: 16 }
  : { rounds: Number(values.rounds ?? 8), rate: 1000, latencyDurationMs: 3000, maxRateDurationS: 3, maxRateConnections: 16 };
const guestOptions = values.quick ? { rounds: 2, requestsPerRound: 10_000 } : { rounds: 15, requestsPerRound: 40_000 };
const sidecarOptions = values.quick
  ? { rounds: 1, rate: 500, durationMs: 1500, latency: !values["instructions-only"], instructions: { warmupRequests: 50, requests: 100, windows: 1, concurrency: 4, idleS: 2 } }
  : { rounds: Number(values.rounds ?? 8), rate: 1000, durationMs: 3000, latency: !values["instructions-only"], instructions: { warmupRequests: 100, requests: 300, windows: 3, concurrency: 4, idleS: 5 } };
const kubernetesOptions = values.quick
  ? { services: 50, endpointsPerService: 10, proxies: Number(values.proxies ?? 20), changes: 2, writers: 16 }
  : { services: 1000, endpointsPerService: 10, proxies: Number(values.proxies ?? 1000), changes: Number(values.rounds ?? 5), writers: 16 };
const soakOptions = values.quick ? { warmupS: 3, durationS: 6, sampleS: 3 } : { warmupS: 10, durationS: 90, sampleS: 15 };
const tcpExchangeOptions = values.quick
  ? { warmupConnections: 20, windowConnections: 40, windows: 1, concurrency: 4, idleS: 2 }
  : { warmupConnections: 50, windowConnections: 150, windows: 3, concurrency: 4, idleS: 5 };
const instructionOptions = values.quick ? { warmupRequests: 200, windowRequests: 300, windows: 1 } : { warmupRequests: 1500, windowRequests: 1500, windows: 3 };

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

await benchSession(async () => {
  if (which.includes("sdk-vs-peer") || which.includes("filters")) ensureAptTool("wrk", "wrk", log);
  if (which.includes("instructions") || which.includes("cost") || which.includes("sidecars") || which.includes("tcp-exchange")) ensureAptTool("valgrind", "valgrind", log);
  if (which.includes("cost") || which.includes("soak")) ensureAptTool("wrk", "wrk", log);
  for (const name of which) {
    const facts = machineFacts();
    const command = `npm run bench -- ${name}${values.quick ? " --quick" : ""}${values.rounds ? ` --rounds ${values.rounds}` : ""}${values["instructions-only"] ? " --instructions-only" : ""}${values.proxies ? ` --proxies ${values.proxies}` : ""}${selected ? ` --variants ${selected.join(",")}` : ""}`;
    log(`${name}: starting (${JSON.stringify(facts)})`);
    const body =
      name === "sdk-vs-peer" ? await runSdkVsPeer(envoyOptions, guestOptions, log)
      : name === "instructions" ? await runInstructions(log)
      : name === "cost" ? await runCost(envoyOptions, instructionOptions, log, selected)
      : name === "soak" ? await runSoak(soakOptions, log)
      : name === "sidecars" ? await runSidecars(sidecarOptions, log)
      : name === "kubernetes" ? await runKubernetes(kubernetesOptions, log)
      : name === "tcp-exchange" ? await runTcpExchange(tcpExchangeOptions, log)
      : await runFilters(envoyOptions, log);
    const header = [
      selected ? `## Cost against the floor, selected variants (${selected.join(", ")}): Envoy CPU and instructions per request, beside no filter and the floor` : `## ${TITLES[name as (typeof BENCHMARKS)[number]]}`,
      "",
      `Measured ${facts.date} with \`${command}\`${values.quick ? " (QUICK SMOKE RUN: not representative)" : ""}.`,
      name === "kubernetes" ? `Machine: ${facts.nproc} CPUs (${facts.cpuModel}), load average (1/5/15 min) at start ${facts.loadAverage}, at end ${loadAverage()} (other engineers' test runs share the two cores); Envoy ${facts.envoy}; Node ${facts.node}; every process of the run unpinned (both CPUs). Git commit ${gitHead()}.` :
      `Machine: ${facts.nproc} CPUs (${facts.cpuModel}), load average (1/5/15 min) at start ${facts.loadAverage}, at end ${loadAverage()} ` +
        `(other engineers' test runs share the two cores); Envoy ${facts.envoy}, --concurrency 1, pinned to CPU 0; ` +
        `load generators, upstream Envoy and Node on CPU 1; Node ${facts.node}; ${facts.wrk}. Git commit ${gitHead()}.`,
      name === "instructions" || name === "soak" || name === "kubernetes" || name === "tcp-exchange" ? "" :
      name === "sidecars" && !sidecarOptions.latency ? "No latency rounds (--instructions-only): the sidecars' instruction counts only; every process of the run at nice " + getPriority() + "." :
      name === "sidecars" ? `${sidecarOptions.rounds} rounds, each variant per round: ${sidecarOptions.durationMs / 1000} s at ${sidecarOptions.rate} req/s (open loop from the client pod, 8+ keep-alive connections); both sidecars on CPU 0, the load generator and the server app on CPU 1; every process of the run at nice ${getPriority()}.` :
        `Envoy runs: ${envoyOptions.rounds} rounds, each variant per round: ${envoyOptions.latencyDurationMs / 1000} s at ${envoyOptions.rate} req/s (open loop, 8+ keep-alive connections), then ${envoyOptions.maxRateDurationS} s of wrk -t1 -c${envoyOptions.maxRateConnections}.`,
      "",
    ].join("\n");
    writeResultsSection(selected ? `${name}-selected` : name, header + body);
    console.log(`\n${header}${body}\n`);
  }
});

function gitHead(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: PROJECT_ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain"], { cwd: PROJECT_ROOT, encoding: "utf8" }).trim() ? " + uncommitted changes" : "";
    return head + dirty;
  } catch {
    return "unknown";
  }
}
