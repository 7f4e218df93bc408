// Private profiling: Envoy instructions per request under callgrind for module variants, with a split by object.
// usage: tsx scratch/prof.ts name=entry.ts[@config.json] ...  (name "no-filter" = no filter)
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, mkdirSync, copyFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { compileFilter } from "../sdk/tools/compile.js";
import { startEnvoy } from "../test/harness/envoy.js";
import { variantBootstrap, startFastUpstream, type VariantSpec } from "../bench/lib/envoys.js";
import { benchSession, ENVOY_CPU, pin } from "../bench/lib/session.js";
import { callgrindControl, countedWindow } from "../bench/lib/callgrind.js";
import { wrk } from "../bench/lib/wrk.js";
const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "..");
const CONFIG = { reporter: "source", workload: "istio-ingressgateway", namespace: "istio-system", app: "istio-ingressgateway", version: "unknown" };
const WARM = Number(process.env.WARM ?? 1500), WIN = Number(process.env.WIN ?? 1500), WINDOWS = Number(process.env.WINDOWS ?? 2);
const OUT = process.env.OUT ?? "/tmp/sdkprof";
mkdirSync(OUT, { recursive: true });

async function load(port: number, n: number, headers?: Record<string, string>) {
  let done = 0;
  while (done < n) { const r = await wrk(port, { durationS: 3, connections: 4, timeoutS: 60, headers }); if (r.errors) throw new Error(`errors ${r.errors}`); done += r.requests; }
  return done;
}

await benchSession(async () => {
  const specs: VariantSpec[] = [];
  for (const arg of process.argv.slice(2)) {
    const [name, entry] = arg.split("=");
    if (name === "no-filter") { specs.push({ name, description: name }); continue; }
    const wasm = join(OUT, `${name}.wasm`);
    await compileFilter({ entry: resolve(entry), outFile: wasm, config: "asconfig.json", baseDir: ROOT });
    specs.push({ name, description: name, httpFilters: [{ name: "skiff.istio-stats", typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: { name: "istio-stats", root_id: "istio-stats", configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: JSON.stringify(CONFIG) },
        failure_policy: "FAIL_OPEN", vm_config: { vm_id: "istio-stats", runtime: "envoy.wasm.runtime.v8", code: { local: { filename: wasm } } } } } }] });
  }
  const upstream = await startFastUpstream();
  try {
    for (const spec of specs) {
      const dir = join(OUT, `cg-${spec.name}`);
      await run("rm", ["-rf", dir]); mkdirSync(dir);
      const envoy = await startEnvoy({ bootstrap: variantBootstrap(spec, upstream.port), concurrency: 1, readyTimeoutMs: 180_000,
        wrapper: ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", "--dump-instr=yes", `--callgrind-out-file=${dir}/callgrind.%p`] });
      try {
        pin(envoy.pid, ENVOY_CPU);
        const port = await envoy.listenerPort();
        await load(port, WARM);
        await callgrindControl(envoy.pid, "-i", "on");
        const idle = await countedWindow(envoy.pid, dir, () => sleep(3000));
        const per: number[] = [];
        for (let i = 0; i < WINDOWS; i++) {
          let n = 0;
          const w = await countedWindow(envoy.pid, dir, async () => { n = await load(port, WIN); });
          per.push((w.instructions - idle.instructions / idle.seconds * w.seconds) / n);
        }
        console.log(`RESULT ${spec.name} ${per.map((p) => p.toFixed(0)).join(" ")} (idle ${(idle.instructions / idle.seconds / 1e6).toFixed(1)}M/s)`);
      } finally { await envoy.stop(); }
    }
  } finally { await upstream.envoy.stop(); }
});
