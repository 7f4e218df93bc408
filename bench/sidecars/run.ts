// Latency added by two sidecars (issue 8 item 8): a client pod calls a server pod at a fixed rate, once directly
// (pods without capture rules) and through both pods' sidecars (istio-init's rules in each pod, a sidecar Envoy in
// each): with the control plane's configuration (Istio's sidecar listeners and clusters, from a ServiceEntry), and
// with the harness's minimal passthrough configuration (the least two Envoy hops can cost). Variants are interleaved
// over rounds as in the other benchmarks; "added" is a variant minus the direct call in the same round, median over
// rounds.
import { requireNetAdmin } from "../../control/mesh/host.js";
import { type Envoy, startEnvoy, waitFor } from "../../test/harness/envoy.js";
import { passthroughSidecarBootstrap } from "../../test/harness/passthrough-sidecar.js";
import { type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../../test/harness/pods.js";
import { CLEAN_LAG_US } from "../lib/compare.js";
import { fastUpstreamBootstrap } from "../lib/envoys.js";
import { cpuSeconds, ENVOY_CPU, LOAD_CPU, pin } from "../lib/session.js";
import { median } from "../lib/stats.js";
import { type SidecarInstructionOptions, type SidecarInstructionResult, sidecarInstructions } from "./instructions.js";
import type { LoadResult } from "./load-agent.js";

export interface SidecarBenchOptions {
  rounds: number;
  /** Requests per second. */
  rate: number;
  durationMs: number;
  instructions: SidecarInstructionOptions;
}

const APP_PORT = 8080;
/** The app's own Envoy admin port: excluded from capture so the bench reaches it from the host. */
const APP_ADMIN_PORT = 9901;
/** The apps run as an ordinary user, not as the sidecars' 1337. */
const APP_UID = 1000;
/** The server's name in the mesh (a ServiceEntry for the control plane, a service address in every pod's hosts). */
const SERVICE = "server.bench.svc.cluster.local";

interface Variant {
  name: string;
  description: string;
  client: TestPod;
  server: TestPod;
  /** Where the client sends: the server pod's address, or the service's name (and Host). */
  target: { host: string; headers?: Record<string, string> };
  load?: PodApp;
  sidecars: Envoy[];
  /** The sidecars' bootstraps (client's, server's), and what says they have their configuration. */
  bootstraps?: [Record<string, unknown>, Record<string, unknown>];
  ready?: (sidecars: Envoy[]) => Promise<void>;
  /** Stats of the sidecars that prove the requests took the path the variant names. */
  proof?: () => Promise<string>;
  rounds: Array<LoadResult & { sidecarCpuUsPerRequest?: number }>;
  instructions?: SidecarInstructionResult;
}

/** A ServiceEntry for the server pod: the client's sidecar gets an outbound route and cluster for it, the server's
 * sidecar an inbound listener chain and `inbound|8080||` cluster (its address is the endpoint's). */
function serviceEntry(server: TestPod): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: server, namespace: bench }
spec:
  hosts: [${SERVICE}]
  location: MESH_INTERNAL
  ports: [{ number: ${APP_PORT}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: ${server.address} }]
`;
}

async function startSidecar(pod: TestPod, bootstrap: Record<string, unknown>): Promise<Envoy> {
  // One worker each, both on the Envoy CPU, as the other benchmarks run the Envoy under test.
  const sidecar = await pod.startSidecar({ bootstrap, concurrency: 1 });
  pin(sidecar.pid, ENVOY_CPU);
  return sidecar;
}

/** A sidecar under callgrind (not pinned: its instruction count does not depend on which CPU runs it, or when). */
function startCountedSidecar(pod: TestPod, bootstrap: Record<string, unknown>, wrapper: string[]): Promise<Envoy> {
  return pod.startSidecar({ bootstrap, concurrency: 1, wrapper, readyTimeoutMs: 300_000 });
}

async function setUp(mesh: MeshNetwork): Promise<Variant[]> {
  const capture = { excludeInboundPorts: [APP_ADMIN_PORT] };
  const direct = { client: mesh.addPod("direct-client"), server: mesh.addPod("direct-server") };
  const passthrough = { client: mesh.addPod("pass-client", { capture }), server: mesh.addPod("pass-server", { capture }) };
  const skiff = {
    client: mesh.addPod("skiff-client", { capture, namespace: "bench", labels: { app: "client" } }),
    server: mesh.addPod("skiff-server", { capture, namespace: "bench", labels: { app: "server" } }),
  };
  mesh.addService(SERVICE);
  const controlPlane = await mesh.startControlPlane({ "server.yaml": serviceEntry(skiff.server) });
  const skiffBootstraps: [Record<string, unknown>, Record<string, unknown>] = [skiff.client.sidecarBootstrap(controlPlane), skiff.server.sidecarBootstrap(controlPlane)];
  // Slow Envoys (under callgrind) take long to get and apply their configuration.
  const skiffReady = async ([client, server]: Envoy[]) => {
    await waitFor(async () => (await client.admin("/listeners")).includes(`0.0.0.0:${APP_PORT}`), "the client sidecar's outbound listener", 300_000);
    await waitFor(async () => (await server.admin("/clusters")).includes(`inbound|${APP_PORT}||`), "the server sidecar's inbound cluster", 300_000);
  };
  const skiffSidecars = [await startSidecar(skiff.client, skiffBootstraps[0]), await startSidecar(skiff.server, skiffBootstraps[1])];
  await skiffReady(skiffSidecars);
  const passthroughBootstraps: [Record<string, unknown>, Record<string, unknown>] = [passthroughSidecarBootstrap(passthrough.client.name), passthroughSidecarBootstrap(passthrough.server.name)];
  const passthroughSidecars = [await startSidecar(passthrough.client, passthroughBootstraps[0]), await startSidecar(passthrough.server, passthroughBootstraps[1])];
  const stat = async (envoy: Envoy, name: string) => `${name}: ${(await envoy.stat(name)) ?? 0}`;
  const variants: Variant[] = [
    { name: "direct", description: "client pod -> server pod, no capture, no sidecar", ...direct, target: { host: direct.server.address }, sidecars: [], rounds: [] },
    {
      name: "two sidecars (Skiff)",
      description: `client -> ${SERVICE} (a service address), captured to the client's sidecar, routed by the control plane's configuration to the server pod, captured to its sidecar (15006), delivered to the app`,
      ...skiff,
      target: { host: SERVICE, headers: { host: SERVICE } },
      sidecars: skiffSidecars,
      bootstraps: skiffBootstraps,
      ready: skiffReady,
      proof: async () =>
        [await stat(skiffSidecars[0], `cluster.outbound|${APP_PORT}||${SERVICE}.upstream_rq_total`), await stat(skiffSidecars[1], `cluster.inbound|${APP_PORT}||.upstream_rq_total`)].join(", "),
      rounds: [],
    },
    {
      name: "two sidecars (passthrough)",
      description: "client -> server pod's address, captured to the client's sidecar (15001) and the server's (15006), each passing HTTP on to the original destination: the least two Envoy hops cost",
      ...passthrough,
      target: { host: passthrough.server.address },
      sidecars: passthroughSidecars,
      bootstraps: passthroughBootstraps,
      ready: async () => {},
      proof: async () =>
        [await stat(passthroughSidecars[0], "cluster.PassthroughCluster.upstream_rq_total"), await stat(passthroughSidecars[1], "cluster.InboundPassthroughCluster.upstream_rq_total")].join(", "),
      rounds: [],
    },
  ];
  for (const variant of variants) {
    // The server app: an Envoy answering 200 itself (a Node server would limit the rate first), on the load CPU.
    const app = await startEnvoy({
      bootstrap: fastUpstreamBootstrap({ address: "0.0.0.0", port: APP_PORT }),
      concurrency: 1,
      pod: { netns: variant.server.netns, address: variant.server.address, uid: APP_UID, adminPort: APP_ADMIN_PORT },
    });
    pin(app.pid, LOAD_CPU);
    variant.load = await variant.client.startApp({ agent: "bench/sidecars/load-agent.ts", uid: APP_UID });
    pin(variant.load.pid, LOAD_CPU);
  }
  return variants;
}

export async function runSidecars(options: SidecarBenchOptions, log: (line: string) => void): Promise<string> {
  requireNetAdmin("the sidecar benchmark");
  const mesh = startMeshNetwork();
  try {
    const variants = await setUp(mesh);
    const measure = (variant: Variant, durationMs: number) =>
      variant.load!.call<LoadResult>({ op: "openLoop", host: variant.target.host, headers: variant.target.headers, port: APP_PORT, rate: options.rate, durationMs, expectHeader: "x-upstream" });

    for (const variant of variants) await measure(variant, 1000); // Warm-up: connections, caches, JIT.
    for (let round = 0; round < options.rounds; round++) {
      for (const i of variants.map((_, index) => (index + round) % variants.length)) {
        const variant = variants[i];
        const cpuBefore = variant.sidecars.reduce((sum, sidecar) => sum + cpuSeconds(sidecar.pid), 0);
        const result = await measure(variant, options.durationMs);
        // A run in which nothing was answered has no percentiles (NaN, sent as null).
        for (const key of ["p50Us", "p90Us", "p99Us", "lagP99Us"] as const) result[key] ??= NaN;
        const cpuUsed = variant.sidecars.reduce((sum, sidecar) => sum + cpuSeconds(sidecar.pid), 0) - cpuBefore;
        variant.rounds.push({ ...result, ...(variant.sidecars.length ? { sidecarCpuUsPerRequest: (cpuUsed * 1e6) / Math.max(1, result.sent - result.errors) } : {}) });
        log(`round ${round + 1} ${variant.name}: p50 ${us(result.p50Us)} us, p90 ${us(result.p90Us)} us, p99 ${us(result.p99Us)} us, errors ${result.errors} of ${result.sent}, lag p99 ${us(result.lagP99Us)} us`);
      }
    }
    const proofs = await Promise.all(variants.map(async (variant) => (variant.proof ? `${variant.name}: ${await variant.proof()}` : "")));

    // The steady figure: each pair's instructions per request, by fresh sidecars under callgrind in the same pods.
    for (const variant of variants.filter((v) => v.bootstraps)) {
      for (const sidecar of variant.sidecars) await sidecar.stop(); // Their ports (15001, 15006) are the new ones'.
      const pair = { name: variant.name, client: variant.client, server: variant.server, bootstraps: variant.bootstraps!, ready: variant.ready!, target: { ...variant.target, port: APP_PORT } };
      variant.instructions = await sidecarInstructions(pair, startCountedSidecar, options.instructions, log);
    }
    return report(variants, options, proofs.filter(Boolean));
  } finally {
    await mesh.stop();
  }
}

type Percentile = "p50Us" | "p90Us" | "p99Us";

function us(value: number): string {
  return Number.isFinite(value) ? value.toFixed(0) : "none";
}

function report(variants: Variant[], options: SidecarBenchOptions, proofs: string[]): string {
  const [direct, ...withSidecars] = variants;
  const all = direct.rounds.map((_, i) => i);
  const cleanRounds = all.filter((i) => variants.every((v) => v.rounds[i].lagP99Us < CLEAN_LAG_US && v.rounds[i].errors === 0));
  const clean = cleanRounds.length >= 3;
  const rounds = clean ? cleanRounds : all;
  const value = (variant: Variant, p: Percentile) => median(rounds.map((i) => variant.rounds[i][p]));
  const added = (variant: Variant, p: Percentile) => rounds.map((i) => variant.rounds[i][p] - direct.rounds[i][p]);
  const halfRange = (values: number[]) => (Math.max(...values) - Math.min(...values)) / 2;
  const errors = (variant: Variant) => `${variant.rounds.reduce((sum, r) => sum + r.errors, 0)} of ${variant.rounds.reduce((sum, r) => sum + r.sent, 0)}`;
  const ms = (us: number) => (us / 1000).toFixed(3);
  const addedCell = (variant: Variant, p: Percentile) => `+${ms(median(added(variant, p)))} ±${ms(halfRange(added(variant, p)))}`;
  const cpu = (variant: Variant) => rounds.map((i) => variant.rounds[i].sidecarCpuUsPerRequest!);
  const instructions = options.instructions;
  const baseline = median(withSidecars.find((v) => v.name === "two sidecars (passthrough)")!.instructions!.perRequest);
  const count = (n: number) => Math.round(n).toLocaleString("en-US");
  return [
    "",
    "**Instructions of both sidecars per request** (valgrind callgrind in each sidecar Envoy, started afresh in the same pods after the latency rounds; " +
      `closed loop from the client pod, ${instructions.concurrency} keep-alive connections, ${instructions.windows} windows of ${instructions.requests} requests after ${instructions.warmupRequests} uncounted; ` +
      `both sidecars' idle cost, measured in ${instructions.idleS} s without requests, taken off): the figure neither the machine's load nor the run's nice value moves. ` +
      "Median over windows, ± half-range; each window's value in the last column.",
    "",
    "| variant | instructions per request, both sidecars | vs passthrough | idle, M instructions/s | per window |",
    "| --- | ---: | ---: | ---: | --- |",
    ...withSidecars.map((v) => {
      const counts = v.instructions!.perRequest;
      return `| ${v.name} | ${count(median(counts))} ±${count(halfRange(counts))} | ${(median(counts) / baseline).toFixed(2)}x | ${(v.instructions!.idlePerSecond / 1e6).toFixed(2)} | ${counts.map(count).join(", ")} |`;
    }),
    "",
    `Requests counted by the sidecars in the latency rounds (the path each variant names): ${proofs.join("; ")}.`,
    "",
    clean
      ? `**Latency at ${options.rate} req/s** from the ${rounds.length} clean rounds of ${all.length} (generator write lag p99 under ${CLEAN_LAG_US} µs and no failed request, for every variant).`
      : `**Latency at ${options.rate} req/s: not quotable from this run.** Only ${cleanRounds.length} of ${all.length} rounds were clean (generator write lag p99 under ${CLEAN_LAG_US} µs and no failed request, ` +
        "for every variant): in the others the run's processes did not get the CPU to keep the rate, so queues on the shared cores, not the sidecars, make these " +
        "percentiles (all rounds, below); no differences or CPU figures are derived from them.",
    "",
    "| variant | what | p50 µs | p90 µs | p99 µs | failed requests |",
    "| --- | --- | ---: | ---: | ---: | --- |",
    ...variants.map((v) => `| ${v.name} | ${v.description} | ${us(value(v, "p50Us"))} | ${us(value(v, "p90Us"))} | ${us(value(v, "p99Us"))} | ${errors(v)} |`),
    ...(clean
      ? [
          "",
          "Added to the direct call: the paired difference per round, median over rounds, ± its half-range over rounds (the noise); the sidecars' CPU time from /proc per answered request.",
          "",
          "| variant | p50 added ms | p90 added ms | p99 added ms | p90 vs direct | CPU of both sidecars, µs per request | vCPU of both at the rate |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
          ...withSidecars.map(
            (v) =>
              `| ${v.name} | ${addedCell(v, "p50Us")} | ${addedCell(v, "p90Us")} | ${addedCell(v, "p99Us")} | ${(value(v, "p90Us") / value(direct, "p90Us")).toFixed(2)}x | ` +
              `${median(cpu(v)).toFixed(1)} ±${halfRange(cpu(v)).toFixed(1)} | ${((median(cpu(v)) * options.rate) / 1e6).toFixed(2)} |`,
          ),
        ]
      : []),
    "",
    "Anchor: Istio publishes +0.23 ms P90 and +0.30 ms P99 for two sidecars at 1000 req/s (Istio 1.20 performance page; its " +
      "sidecars also do mTLS and telemetry, with 2 workers, 1 KB payloads, on dedicated nodes). These sidecars do neither, on two shared cores.",
  ].join("\n");
}
