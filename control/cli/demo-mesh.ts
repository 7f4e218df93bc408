// `skiff demo`'s mesh layout (Linux, root): webapp and catalog v1/v2 each in a pod of the mesh network "demo"
// (control/mesh) with istio-init's capture rules and a sidecar Envoy, configured by the control plane listening on the
// mesh's host address; the gateway Envoy on the host in front. webapp calls catalog by its service name: its sidecar
// captures the call and routes it by the mesh VirtualService (90/10, the internal cohort to v2), the catalog pod's
// sidecar captures it inbound and hands it to the app.
//
// The control plane reads examples/ through a generated folder, .skiff-demo/ beside it: the same files, with the
// ServiceEntry endpoints' 127.0.0.1 replaced by the pods' addresses (matched by their app and version labels) and
// marked with the pod's service account (so clients use mutual TLS to them: auto-mTLS, and check that identity), and
// meshconfig.yaml's tracing collectors at 127.0.0.1 moved to the mesh's host address (a sidecar's 127.0.0.1 is its
// pod's own; the host, where Jaeger runs, is reachable from a pod only at the bridge address). Edits in examples/ are
// carried over within a second, so the demo follows them as the loopback layout does.
//
// The collector cluster is the sidecar Envoy's own connection (uid 1337), which the capture rules leave alone and
// no listener sees: Sidecar egress and outboundTrafficPolicy (REGISTRY_ONLY in examples/) govern the app's traffic,
// not it. It is plain text, like Istio's Zipkin cluster to a collector outside the mesh; STRICT mutual TLS is about
// what the pods accept, and Prometheus scrapes each sidecar's admin port (15000), which capture leaves alone as
// Istio's leaves its 15090.
//
// Secured as Istio runs it: the control plane is the mesh's CA and serves xDS over TLS only to proxies presenting a
// workload certificate. Each pod runs `skiff agent` as the proxy's uid (1337, as pilot-agent shares the pod and uid
// with Envoy; capture leaves uid 1337's connections alone): it gets the pod's certificate with a bootstrap token,
// serves it to the pod's Envoy by SDS on a Unix socket and relays Envoy's xDS over mTLS. The gateway Envoy on the host
// has an agent too (in this process). examples/security.yaml makes mutual TLS STRICT mesh-wide and lets only webapp
// and the gateway call catalog.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parseDocument, stringify } from "yaml";
import type { Agent } from "../agent/agent.js";
import { podAgentLaunch } from "../agent/pod.js";
import { type ControlPlane, startControlPlane } from "../control-plane.js";
import { PROXY_UID, SIDECAR_ADMIN_PORT } from "../mesh/capture.js";
import { ensureMeshPrerequisites } from "../mesh/host.js";
import { addPod, addService, createMesh, deleteMesh, type PodRecord, podCommand } from "../mesh/mesh.js";
import { MESH_CONFIG_FILE } from "../sources/parse.js";
import type { DemoService } from "./demo-services.js";

export const DEMO_MESH = "demo";
const NAMESPACE = "istioinaction";
const PODS: Record<DemoService, Record<string, string>> = {
  webapp: { app: "webapp", version: "v1" },
  "catalog-v1": { app: "catalog", version: "v1" },
  "catalog-v2": { app: "catalog", version: "v2" },
};
const SERVICE_NAMES = ["webapp.istioinaction.svc.cluster.local", "catalog.istioinaction.svc.cluster.local"];
/** The pods' service accounts (their app label), and the gateway's identity: Istio's ingress gateway defaults. */
const serviceAccountOf = (pod: PodRecord) => pod.labels.app!;
export const GATEWAY_IDENTITY = { namespace: "istio-system", serviceAccount: "istio-ingressgateway-service-account" };

export interface MeshDemo {
  /** The mesh's host address: where the control plane listens (xDS and HTTP) for the gateway and the sidecars. */
  hostAddress: string;
  pods: PodRecord[];
  /** Starts the gateway's agent (in this process) and returns its Envoy's bootstrap: ADS and SDS through the agent. */
  gatewayBootstrap(node: { nodeId: string; labels: Record<string, string> }, adminPort: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startMeshDemo(options: { root: string; envoyPath: string; xdsPort: number; httpPort: number; log: (line: string) => void }): Promise<MeshDemo> {
  const { root, log } = options;
  ensureMeshPrerequisites("skiff demo", log);
  let record;
  try {
    record = createMesh(DEMO_MESH, { owner: "process", log });
  } catch (error) {
    throw new Error(`${(error as Error).message}\n(a demo that crashed left its mesh behind: \`npx skiff mesh cleanup\` removes it)`);
  }
  const processes: ChildProcess[] = [];
  const agents: ChildProcess[] = [];
  const temp = mkdtempSync(join(tmpdir(), "skiff-demo-pods-"));
  chmodSync(temp, 0o755); // the agents and sidecars (uid 1337) have their folders here
  const data = mkdtempSync(join(tmpdir(), "skiff-demo-ca-")); // the CA's root and key: this run's, root only
  let controlPlane: ControlPlane | undefined;
  let gatewayAgent: Agent | undefined;
  let stopWatching = () => {};
  const configDir = join(root, ".skiff-demo");
  const stop = async () => {
    stopWatching();
    // The Envoys and apps first, then the agents they talk to (an Envoy whose agent left first complains in the log).
    for (const group of [processes, agents]) {
      for (const child of group) child.kill("SIGTERM");
      await Promise.all(group.map((child) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once("exit", resolve)))));
    }
    await gatewayAgent?.stop();
    await controlPlane?.stop();
    // The gateway agent's connection to the control plane is between two sockets of this process on the bridge
    // address: let both close while that address exists, or their last segments go nowhere and the open sockets keep
    // this process alive for minutes after the mesh is gone.
    if (gatewayAgent) await sleep(300);
    deleteMesh(DEMO_MESH);
    rmSync(temp, { recursive: true, force: true });
    rmSync(data, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  };
  try {
    const pods = Object.entries(PODS).map(([name, labels]) => addPod(DEMO_MESH, name, { capture: true, namespace: NAMESPACE, labels }));
    for (const name of SERVICE_NAMES) addService(DEMO_MESH, name);

    const examples = join(root, "examples");
    const generate = () => writeMeshConfig(examples, configDir, pods, record.hostAddress);
    generate();
    stopWatching = watchFolder(examples, generate, log);
    controlPlane = await startControlPlane({
      configDir,
      host: record.hostAddress,
      xdsPort: options.xdsPort,
      httpPort: options.httpPort,
      log,
      // Secured: the CA in this run's data folder, xDS over TLS for proxies with a workload certificate.
      security: { dataDir: data },
    });
    const secured = controlPlane;
    for (const pod of pods) {
      const sidecar = await startSecuredSidecar(pod, secured, `${record.hostAddress}:${options.xdsPort}`, options.envoyPath, temp, log);
      agents.push(sidecar.agent);
      processes.push(sidecar.envoy);
      processes.push(await startService(pod));
    }
    const gatewayBootstrap = async (node: { nodeId: string; labels: Record<string, string> }, adminPort: number) => {
      const { Agent } = await import("../agent/agent.js");
      gatewayAgent = await Agent.start({
        dir: join(temp, "gateway-agent"),
        address: `${record.hostAddress}:${options.xdsPort}`,
        rootPem: secured.ca!.rootPem,
        token: () => secured.tokens!.issue(GATEWAY_IDENTITY, 600),
        ...GATEWAY_IDENTITY,
        trustDomain: secured.ca!.trustDomain,
        node: { ...node, role: "gateway" },
      });
      return gatewayAgent.bootstrap(adminPort);
    };
    return { hostAddress: record.hostAddress, pods, gatewayBootstrap, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** examples/ into `configDir`, every ServiceEntry endpoint at 127.0.0.1 moved to the pod with its app and version,
 * and the tracing collectors at 127.0.0.1 to the mesh's host address. */
function writeMeshConfig(examples: string, configDir: string, pods: PodRecord[], hostAddress: string): void {
  mkdirSync(configDir, { recursive: true });
  for (const file of readdirSync(configDir)) rmSync(join(configDir, file), { recursive: true, force: true });
  for (const file of readdirSync(examples, { recursive: true, withFileTypes: true })) {
    if (!file.isFile()) continue;
    const path = join(file.parentPath, file.name);
    const target = join(configDir, path.slice(examples.length + 1));
    mkdirSync(dirname(target), { recursive: true });
    const text = readFileSync(path, "utf8");
    const place = target === join(configDir, MESH_CONFIG_FILE) ? (yaml: string) => placeCollectors(yaml, hostAddress) : (yaml: string) => placeEndpoints(yaml, pods);
    writeFileSync(target, /\.ya?ml$/.test(file.name) ? place(text) : text);
  }
}

/** meshconfig.yaml with each Zipkin and OpenTelemetry provider at 127.0.0.1 (or localhost) sent to `hostAddress`,
 * the rest (and its comments) unchanged. */
function placeCollectors(text: string, hostAddress: string): string {
  const document = parseDocument(text);
  const providers = (document.toJS() as { extensionProviders?: Array<Record<string, { service?: string } | undefined>> } | null)?.extensionProviders ?? [];
  providers.forEach((provider, i) => {
    for (const kind of ["zipkin", "opentelemetry"]) {
      const service = provider[kind]?.service;
      if (service === "127.0.0.1" || service === "localhost") document.setIn(["extensionProviders", i, kind, "service"], hostAddress);
    }
  });
  return document.toString();
}

function placeEndpoints(text: string, pods: PodRecord[]): string {
  const documents = parseAllDocuments(text);
  if (!documents.some((document) => (document.toJS() as { kind?: string } | null)?.kind === "ServiceEntry")) return text;
  return documents
    .map((document) => {
      const resource = document.toJS() as { kind?: string; spec?: { endpoints?: { address: string; labels?: Record<string, string>; serviceAccount?: string }[] } } | null;
      for (const endpoint of resource?.kind === "ServiceEntry" ? (resource.spec?.endpoints ?? []) : []) {
        const pod = pods.find((candidate) => candidate.labels.app === endpoint.labels?.app && candidate.labels.version === endpoint.labels?.version);
        if (!pod || endpoint.address !== "127.0.0.1") continue;
        endpoint.address = pod.address;
        // The pod has a sidecar with this identity: clients reach it by mutual TLS and expect this SAN.
        endpoint.serviceAccount ??= serviceAccountOf(pod);
      }
      return stringify(resource);
    })
    .join("---\n");
}

function watchFolder(folder: string, onChange: () => void, log: (line: string) => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(folder, { recursive: true }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onChange();
      } catch (error) {
        log(`examples/ not carried over to the mesh: ${(error as Error).message}`);
      }
    }, 200);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}

/** The pod's sidecar as test/harness/secured-sidecar.ts starts it: `skiff agent` in the pod as uid 1337
 * (control/agent/pod.ts) writes Envoy's bootstrap, then Envoy in the pod as uid 1337 on it, admin on the pod's address. */
async function startSecuredSidecar(pod: PodRecord, controlPlane: ControlPlane, xdsAddress: string, envoyPath: string, temp: string, log: (line: string) => void): Promise<{ agent: ChildProcess; envoy: ChildProcess }> {
  const { ca, tokens } = controlPlane;
  const serviceAccount = serviceAccountOf(pod);
  const here = fileURLToPath(import.meta.url);
  const dir = join(temp, pod.name);
  const { command, env, bootstrapFile } = podAgentLaunch({
    pod,
    skiff: [process.execPath, ...process.execArgv, join(dirname(here), `main${here.endsWith(".ts") ? ".ts" : ".js"}`)],
    controlPlane: xdsAddress,
    rootPem: ca!.rootPem,
    token: tokens!.issue({ namespace: pod.namespace, serviceAccount }, 600),
    trustDomain: ca!.trustDomain,
    serviceAccount,
    dir,
  });
  const [binary, ...args] = command;
  const agent = spawn(binary!, args, { stdio: ["ignore", "ignore", "pipe"], env });
  let agentLog = "";
  agent.stderr!.on("data", (chunk: Buffer) => (agentLog = (agentLog + chunk.toString()).slice(-4000)));
  agent.once("exit", (code) => {
    if (code) log(`the agent of pod ${pod.name} exited with ${code}: ${agentLog}`);
  });
  for (let waited = 0; !existsSync(bootstrapFile); waited += 100) {
    if (agent.exitCode !== null || waited > 60_000) {
      agent.kill("SIGTERM");
      throw new Error(`the agent of pod ${pod.name} did not write its bootstrap: ${agentLog}`);
    }
    await sleep(100);
  }
  const config = JSON.parse(readFileSync(bootstrapFile, "utf8")) as Record<string, unknown>;
  config.admin = { address: { socket_address: { address: pod.address, port_value: SIDECAR_ADMIN_PORT } } };
  const path = join(dir, "envoy.json");
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  chownSync(path, PROXY_UID, PROXY_UID);
  const [envoyCommand, ...envoyArgs] = podCommand(pod.netns, [envoyPath, "-c", path, "--disable-hot-restart", "--log-level", "warn"], PROXY_UID);
  return { agent, envoy: spawn(envoyCommand!, envoyArgs, { stdio: ["ignore", "inherit", "inherit"] }) };
}

/** The pod's app (demo-pod.ts), started with this process's Node and loader; resolves once it listens. */
async function startService(pod: PodRecord): Promise<ChildProcess> {
  const here = fileURLToPath(import.meta.url);
  const script = join(dirname(here), `demo-pod${here.endsWith(".ts") ? ".ts" : ".js"}`);
  const [command, ...args] = podCommand(pod.netns, [process.execPath, ...process.execArgv, script, pod.name]);
  const child = spawn(command!, args, { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`the ${pod.name} service exited with ${code} before it listened`)));
  });
  return child;
}
