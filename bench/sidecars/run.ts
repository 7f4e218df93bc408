// Latency added by two sidecars (issue 8 item 8): a client pod calls a server pod at a fixed rate, once directly
// (pods without capture rules) and through both pods' sidecars (istio-init's rules in each pod, a sidecar Envoy in
// each): with the control plane's configuration (Istio's sidecar listeners and clusters, from a ServiceEntry), and
// with the harness's minimal passthrough configuration (the least two Envoy hops can cost). Variants are interleaved
// over rounds as in the other benchmarks; "added" is a variant minus the direct call in the same round, median over
// rounds.
//
// Security (issue 12 item 8): the same two Skiff sidecars with mutual TLS (a secured control plane; each sidecar with
// its `skiff agent` in the pod as uid 1337, as Istio runs pilot-agent, test/harness/secured-sidecar.ts; auto-mTLS
// from the client, STRICT PeerAuthentication at the server), and with mTLS plus a 50-rule ALLOW AuthorizationPolicy at
// the server. Their steady figure is the instruction count of both sidecars per request, as for the others; with
// keep-alive connections the TLS handshake happens once per connection (in the uncounted warm-up), so the per-request
// cost measured is mostly TLS's record layer (encrypt + decrypt on each side) and, for RBAC, the policy check.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ISTIO_STATS_MODULE } from "../../control/control-plane.js";
import { requireNetAdmin } from "../../control/mesh/host.js";
import { type Envoy, startEnvoy, waitFor } from "../../test/harness/envoy.js";
import { passthroughSidecarBootstrap } from "../../test/harness/passthrough-sidecar.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../../test/harness/pods.js";
import { startSecuredSidecar } from "../../test/harness/secured-sidecar.js";
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
  /** False: no latency rounds (only a short warm-up that proves each path), just the instruction counts. */
  latency: boolean;
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
  /** A stat of the client's sidecar whose growth over the counted windows the report gives. */
  windowStat?: string;
  /** The same for the sidecars counted under callgrind (given those sidecars). */
  countedProof?: (sidecars: Envoy[]) => Promise<string>;
  /** Stats of the sidecars that prove the requests took the path the variant names. */
  proof?: () => Promise<string>;
  rounds: Array<LoadResult & { sidecarCpuUsPerRequest?: number }>;
  instructions?: SidecarInstructionResult;
}

/** The secured pairs' namespace, where mTLS is STRICT. */
const SECURE_NAMESPACE = "secure";
const MTLS_SERVICE = `server.${SECURE_NAMESPACE}.svc.cluster.local`;
const RBAC_SERVICE = `server-rbac.${SECURE_NAMESPACE}.svc.cluster.local`;
const RBAC_RULES = 50;
/** The rule that names the bench's client: rules become RBAC policies `...-rule[<i>]`, which Envoy evaluates in name
 * order, so rule 9 ("rule[9]" sorts last of 0..49) is reached only after the 49 others failed on the principal. */
const RBAC_MATCHING_RULE = 9;

/** A ServiceEntry for a server pod: the client's sidecar gets an outbound route and cluster for it, the server's
 * sidecar an inbound listener chain and `inbound|8080||` cluster (its address is the endpoint's). With a service
 * account the endpoint is a workload with a sidecar (auto-mTLS) and an identity the client checks. */
function serviceEntry(server: TestPod, host = SERVICE, serviceAccount?: string): string {
  const [name, namespace] = host.split(".");
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  ports: [{ number: ${APP_PORT}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: ${server.address}${serviceAccount ? `, serviceAccount: ${serviceAccount}` : ""} }]
`;
}

/** STRICT mTLS in the secured namespace, and on the RBAC server an ALLOW policy of RBAC_RULES rules, each one caller
 * identity + methods + a path prefix; only RBAC_MATCHING_RULE names the bench's client. */
function securedConfig(): string {
  const rules = Array.from({ length: RBAC_RULES }, (_, i) => {
    const caller = i === RBAC_MATCHING_RULE ? "client" : `caller-${i}`;
    return `  - from: [{ source: { principals: [cluster.local/ns/${SECURE_NAMESPACE}/sa/${caller}] } }]
    to: [{ operation: { methods: [GET, HEAD], paths: ["/*"] } }]`;
  });
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: ${SECURE_NAMESPACE} }
spec: { mtls: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: fifty-rules, namespace: ${SECURE_NAMESPACE} }
spec:
  selector: { matchLabels: { app: server-rbac } }
  action: ALLOW
  rules:
${rules.join("\n")}
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

/** A secured sidecar (its agent in the pod, then Envoy on the agent's bootstrap), the Envoy pinned as the others; the
 * agent stays up (it serves the certificates by SDS and relays xDS, idle while the bench measures), and the callgrind
 * phase starts its fresh Envoy on the same bootstrap. */
async function startSecured(pod: TestPod, controlPlane: MeshControlPlane, serviceAccount: string): Promise<{ envoy: Envoy; bootstrap: Record<string, unknown> }> {
  const sidecar = await startSecuredSidecar(pod, controlPlane, { serviceAccount, concurrency: 1 });
  pin(sidecar.envoy.pid, ENVOY_CPU);
  return { envoy: sidecar.envoy, bootstrap: sidecar.bootstrap };
}

/** `dataDir`: the secured control plane's CA and tokens. */
async function setUp(mesh: MeshNetwork, dataDir: string): Promise<Variant[]> {
  const capture = { excludeInboundPorts: [APP_ADMIN_PORT] };
  const direct = { client: mesh.addPod("direct-client"), server: mesh.addPod("direct-server") };
  const passthrough = { client: mesh.addPod("pass-client", { capture }), server: mesh.addPod("pass-server", { capture }) };
  const skiff = {
    client: mesh.addPod("skiff-client", { capture, namespace: "bench", labels: { app: "client" } }),
    server: mesh.addPod("skiff-server", { capture, namespace: "bench", labels: { app: "server" } }),
  };
  const secured = { capture, namespace: SECURE_NAMESPACE };
  const mtls = { client: mesh.addPod("mtls-client", { ...secured, labels: { app: "client" } }), server: mesh.addPod("mtls-server", { ...secured, labels: { app: "server" } }) };
  const rbac = { client: mesh.addPod("rbac-client", { ...secured, labels: { app: "client" } }), server: mesh.addPod("rbac-server", { ...secured, labels: { app: "server-rbac" } }) };
  for (const service of [SERVICE, MTLS_SERVICE, RBAC_SERVICE]) mesh.addService(service);
  const controlPlane = await mesh.startControlPlane({ "server.yaml": serviceEntry(skiff.server) });
  const securedControlPlane = await mesh.startControlPlane(
    { "mtls.yaml": serviceEntry(mtls.server, MTLS_SERVICE, "server"), "rbac.yaml": serviceEntry(rbac.server, RBAC_SERVICE, "server"), "policy.yaml": securedConfig() },
    { security: { dataDir } },
  );
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
  const securedPair = async (pair: { client: TestPod; server: TestPod }, service: string) => {
    const started = [await startSecured(pair.client, securedControlPlane, "client"), await startSecured(pair.server, securedControlPlane, "server")];
    const ready = async ([client, server]: Envoy[]) => {
      await waitFor(async () => (await client.admin("/clusters")).includes(`outbound|${APP_PORT}||${service}`), `the client sidecar's cluster for ${service}`, 300_000);
      await waitFor(async () => (await server.admin("/clusters")).includes(`inbound|${APP_PORT}||`), `the server sidecar's inbound cluster behind ${service}`, 300_000);
    };
    const sidecars = started.map((s) => s.envoy);
    await ready(sidecars);
    return { sidecars, bootstraps: [started[0].bootstrap, started[1].bootstrap] as [Record<string, unknown>, Record<string, unknown>], ready };
  };
  const mtlsPair = await securedPair(mtls, MTLS_SERVICE);
  const rbacPair = await securedPair(rbac, RBAC_SERVICE);
  const stat = async (envoy: Envoy, name: string) => `${name}: ${(await envoy.stat(name)) ?? 0}`;
  const rbacStats = async (envoy: Envoy) => [...(await envoy.stats("rbac"))].filter(([name]) => /rbac\.(allowed|denied)$/.test(name)).map(([name, value]) => `${name}: ${value}`);
  const securedProofOf = (service: string, rbac: boolean) => async (sidecars: Envoy[]) =>
    [
      await stat(sidecars[0], `cluster.outbound|${APP_PORT}||${service}.upstream_rq_total`),
      await stat(sidecars[0], `cluster.outbound|${APP_PORT}||${service}.ssl.handshake`),
      await stat(sidecars[1], `cluster.inbound|${APP_PORT}||.upstream_rq_total`),
      ...(rbac ? await rbacStats(sidecars[1]) : []),
    ].join(", ");
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
      name: "two sidecars (Skiff, mTLS STRICT)",
      description: `the same path to ${MTLS_SERVICE}, with mutual TLS between the sidecars (auto-mTLS from the client, STRICT PeerAuthentication at the server; certificates from each pod's skiff agent, uid 1337, by SDS)`,
      ...mtls,
      target: { host: MTLS_SERVICE, headers: { host: MTLS_SERVICE } },
      sidecars: mtlsPair.sidecars,
      bootstraps: mtlsPair.bootstraps,
      ready: mtlsPair.ready,
      windowStat: `cluster.outbound|${APP_PORT}||${MTLS_SERVICE}.ssl.handshake`,
      proof: () => securedProofOf(MTLS_SERVICE, false)(mtlsPair.sidecars),
      countedProof: securedProofOf(MTLS_SERVICE, false),
      rounds: [],
    },
    {
      name: `two sidecars (Skiff, mTLS + ${RBAC_RULES}-rule RBAC)`,
      description: `as mTLS STRICT, to ${RBAC_SERVICE}, whose sidecar checks an ALLOW AuthorizationPolicy of ${RBAC_RULES} rules (a principal, methods, a path prefix each); the client's identity is in the rule Envoy evaluates last`,
      ...rbac,
      target: { host: RBAC_SERVICE, headers: { host: RBAC_SERVICE } },
      sidecars: rbacPair.sidecars,
      bootstraps: rbacPair.bootstraps,
      ready: rbacPair.ready,
      windowStat: `cluster.outbound|${APP_PORT}||${RBAC_SERVICE}.ssl.handshake`,
      proof: () => securedProofOf(RBAC_SERVICE, true)(rbacPair.sidecars),
      countedProof: securedProofOf(RBAC_SERVICE, true),
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
  const dataDir = mkdtempSync(join(tmpdir(), "skiff-bench-ca-"));
  try {
    const variants = await setUp(mesh, dataDir);
    const measure = (variant: Variant, durationMs: number) =>
      variant.load!.call<LoadResult>({ op: "openLoop", host: variant.target.host, headers: variant.target.headers, port: APP_PORT, rate: options.rate, durationMs, expectHeader: "x-upstream" });

    for (const variant of variants) await measure(variant, 1000); // Warm-up: connections, caches, JIT.
    for (let round = 0; options.latency && round < options.rounds; round++) {
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
      const pair = { name: variant.name, client: variant.client, server: variant.server, bootstraps: variant.bootstraps!, ready: variant.ready!, target: { ...variant.target, port: APP_PORT }, windowStat: variant.windowStat, proof: variant.countedProof };
      variant.instructions = await sidecarInstructions(pair, startCountedSidecar, options.instructions, log);
    }
    return report(variants, options, proofs.filter(Boolean));
  } finally {
    await mesh.stop();
    rmSync(dataDir, { recursive: true, force: true });
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
    securityRatios(withSidecars, instructions.requests),
    "",
    `The counted (callgrind) sidecars' own stats after the windows (totals, warm-up included): ${withSidecars
      .filter((v) => v.instructions?.proof)
      .map((v) => `${v.name}: ${v.instructions!.proof}`)
      .join("; ")}.`,
    "",
    `Requests counted by the sidecars ${options.latency ? "in the latency rounds" : "in the 1 s warm-up at the rate (no latency rounds in this run)"} (the path each variant names): ${proofs.join("; ")}.`,
    "",
    ...(options.latency ? latencyPart() : ["**Latency: not measured in this run** (`--instructions-only`: the rounds are not quotable on the loaded machine; see the section's earlier runs)."]),
  ].join("\n");

  function latencyPart(): string[] {
    return [
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
      "sidecars also do mTLS and telemetry, with 2 workers, 1 KB payloads, on dedicated nodes). " +
      (ISTIO_STATS_MODULE
        ? "Every Skiff pair here runs istio-stats, Istio's standard metrics, which the control plane attaches by default; only the mTLS rows do mTLS; on two shared cores."
        : "istio-stats was not built (`npm run build`), so no Skiff pair here records Istio's metrics; only the mTLS rows do mTLS; on two shared cores."),
    ];
  }
}

/** mTLS against the plain-text Skiff pair and the 50-rule RBAC against mTLS alone, from the instruction counts: ratio of
 * the medians, and the range of the ratios of the windows (window i against window i). */
function securityRatios(variants: Variant[], windowRequests: number): string {
  const counts = (name: string) => variants.find((variant) => variant.name === name)?.instructions?.perRequest;
  const ratio = (name: string, baseline: string) => {
    const [a, b] = [counts(name), counts(baseline)];
    if (!a || !b) return `${name} vs ${baseline}: not measured`;
    const perWindow = a.map((value, i) => value / b[Math.min(i, b.length - 1)]);
    const extra = Math.round(median(a) - median(b)).toLocaleString("en-US");
    return `${name} vs ${baseline}: **${(median(a) / median(b)).toFixed(2)}x** (${extra} instructions per request; window ratios ${Math.min(...perWindow).toFixed(2)}-${Math.max(...perWindow).toFixed(2)})`;
  };
  const requests = (name: string) => {
    const variant = variants.find((v) => v.name === name);
    return variant?.instructions ? `${variant.instructions.windowStatDelta ?? "?"} in ${variant.instructions.perRequest.length * windowRequests} requests (${name})` : "";
  };
  return [
    "Security (issue 12 item 8), from the same counts: " + ratio("two sidecars (Skiff, mTLS STRICT)", "two sidecars (Skiff)") + "; " +
      ratio(`two sidecars (Skiff, mTLS + ${RBAC_RULES}-rule RBAC)`, "two sidecars (Skiff, mTLS STRICT)") + ".",
    `TLS handshakes by the client sidecar during the counted windows: ${[requests("two sidecars (Skiff, mTLS STRICT)"), requests(`two sidecars (Skiff, mTLS + ${RBAC_RULES}-rule RBAC)`)].join(", ")}. ` +
    "The connections are keep-alive and the TLS handshakes happen in the uncounted warm-up, once per connection: the mTLS figure is per-request " +
      "record-layer cost (AES-GCM encrypt/decrypt of each request and response on both sidecars, TLS framing), not handshakes; a workload opening a " +
      "connection per request pays the handshake (asymmetric crypto, certificate checks) on top.",
  ].join("\n");
}
