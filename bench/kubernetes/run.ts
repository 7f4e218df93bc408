// Kubernetes benchmark (issue 14, item 6): 1000 Services with 10,000 endpoints in EndpointSlices on a real
// kube-apiserver + etcd (test/harness/kube-apiserver.ts), the control plane watching it (`startControlPlane({
// kubernetes })`, as the tests start `skiff control-plane --kubernetes`), 1 real Envoy gateway + N simulated ADS clients
// (bench/control-plane/clients.ts, plaintext xDS: `security: { plaintext: true }`, the development mode); time from one
// EndpointSlice write to every proxy having ACKed, and the server's memory per proxy. Side by side: the folder mode
// with the same services as 1000 ServiceEntries in one YAML file, one file edit -> every proxy ACKed.
import { execFileSync, fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { stringify } from "yaml";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { type Envoy, startEnvoy, waitFor } from "../../test/harness/envoy.js";
import { type KubeCluster, type Manifest, startKubeCluster } from "../../test/harness/kube-apiserver.js";
import { track, untrack } from "../../test/harness/processes.js";
import { freePort } from "../../test/scenarios/mesh.js";

export interface KubernetesBenchOptions {
  services: number;
  endpointsPerService: number;
  proxies: number;
  changes: number;
  /** Parallel API writes while creating the objects. */
  writers: number;
}

const NAMESPACE = "bench";
const APP_PORT = 8080;

interface ModeResult {
  mode: "kubernetes" | "folder";
  setupS: number;
  initialSyncS: number;
  changeToAllAckMs: number[];
  rssBeforeMiB: number;
  rssAfterMiB: number;
  rssPerProxyKiB: number;
  heapPerProxyKiB: number;
  proxies: number;
}

/** Endpoint e's address (never loopback: the API server refuses it); `moved` gives endpoint 0 of service 0 another. */
function address(e: number, moved: number): string {
  if (e === 0 && moved > 0) return `10.200.${Math.floor(moved / 250)}.${(moved % 250) + 1}`;
  return `10.${1 + Math.floor(e / 62500)}.${Math.floor((e % 62500) / 250)}.${(e % 250) + 1}`;
}

function endpointsOf(service: number, options: KubernetesBenchOptions, moved: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < options.endpointsPerService; i++) out.push(address(service * options.endpointsPerService + i, moved));
  return out;
}

function gatewayObject(port: number): Manifest {
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "Gateway",
    metadata: { name: "gw", namespace: NAMESPACE },
    spec: { selector: { istio: "ingressgateway" }, servers: [{ port: { number: port, name: "http", protocol: "HTTP" }, hosts: ["*"] }] },
  };
}

/** One VirtualService on the Gateway routing a path prefix to each service, so the gateway holds every service's
 * EDS cluster (a gateway gets the clusters its routes reference). */
function virtualService(options: KubernetesBenchOptions): Manifest {
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "VirtualService",
    metadata: { name: "routes", namespace: NAMESPACE },
    spec: {
      hosts: ["*"],
      gateways: ["gw"],
      http: Array.from({ length: options.services }, (_, s) => ({
        match: [{ uri: { prefix: `/svc${s}/` } }],
        route: [{ destination: { host: `svc${s}.${NAMESPACE}.svc.cluster.local`, port: { number: 80 } } }],
      })),
    },
  };
}

function endpointSlice(service: number, options: KubernetesBenchOptions, moved: number): Manifest {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: `svc${service}-slice`, namespace: NAMESPACE, labels: { "kubernetes.io/service-name": `svc${service}` } },
    addressType: "IPv4",
    ports: [{ name: "http", port: APP_PORT, protocol: "TCP" }],
    endpoints: endpointsOf(service, options, moved).map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
  } as Manifest;
}

/** The same services as ServiceEntries (what the Kubernetes registry makes of a Service and its slices). */
function folderYaml(options: KubernetesBenchOptions, gatewayPort: number, moved: number): string {
  const docs: unknown[] = [gatewayObject(gatewayPort), virtualService(options)];
  for (let s = 0; s < options.services; s++) {
    docs.push({
      apiVersion: "networking.istio.io/v1",
      kind: "ServiceEntry",
      metadata: { name: `svc${s}`, namespace: NAMESPACE },
      spec: {
        hosts: [`svc${s}.${NAMESPACE}.svc.cluster.local`],
        location: "MESH_INTERNAL",
        resolution: "STATIC",
        ports: [{ number: 80, name: "http", protocol: "HTTP", targetPort: APP_PORT }],
        endpoints: endpointsOf(s, options, s === 0 ? moved : 0).map((ip) => ({ address: ip })),
      },
    });
  }
  return docs.map((doc) => stringify(doc)).join("---\n");
}

async function pool<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** Every connected stream has ACKed the newest snapshot of its proxy, for every type it holds (and, after a change, the
 * snapshot is not the one it had before: its content hash differs). */
function allSynced(controlPlane: ControlPlane, streams: number, previous: Map<string, string | undefined>): boolean {
  const status = controlPlane.xds.status();
  if (status.length < streams) return false;
  return status.every(
    (proxy) =>
      proxy.contentVersion !== undefined &&
      (!previous.has(proxy.nodeId) || previous.get(proxy.nodeId) !== proxy.contentVersion) &&
      Object.keys(proxy.types).length >= 3 &&
      Object.values(proxy.types).every((type) => type?.status === "SYNCED"),
  );
}

/** Polls the status view every 200 ms: the control plane runs in this process and status() walks every stream, so
 * polling at waitFor's 25 ms would spend a good part of its CPU on the measurement. The change's time comes from
 * the ACKs' own timestamps (lastAck), not from when a poll saw them. */
async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** When the last ACK of any proxy arrived (epoch ms), as the status view records it: once a change is everywhere,
 * the last ACK is the one that completed it. */
function lastAck(controlPlane: ControlPlane): number {
  let last = 0;
  for (const proxy of controlPlane.xds.status()) for (const type of Object.values(proxy.types)) if (type?.lastAckAt) last = Math.max(last, Date.parse(type.lastAckAt));
  return last;
}

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
async function settledMemory(): Promise<{ rss: number; heap: number }> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    gc();
  }
  const usage = process.memoryUsage();
  return { rss: usage.rss, heap: usage.heapUsed + usage.external };
}

async function measure(
  mode: "kubernetes" | "folder",
  options: KubernetesBenchOptions,
  log: (line: string) => void,
): Promise<ModeResult> {
  const gatewayPort = await freePort();
  const route = `http.${gatewayPort}`;
  const dir = mkdtempSync(join(tmpdir(), "skiff-bench-kube-"));
  const file = join(dir, "mesh.yaml");
  let cluster: KubeCluster | undefined;
  let controlPlane: ControlPlane | undefined;
  let envoy: Envoy | undefined;
  let clients: ChildProcess | undefined;
  const cpLog: string[] = [];
  const tracked = { description: `control plane (${mode}, bench)`, stop: async () => controlPlane?.stop(), logTail: () => cpLog.slice(-40).join("\n") };
  try {
    const setupStart = performance.now();
    if (mode === "kubernetes") {
      cluster = await startKubeCluster({ istioCrds: true });
      await cluster.namespace(NAMESPACE);
      await cluster.apply([gatewayObject(gatewayPort), virtualService(options)]);
      const objects: Manifest[] = [];
      for (let s = 0; s < options.services; s++) {
        objects.push({ apiVersion: "v1", kind: "Service", metadata: { name: `svc${s}`, namespace: NAMESPACE }, spec: { ports: [{ name: "http", port: 80, targetPort: APP_PORT }] } } as Manifest);
        objects.push(endpointSlice(s, options, 0));
      }
      await pool(objects, options.writers, (object) => cluster!.apply(object));
      log(`  kubernetes: ${objects.length} objects written in ${((performance.now() - setupStart) / 1000).toFixed(1)} s (API server started included)`);
    } else {
      writeFileSync(file, folderYaml(options, gatewayPort, 0));
    }
    const setupS = (performance.now() - setupStart) / 1000;
    const syncStart = performance.now();
    controlPlane = await startControlPlane({
      ...(mode === "kubernetes" ? { kubernetes: { config: cluster!.config } } : { configDir: dir }),
      xdsPort: 0,
      httpPort: 0,
      // Only the tail is kept (for a failure): every push and ACK of a thousand proxies is a line, and keeping them
      // all would count as memory per proxy.
      log: (line) => {
        cpLog.push(line);
        if (cpLog.length > 400) cpLog.splice(0, 200);
      },
      security: { plaintext: true },
    });
    track(tracked);
    envoy = await startEnvoy({
      bootstrap: bootstrap({ nodeId: "envoy-0", role: "gateway", labels: { istio: "ingressgateway" }, namespace: NAMESPACE, xdsPort: controlPlane.xds.port, adminPort: 0 }),
      readyTimeoutMs: 120_000,
    });
    await waitFor(() => allSynced(controlPlane!, 1, new Map()), "the Envoy to sync", 180_000);
    const types = Object.keys(controlPlane.xds.status()[0]!.types).length;
    log(`  ${mode}: Envoy synced (${types} types) ${((performance.now() - syncStart) / 1000).toFixed(1)} s after start`);
    const before = await settledMemory();
    clients = fork(join(PROJECT_ROOT, "bench/control-plane/clients.ts"), [String(controlPlane.xds.port), String(options.proxies), route, NAMESPACE], {
      execArgv: ["--import", "tsx", "--max-old-space-size=4096"],
      stdio: "inherit",
    });
    await until(() => allSynced(controlPlane!, options.proxies + 1, new Map()), `${options.proxies} simulated proxies to sync`, 900_000);
    const initialSyncS = (performance.now() - syncStart) / 1000;
    const after = await settledMemory();
    log(`  ${mode}: ${options.proxies} + 1 proxies synced ${initialSyncS.toFixed(1)} s after start; RSS ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB`);

    const changeToAllAckMs: number[] = [];
    for (let change = 1; change <= options.changes; change++) {
      const previous = new Map(controlPlane.xds.status().map((proxy) => [proxy.nodeId, proxy.contentVersion]));
      const yaml = mode === "folder" ? folderYaml(options, gatewayPort, change) : "";
      const start = Date.now();
      if (mode === "kubernetes") await cluster!.apply(endpointSlice(0, options, change));
      else writeFileSync(file, yaml);
      try {
        await until(() => allSynced(controlPlane!, options.proxies + 1, previous), "every proxy to ACK the change", 300_000);
      } catch (error) {
        log(JSON.stringify(controlPlane.xds.status().slice(0, 2)) + ` before: ${previous.get("envoy-0")}`);
        throw error;
      }
      changeToAllAckMs.push(lastAck(controlPlane) - start);
      log(`  ${mode}: change ${change}: ${changeToAllAckMs.at(-1)!.toFixed(0)} ms to all ${options.proxies + 1} ACKed (load ${loadavg()[0]!.toFixed(1)})`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    return {
      mode,
      setupS,
      initialSyncS,
      changeToAllAckMs,
      rssBeforeMiB: before.rss / 2 ** 20,
      rssAfterMiB: after.rss / 2 ** 20,
      rssPerProxyKiB: (after.rss - before.rss) / 1024 / options.proxies,
      heapPerProxyKiB: (after.heap - before.heap) / 1024 / options.proxies,
      proxies: options.proxies,
    };
  } catch (error) {
    log(`  ${mode} failed; control plane log tail:\n${cpLog.slice(-20).join("\n")}`);
    throw error;
  } finally {
    clients?.kill("SIGKILL");
    await envoy?.stop();
    if (controlPlane) {
      untrack(tracked);
      await controlPlane.stop();
    }
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ms = (values: number[]) => `**${median(values).toFixed(0)}** (${values.map((value) => value.toFixed(0)).join(", ")})`;

/** Runs the benchmark (inside a benchSession) and returns the body of its section of bench/RESULTS.md. */
export async function runKubernetes(options: KubernetesBenchOptions, log: (line: string) => void): Promise<string> {
  // benchSession pins the run to one CPU; here the API server, etcd, the control plane, Envoy and the simulated
  // proxies all share the machine, so every process of the run may use both CPUs.
  execFileSync("taskset", ["-a", "-p", "-c", "0-1", String(process.pid)], { stdio: "ignore" });
  const loads: number[] = [loadavg()[0]!];
  const sampler = setInterval(() => loads.push(loadavg()[0]!), 5000);
  const results: ModeResult[] = [];
  try {
    for (const mode of ["kubernetes", "folder"] as const) {
      log(`${mode}: ${options.services} services x ${options.endpointsPerService} endpoints, ${options.proxies} simulated proxies + 1 Envoy`);
      results.push(await measure(mode, options, log));
    }
  } finally {
    clearInterval(sampler);
  }
  const [kube, folder] = results as [ModeResult, ModeResult];
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  return [
    `Setup: ${options.services} Services, ${options.services * options.endpointsPerService} endpoints (${options.endpointsPerService} per Service, one EndpointSlice each, written by ${options.writers} parallel server-side applies) on a real kube-apiserver + etcd (\`test/harness/kube-apiserver.ts\`), the control plane as the tests start \`skiff control-plane --kubernetes\` (\`startControlPlane({ kubernetes })\`, in the bench's Node process) with **plaintext xDS** (\`security: { plaintext: true }\`, the development mode; no mTLS/tokens on the xDS port), 1 real Envoy gateway (\`skiff bootstrap\`) + **${options.proxies} simulated proxies** (\`bench/control-plane/clients.ts\`, one process: one gRPC channel and state-of-the-world ADS stream each, subscribing CDS/LDS wildcard, EDS for every EDS cluster, RDS by name, and ACKing everything, as gateways). A Gateway on one port and one VirtualService routing a path prefix to each service: each proxy holds ${options.services} EDS clusters. Folder mode: the same services as ${options.services} ServiceEntries (STATIC, the same addresses) , the Gateway and the VirtualService in one YAML file.`,
    `A change moves one endpoint of one service: one EndpointSlice server-side apply (kubernetes) or a rewrite of the YAML file (folder). "Change -> all ACKed" runs from the write to the moment every proxy (${options.proxies} + 1) has ACKed its new snapshot for every type it holds, as the control plane's status view reports it (includes the watch, the 100 ms debounce, translation and the push). Memory per proxy: the control plane process's RSS (and V8 heap + external) after GC with all proxies synced, minus the same with only the Envoy connected, over ${options.proxies}. Load average (1 min) sampled every 5 s during the run: min ${Math.min(...loads).toFixed(1)}, median ${median(loads).toFixed(1)}, max ${Math.max(...loads).toFixed(1)}.`,
    "",
    "| source | change -> all ACKed, ms: median (runs) | initial: control plane start -> all synced | RSS before -> after proxies | RSS per proxy | heap per proxy | setup (objects written / file) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...results.map(
      (r) =>
        `| ${r.mode} | ${ms(r.changeToAllAckMs)} | ${r.initialSyncS.toFixed(1)} s | ${r.rssBeforeMiB.toFixed(0)} -> ${r.rssAfterMiB.toFixed(0)} MiB | ${r.rssPerProxyKiB.toFixed(1)} KiB | ${r.heapPerProxyKiB.toFixed(1)} KiB | ${r.setupS.toFixed(1)} s |`,
    ),
    `| kubernetes / folder | ${ratio(median(kube.changeToAllAckMs), median(folder.changeToAllAckMs))} | ${ratio(kube.initialSyncS, folder.initialSyncS)} | | ${ratio(kube.rssPerProxyKiB, folder.rssPerProxyKiB)} | ${ratio(kube.heapPerProxyKiB, folder.heapPerProxyKiB)} | |`,
    "",
    "Single run on a shared, noisy 2-core machine (other engineers' tests running): compare orders of magnitude. The control plane, the Envoy, the simulated proxies and (kubernetes) the API server and etcd share the two cores.",
  ].join("\n");
}
