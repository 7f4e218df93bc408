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
  /** Stats of the sidecars that prove the requests took the path the variant names. */
  proof?: () => Promise<string>;
  rounds: Array<LoadResult & { sidecarCpuUsPerRequest?: number }>;
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
  raisePriority(sidecar.pid);
  return sidecar;
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
  const skiffSidecars = [await startSidecar(skiff.client, skiff.client.sidecarBootstrap(controlPlane)), await startSidecar(skiff.server, skiff.server.sidecarBootstrap(controlPlane))];
  await waitFor(async () => (await skiffSidecars[0].admin("/listeners")).includes(`0.0.0.0:${APP_PORT}`), "the client sidecar's outbound listener");
  await waitFor(async () => (await skiffSidecars[1].admin("/clusters")).includes(`inbound|${APP_PORT}||`), "the server sidecar's inbound cluster");
  const passthroughSidecars = [
    await startSidecar(passthrough.client, passthroughSidecarBootstrap(passthrough.client.name)),
    await startSidecar(passthrough.server, passthroughSidecarBootstrap(passthrough.server.name)),
  ];
  const stat = async (envoy: Envoy, name: string) => `${name}: ${(await envoy.stat(name)) ?? 0}`;
  const variants: Variant[] = [
    { name: "direct", description: "client pod -> server pod, no capture, no sidecar", ...direct, target: { host: direct.server.address }, sidecars: [], rounds: [] },
    {
      name: "two sidecars (Skiff)",
      description: `client -> ${SERVICE} (a service address), captured to the client's sidecar, routed by the control plane's configuration to the server pod, captured to its sidecar (15006), delivered to the app`,
      ...skiff,
      target: { host: SERVICE, headers: { host: SERVICE } },
      sidecars: skiffSidecars,
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
    raisePriority(app.pid);
    variant.load = await variant.client.startApp({ agent: "bench/sidecars/load-agent.ts", uid: APP_UID });
    pin(variant.load.pid, LOAD_CPU);
    raisePriority(variant.load.pid);
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
        const cpuUsed = variant.sidecars.reduce((sum, sidecar) => sum + cpuSeconds(sidecar.pid), 0) - cpuBefore;
        variant.rounds.push({ ...result, ...(variant.sidecars.length ? { sidecarCpuUsPerRequest: (cpuUsed * 1e6) / result.sent } : {}) });
        log(`round ${round + 1} ${variant.name}: p50 ${result.p50Us.toFixed(0)} us, p90 ${result.p90Us.toFixed(0)} us, p99 ${result.p99Us.toFixed(0)} us, errors ${result.errors}, lag p99 ${result.lagP99Us.toFixed(0)} us`);
      }
    }
    const proofs = await Promise.all(variants.map(async (variant) => (variant.proof ? `${variant.name}: ${await variant.proof()}` : "")));
    return report(variants, options, proofs.filter(Boolean));
  } finally {
    await mesh.stop();
  }
}

type Percentile = "p50Us" | "p90Us" | "p99Us";

function report(variants: Variant[], options: SidecarBenchOptions, proofs: string[]): string {
  const [direct, ...withSidecars] = variants;
  const all = direct.rounds.map((_, i) => i);
  const cleanRounds = all.filter((i) => variants.every((v) => v.rounds[i].lagP99Us < CLEAN_LAG_US));
  const rounds = cleanRounds.length >= 3 ? cleanRounds : all;
  const value = (variant: Variant, p: Percentile) => median(rounds.map((i) => variant.rounds[i][p]));
  const added = (variant: Variant, p: Percentile) => rounds.map((i) => variant.rounds[i][p] - direct.rounds[i][p]);
  const halfRange = (values: number[]) => (Math.max(...values) - Math.min(...values)) / 2;
  const errors = (variant: Variant) => `${variant.rounds.reduce((sum, r) => sum + r.errors, 0)} of ${variant.rounds.reduce((sum, r) => sum + r.sent, 0)}`;
  const ms = (us: number) => (us / 1000).toFixed(3);
  const addedCell = (variant: Variant, p: Percentile) => `+${ms(median(added(variant, p)))} ±${ms(halfRange(added(variant, p)))}`;
  const cpu = (variant: Variant) => variant.rounds.map((r) => r.sidecarCpuUsPerRequest!);
  return [
    cleanRounds.length >= 3
      ? `Latencies from the ${rounds.length} clean rounds of ${all.length} (generator write lag p99 under ${CLEAN_LAG_US} µs for every variant).`
      : `Only ${cleanRounds.length} of ${all.length} rounds were clean (generator write lag p99 under ${CLEAN_LAG_US} µs for every variant): latencies are from ALL rounds and measure the machine's load as much as the sidecars.`,
    "",
    "| variant | what | p50 µs | p90 µs | p99 µs | errors |",
    "| --- | --- | ---: | ---: | ---: | --- |",
    ...variants.map((v) => `| ${v.name} | ${v.description} | ${value(v, "p50Us").toFixed(0)} | ${value(v, "p90Us").toFixed(0)} | ${value(v, "p99Us").toFixed(0)} | ${errors(v)} |`),
    "",
    "Added to the direct call: the paired difference per round, median over rounds, ± its half-range over rounds (the noise); the sidecars' CPU from /proc, the steadier figure.",
    "",
    "| variant | p50 added ms | p90 added ms | p99 added ms | p90 vs direct | CPU of both sidecars, µs per request | vCPU of both at the rate |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...withSidecars.map(
      (v) =>
        `| ${v.name} | ${addedCell(v, "p50Us")} | ${addedCell(v, "p90Us")} | ${addedCell(v, "p99Us")} | ${(value(v, "p90Us") / value(direct, "p90Us")).toFixed(2)}x | ` +
        `${median(cpu(v)).toFixed(1)} ±${halfRange(cpu(v)).toFixed(1)} | ${((median(cpu(v)) * options.rate) / 1e6).toFixed(2)} |`,
    ),
    "",
    `Requests counted by the sidecars (the path each variant names): ${proofs.join("; ")}.`,
    "",
    "Anchor: Istio publishes +0.23 ms P90 and +0.30 ms P99 for two sidecars at 1000 req/s (Istio 1.20 performance page; its " +
      "sidecars also do mTLS and telemetry, with 2 workers, 1 KB payloads, on dedicated nodes). These sidecars do neither, on two shared cores.",
  ].join("\n");
}
