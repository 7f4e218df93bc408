// `skiff demo`'s mesh layout (Linux, root): webapp and catalog v1/v2 each in a pod of the mesh network "demo"
// (control/mesh) with istio-init's capture rules and a sidecar Envoy, configured by the control plane listening on the
// mesh's host address; the gateway Envoy on the host in front. webapp calls catalog by its service name: its sidecar
// captures the call and routes it by the mesh VirtualService (90/10, the internal cohort to v2), the catalog pod's
// sidecar captures it inbound and hands it to the app.
//
// The control plane reads examples/ through a generated folder, .skiff-demo/ beside it: the same files, with the
// ServiceEntry endpoints' 127.0.0.1 replaced by the pods' addresses (matched by their app and version labels). Edits in
// examples/ are carried over within a second, so the demo follows them as the loopback layout does.
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { bootstrap } from "../bootstrap/bootstrap.js";
import { type ControlPlane, startControlPlane } from "../control-plane.js";
import { PROXY_UID, SIDECAR_ADMIN_PORT } from "../mesh/capture.js";
import { ensureMeshPrerequisites } from "../mesh/host.js";
import { addPod, addService, createMesh, deleteMesh, type PodRecord, podCommand } from "../mesh/mesh.js";
import type { DemoService } from "./demo-services.js";

export const DEMO_MESH = "demo";
const NAMESPACE = "istioinaction";
const PODS: Record<DemoService, Record<string, string>> = {
  webapp: { app: "webapp", version: "v1" },
  "catalog-v1": { app: "catalog", version: "v1" },
  "catalog-v2": { app: "catalog", version: "v2" },
};
const SERVICE_NAMES = ["webapp.istioinaction.svc.cluster.local", "catalog.istioinaction.svc.cluster.local"];

export interface MeshDemo {
  /** The mesh's host address: where the control plane listens (xDS and HTTP) for the gateway and the sidecars. */
  hostAddress: string;
  pods: PodRecord[];
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
  const temp = mkdtempSync(join(tmpdir(), "skiff-demo-pods-"));
  chmodSync(temp, 0o755); // the sidecars (uid 1337) read their bootstraps here
  let controlPlane: ControlPlane | undefined;
  let stopWatching = () => {};
  const configDir = join(root, ".skiff-demo");
  const stop = async () => {
    stopWatching();
    for (const child of processes) child.kill("SIGTERM");
    await Promise.all(processes.map((child) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once("exit", resolve)))));
    await controlPlane?.stop();
    deleteMesh(DEMO_MESH);
    rmSync(temp, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  };
  try {
    const pods = Object.entries(PODS).map(([name, labels]) => addPod(DEMO_MESH, name, { capture: true, namespace: NAMESPACE, labels }));
    for (const name of SERVICE_NAMES) addService(DEMO_MESH, name);

    const examples = join(root, "examples");
    const generate = () => writeMeshConfig(examples, configDir, pods);
    generate();
    stopWatching = watchFolder(examples, generate, log);
    controlPlane = await startControlPlane({
      configDir,
      host: record.hostAddress,
      xdsPort: options.xdsPort,
      httpPort: options.httpPort,
      log,
      // Plain-text xDS on the mesh's bridge address only (development mode; pods and this host reach it).
      security: { plaintext: true },
    });

    for (const pod of pods) {
      processes.push(startSidecar(pod, record.hostAddress, options, temp));
      processes.push(await startService(pod));
    }
    return { hostAddress: record.hostAddress, pods, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** examples/ into `configDir`, every ServiceEntry endpoint at 127.0.0.1 moved to the pod with its app and version. */
function writeMeshConfig(examples: string, configDir: string, pods: PodRecord[]): void {
  mkdirSync(configDir, { recursive: true });
  for (const file of readdirSync(configDir)) rmSync(join(configDir, file), { recursive: true, force: true });
  for (const file of readdirSync(examples, { recursive: true, withFileTypes: true })) {
    if (!file.isFile()) continue;
    const path = join(file.parentPath, file.name);
    const target = join(configDir, path.slice(examples.length + 1));
    mkdirSync(dirname(target), { recursive: true });
    const text = readFileSync(path, "utf8");
    writeFileSync(target, /\.ya?ml$/.test(file.name) ? placeEndpoints(text, pods) : text);
  }
}

function placeEndpoints(text: string, pods: PodRecord[]): string {
  const documents = parseAllDocuments(text);
  if (!documents.some((document) => (document.toJS() as { kind?: string } | null)?.kind === "ServiceEntry")) return text;
  return documents
    .map((document) => {
      const resource = document.toJS() as { kind?: string; spec?: { endpoints?: { address: string; labels?: Record<string, string> }[] } } | null;
      for (const endpoint of resource?.kind === "ServiceEntry" ? (resource.spec?.endpoints ?? []) : []) {
        const pod = pods.find((candidate) => candidate.labels.app === endpoint.labels?.app && candidate.labels.version === endpoint.labels?.version);
        if (pod && endpoint.address === "127.0.0.1") endpoint.address = pod.address;
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

/** The pod's sidecar: Envoy as uid 1337 (whose traffic capture leaves alone) in the pod, admin on the pod's address. */
function startSidecar(pod: PodRecord, xdsHost: string, options: { envoyPath: string; xdsPort: number }, temp: string): ChildProcess {
  const config = bootstrap({
    nodeId: `sidecar~${pod.address}~${pod.name}.${pod.namespace}~${pod.namespace}.svc.cluster.local`,
    role: "sidecar",
    labels: pod.labels,
    namespace: pod.namespace,
    ips: [pod.address],
    xdsHost,
    xdsPort: options.xdsPort,
    adminPort: SIDECAR_ADMIN_PORT,
  });
  config.admin = { address: { socket_address: { address: pod.address, port_value: SIDECAR_ADMIN_PORT } } };
  const path = join(temp, `${pod.name}.json`);
  writeFileSync(path, JSON.stringify(config));
  chmodSync(path, 0o644);
  const [command, ...args] = podCommand(pod.netns, [options.envoyPath, "-c", path, "--disable-hot-restart", "--log-level", "warn"], PROXY_UID);
  return spawn(command!, args, { stdio: ["ignore", "inherit", "inherit"] });
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
