// The soak behind the choice of the preset's default build target (issue 10): every filter, built with each
// production target, serves wrk at its maximum rate for a long run in a 2-worker Envoy, and we look for what a short
// test cannot show: memory that keeps growing (the `small` target's runtime collects only when the SDK asks), a VM
// that fails, failed requests, and the CPU each target costs per request.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { compileFilter, projectFilters } from "../../sdk/tools/compile.js";
import { startEnvoy } from "../../test/harness/envoy.js";
import { wasmFilter } from "../../test/harness/bootstrap.js";
import { BENCHES } from "../filters/run.js";
import { startFastUpstream, variantBootstrap, type VariantSpec } from "../lib/envoys.js";
import { cpuSeconds, ENVOY_CPU, pin } from "../lib/session.js";
import { wrk } from "../lib/wrk.js";

export interface SoakOptions {
  warmupS: number;
  durationS: number;
  /** Memory is sampled this often during the run. */
  sampleS: number;
}

const TARGETS = ["release", "small"] as const;

function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : NaN;
}

interface SoakResult {
  filter: string;
  target: string;
  bytes: number;
  requests: number;
  errors: number;
  cpuUsPerRequest: number;
  /** RSS after warm-up, at the middle of the run, and at its end (MiB). */
  rss: number[];
  vmFailures: string;
}

async function soakOne(spec: VariantSpec, filter: string, target: string, bytes: number, upstreamPort: number, options: SoakOptions, log: (line: string) => void): Promise<SoakResult> {
  const envoy = await startEnvoy({ bootstrap: variantBootstrap(spec, upstreamPort), concurrency: 2 });
  try {
    pin(envoy.pid, ENVOY_CPU);
    const port = await envoy.listenerPort();
    await wrk(port, { durationS: options.warmupS, connections: 16, headers: spec.requestHeaders });
    const rss = [rssMiB(envoy.pid)];
    const cpuBefore = cpuSeconds(envoy.pid);
    let requests = 0;
    let errors = 0;
    for (let elapsed = 0; elapsed < options.durationS; elapsed += options.sampleS) {
      const run = await wrk(port, { durationS: options.sampleS, connections: 16, headers: spec.requestHeaders });
      requests += run.requests;
      errors += run.errors;
      rss.push(rssMiB(envoy.pid));
    }
    const cpuUsPerRequest = ((cpuSeconds(envoy.pid) - cpuBefore) * 1e6) / requests;
    await sleep(200);
    // A trap fails the VM: Envoy logs it (critical, or "Function: proxy_on_... failed") and the plugin fails open.
    const failed = envoy.log().split("\n").filter((line) => /\[critical\]|Function: proxy_on_\w+ failed|Uncaught|wasm.*(abort|unreachable)/.test(line));
    const vmFailures = failed.length === 0 ? "none" : `${failed.length} (${failed[0].slice(0, 160)})`;
    log(`soak ${filter} (${target}): ${requests} requests, ${errors} errors, ${cpuUsPerRequest.toFixed(1)} µs CPU/request, RSS ${rss.map((r) => r.toFixed(0)).join(" -> ")} MiB, VM failures: ${vmFailures}`);
    return { filter, target, bytes, requests, errors, cpuUsPerRequest, rss, vmFailures };
  } finally {
    await envoy.stop();
  }
}

export async function runSoak(options: SoakOptions, log: (line: string) => void): Promise<string> {
  const filters = new Map(projectFilters(PROJECT_ROOT).map((f) => [f.name, f]));
  const cases = [
    { filter: "hello", spec: (module: string): VariantSpec => ({ name: "hello", description: "", httpFilters: [moduleFilter("hello", module, "soak")] }) },
    ...BENCHES.map((bench) => ({
      filter: bench.filter,
      spec: (module: string): VariantSpec => ({ ...bench.variant, name: bench.filter, description: "", httpFilters: [moduleFilter(bench.filter, module, JSON.stringify(bench.configuration))] }),
    })),
  ];
  const upstream = await startFastUpstream();
  const results: SoakResult[] = [];
  try {
    for (const { filter, spec } of cases) {
      for (const target of TARGETS) {
        const source = filters.get(filter)!;
        const module = await compileFilter({
          entry: source.entry, outFile: join("build", "bench", "soak", `${filter}.${target}.wasm`), config: "asconfig.json", target, baseDir: PROJECT_ROOT,
        });
        results.push(await soakOne(spec(module), filter, target, readFileSync(module).length, upstream.port, options, log));
      }
    }
  } finally {
    await upstream.envoy.stop();
  }
  const rows = results.map((r) => {
    const growth = r.rss.at(-1)! - r.rss[1];
    const perMillion = (growth / r.requests) * 1e6;
    return `| ${r.filter} | ${r.target} | ${r.bytes} | ${r.requests} | ${r.errors} | ${r.vmFailures} | ${r.cpuUsPerRequest.toFixed(1)} | ${r.rss.map((x) => x.toFixed(0)).join(" → ")} | ${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MiB (${perMillion.toFixed(1)} MiB per million requests) |`;
  });
  return [
    `Each filter, built with each production target of the preset, in a 2-worker Envoy (pinned to one CPU) at wrk's maximum rate (-c16): ${options.warmupS} s of warm-up, then ${options.durationS} s with the Envoy process's resident memory sampled every ${options.sampleS} s. Memory growth is counted from the first sample of the run, after V8 and the allocator have settled.`,
    "",
    "| filter | target | module bytes | requests | failed | Wasm VM failures | Envoy CPU µs per request | resident MiB over the run | growth after the first sample |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ...rows,
  ].join("\n");
}

/** The filter's Wasm entry with an explicit module path (a build of a given target). */
function moduleFilter(name: string, module: string, configuration: string): unknown {
  const filter = wasmFilter(name, { configuration }) as { typed_config: { config: { vm_config: { code: { local: { filename: string } } } } } };
  filter.typed_config.config.vm_config.code.local.filename = module;
  return filter;
}
