// Functional check of a module in a real Envoy (no valgrind): a few requests, then the istio stats and the log.
import { resolve } from "node:path";
import { compileFilter } from "../sdk/tools/compile.js";
import { startEnvoy } from "../test/harness/envoy.js";
import { variantBootstrap, startFastUpstream } from "../bench/lib/envoys.js";
import { benchSession } from "../bench/lib/session.js";
const ROOT = resolve(import.meta.dirname, "..");
const CONFIG = JSON.parse(process.env.CONFIG ?? JSON.stringify({ reporter: "source", workload: "istio-ingressgateway", namespace: "istio-system", app: "istio-ingressgateway", version: "unknown" }));
await benchSession(async () => {
  const wasm = "/tmp/sdkprof/check.wasm";
  await compileFilter({ entry: resolve(process.argv[2]), outFile: wasm, config: "asconfig.json", baseDir: ROOT });
  const upstream = await startFastUpstream();
  const spec = { name: "c", description: "c", httpFilters: [{ name: "skiff.istio-stats", typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: { name: "istio-stats", root_id: "istio-stats", configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: process.env.RAWCONFIG ?? JSON.stringify(CONFIG) },
        failure_policy: "FAIL_OPEN", vm_config: { vm_id: "istio-stats", runtime: "envoy.wasm.runtime.v8", code: { local: { filename: wasm } } } } } }] };
  const envoy = await startEnvoy({ bootstrap: variantBootstrap(spec, upstream.port), concurrency: 1, args: ["--component-log-level", "wasm:debug"] });
  try {
    const port = await envoy.listenerPort();
    for (let i = 0; i < 1; i++) { const r = await fetch(`http://127.0.0.1:${port}/x`); await r.text(); console.log("status", r.status); }
    await new Promise((r) => setTimeout(r, 500));
    console.log((await envoy.admin("/stats?filter=istio")).split("\n").filter(Boolean).filter((l) => l.includes("istio_requests_total") || l.includes("istio_response_bytes")).slice(0, 8).join("\n"));
    console.log(envoy.log().split("\n").filter((l) => /EVAL|create failed|expr_|istio-stats:|error/.test(l)).slice(-10).join("\n"));
  } finally { await envoy.stop(); await upstream.envoy.stop(); }
});
