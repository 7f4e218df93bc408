// Latency added by two sidecars (issue 8 item 8): a client pod calls a server pod at a fixed rate, once directly
// (pods without capture rules) and once through both pods' sidecars (istio-init's rules in each pod, a sidecar Envoy
// on 15001/15006 in each), the same call over the same bridge. Variants are interleaved over rounds as in the other
// benchmarks; "added" is the sidecar variant minus the direct one in the same round, median over rounds.
import { requireNetAdmin } from "../../control/mesh/host.js";
import type { Envoy } from "../../test/harness/envoy.js";
import { startEnvoy } from "../../test/harness/envoy.js";
import { passthroughSidecarBootstrap } from "../../test/harness/passthrough-sidecar.js";
import { type PodApp, startMeshNetwork, type TestPod } from "../../test/harness/pods.js";
import { CLEAN_LAG_US } from "../lib/compare.js";
import { fastUpstreamBootstrap } from "../lib/envoys.js";
import { cpuSeconds, ENVOY_CPU, LOAD_CPU, pin, raisePriority } from "../lib/session.js";
import { median } from "../lib/stats.js";
import type { LoadResult } from "./load-agent.js";

export interface SidecarBenchOptions {
  rounds: number;
  /** Requests per second. */
  rate: number;
  durationMs: number;
}

const APP_PORT = 8080;
/** The app's own Envoy admin port: excluded from capture so the bench can reach it from the host. */
const APP_ADMIN_PORT = 9901;
/** The apps run as an ordinary user, not as the sidecar's 1337. */
const APP_UID = 1000;

interface Variant {
  name: string;
  description: string;
  client: TestPod;
  server: TestPod;
  load?: PodApp;
  sidecars: Envoy[];
  rounds: Array<LoadResult & { sidecarCpuUsPerRequest?: number }>;
}

export async function runSidecars(options: SidecarBenchOptions, log: (line: string) => void): Promise<string> {
  requireNetAdmin("the sidecar benchmark");
  const mesh = startMeshNetwork();
  try {
    const capture = { excludeInboundPorts: [APP_ADMIN_PORT] };
    const variants: Variant[] = [
      { name: "direct", description: "client pod -> server pod, no capture, no sidecar", client: mesh.addPod("direct-client"), server: mesh.addPod("direct-server"), sidecars: [], rounds: [] },
      {
        name: "two sidecars",
        description: "client pod -> its sidecar (15001) -> server pod's sidecar (15006) -> server app, both by istio-init's capture rules",
        client: mesh.addPod("mesh-client", { capture }),
        server: mesh.addPod("mesh-server", { capture }),
        sidecars: [],
        rounds: [],
      },
    ];
    for (const variant of variants) {
      if (variant.client.record.capture) {
        // One worker each, both on the Envoy CPU, as the other benchmarks run the Envoy under test.
        for (const pod of [variant.client, variant.server]) {
          const sidecar = await pod.startSidecar({ bootstrap: passthroughSidecarBootstrap(pod.name), concurrency: 1 });
          pin(sidecar.pid, ENVOY_CPU);
          raisePriority(sidecar.pid);
          variant.sidecars.push(sidecar);
        }
      }
      // The server app: an Envoy answering 200 itself (a Node server would limit the rate first), on the load CPU.
      const app = await startEnvoy({
        bootstrap: fastUpstreamBootstrap({ address: "0.0.0.0", port: APP_PORT }),
        concurrency: 1,
        pod: { netns: variant.server.netns, address: variant.server.address, uid: APP_UID, adminPort: APP_ADMIN_PORT },
      });
      pin(app.pid, LOAD_CPU);
      raisePriority(app.pid);
      variant.load = await variant.client.startApp({ agent: "bench/sidecars/load-agent.ts", uid: APP_UID });
      pin(variant.load.pid, LOAD_CPU);
      raisePriority(variant.load.pid);
    }
    const measure = (variant: Variant, durationMs: number) =>
      variant.load!.call<LoadResult>({ op: "openLoop", host: variant.server.address, port: APP_PORT, rate: options.rate, durationMs, expectHeader: "x-upstream" });

    for (const variant of variants) await measure(variant, 1000); // Warm-up: connections, caches, JIT.
    for (let round = 0; round < options.rounds; round++) {
      for (const i of variants.map((_, index) => (index + round) % variants.length)) {
        const variant = variants[i];
        const cpuBefore = variant.sidecars.reduce((sum, sidecar) => sum + cpuSeconds(sidecar.pid), 0);
        const result = await measure(variant, options.durationMs);
        const cpuUsed = variant.sidecars.reduce((sum, sidecar) => sum + cpuSeconds(sidecar.pid), 0) - cpuBefore;
        variant.rounds.push({ ...result, ...(variant.sidecars.length ? { sidecarCpuUsPerRequest: (cpuUsed * 1e6) / result.sent } : {}) });
        log(`round ${round + 1} ${variant.name}: p50 ${result.p50Us.toFixed(0)} us, p90 ${result.p90Us.toFixed(0)} us, p99 ${result.p99Us.toFixed(0)} us, errors ${result.errors}, lag p99 ${result.lagP99Us.toFixed(0)} us`);
      }
    }
    return report(variants, options);
  } finally {
    await mesh.stop();
  }
}

type Percentile = "p50Us" | "p90Us" | "p99Us";

function report(variants: Variant[], options: SidecarBenchOptions): string {
  const [direct, sidecars] = variants;
  const all = direct.rounds.map((_, i) => i);
  const cleanRounds = all.filter((i) => variants.every((v) => v.rounds[i].lagP99Us < CLEAN_LAG_US));
  const rounds = cleanRounds.length >= 3 ? cleanRounds : all;
  const value = (variant: Variant, p: Percentile) => median(rounds.map((i) => variant.rounds[i][p]));
  const added = (p: Percentile) => rounds.map((i) => sidecars.rounds[i][p] - direct.rounds[i][p]);
  const halfRange = (values: number[]) => (Math.max(...values) - Math.min(...values)) / 2;
  const errors = (variant: Variant) => `${variant.rounds.reduce((sum, r) => sum + r.errors, 0)} of ${variant.rounds.reduce((sum, r) => sum + r.sent, 0)}`;
  const cpu = sidecars.rounds.map((r) => r.sidecarCpuUsPerRequest!);
  const ms = (us: number) => (us / 1000).toFixed(3);
  return [
    cleanRounds.length >= 3
      ? `Latencies from the ${rounds.length} clean rounds of ${all.length} (generator write lag p99 under ${CLEAN_LAG_US} µs for both variants).`
      : `Only ${cleanRounds.length} of ${all.length} rounds were clean (generator write lag p99 under ${CLEAN_LAG_US} µs for both variants): latencies are from ALL rounds and measure the machine's load as much as the sidecars.`,
    "",
    "| variant | what | p50 µs | p90 µs | p99 µs | errors |",
    "| --- | --- | ---: | ---: | ---: | --- |",
    ...variants.map((v) => `| ${v.name} | ${v.description} | ${value(v, "p50Us").toFixed(0)} | ${value(v, "p90Us").toFixed(0)} | ${value(v, "p99Us").toFixed(0)} | ${errors(v)} |`),
    "",
    "| added by two sidecars | p50 | p90 | p99 |",
    "| --- | ---: | ---: | ---: |",
    `| ms (median over rounds of the paired difference) | +${ms(median(added("p50Us")))} | +${ms(median(added("p90Us")))} | +${ms(median(added("p99Us")))} |`,
    `| noise: half-range over rounds, ms | ±${ms(halfRange(added("p50Us")))} | ±${ms(halfRange(added("p90Us")))} | ±${ms(halfRange(added("p99Us")))} |`,
    `| ratio to the direct call | ${(value(sidecars, "p50Us") / value(direct, "p50Us")).toFixed(2)}x | ${(value(sidecars, "p90Us") / value(direct, "p90Us")).toFixed(2)}x | ${(value(sidecars, "p99Us") / value(direct, "p99Us")).toFixed(2)}x |`,
    "",
    "Anchor: Istio publishes +0.23 ms P90 and +0.30 ms P99 for two sidecars at 1000 req/s (Istio 1.20 performance page; its sidecars " +
      "also do mTLS and telemetry, with 2 workers, 1 KB payloads, on dedicated nodes). The sidecars here do neither, on two shared cores.",
    "",
    `CPU of the two sidecars together: ${median(cpu).toFixed(1)} µs per request (±${halfRange(cpu).toFixed(1)} over rounds), i.e. ` +
      `${((median(cpu) * options.rate) / 1e6).toFixed(2)} vCPU at ${options.rate} req/s for both (from /proc: little moved by other load).`,
  ].join("\n");
}
