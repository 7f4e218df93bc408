// A pod's sidecar as Istio runs it on a secured mesh: `skiff agent` in the pod as the proxy's uid (1337, as
// pilot-agent shares the pod and uid with Envoy), which gets the workload certificate from the control plane's CA with
// a bootstrap token, serves it to Envoy by SDS on a Unix socket in its private folder and relays Envoy's xDS over
// mTLS; then Envoy in the pod on the bootstrap the agent wrote. The agent's own connection to the control plane is
// uid 1337's, so the pod's capture rules leave it alone. Both are stopped with the mesh.
import { type ChildProcess, spawn } from "node:child_process";
import { chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { componentPath } from "../../control/components/build.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { PROXY_UID } from "../../control/mesh/capture.js";
import { podCommand } from "../../control/mesh/mesh.js";
import { type Envoy, waitFor } from "./envoy.js";
import type { MeshControlPlane, TestPod } from "./pods.js";
import { CHILD_MARKER, type Stoppable, testRunId, track, untrack } from "./processes.js";

export interface SecuredSidecar {
  envoy: Envoy;
  agent: PodAgent;
  /** The workload's SPIFFE identity. */
  identity: string;
  /** The bootstrap the agent wrote (SDS and xDS over its Unix sockets): another Envoy of this pod can start on it. */
  bootstrap: Record<string, unknown>;
}

/** The `skiff agent` process of a pod. */
export class PodAgent implements Stoppable {
  readonly description: string;
  private output = "";
  private readonly exited: Promise<void>;

  constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    pod: string,
  ) {
    this.description = `skiff agent of pod ${pod} (pid ${child.pid})`;
    this.exited = new Promise((resolve) => child.once("close", () => resolve()));
    for (const stream of [child.stdout!, child.stderr!]) stream.on("data", (chunk: Buffer) => (this.output = (this.output + chunk.toString()).slice(-8000)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(): string {
    return this.output;
  }

  async stop(): Promise<void> {
    untrack(this, this.output);
    if (this.running) {
      this.child.kill("SIGTERM");
      const stopped = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
      if (!stopped) this.child.kill("SIGKILL");
      await this.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts the agent in `pod` (identity: the pod's namespace and `serviceAccount`) against a secured control plane, then
 * the pod's Envoy on the agent's bootstrap (node id as `pod.sidecarBootstrap` makes it). */
export async function startSecuredSidecar(pod: TestPod, controlPlane: MeshControlPlane, options: { serviceAccount: string; certTtlSeconds?: number; concurrency?: number }): Promise<SecuredSidecar> {
  const { ca, tokens } = controlPlane.controlPlane;
  if (!ca || !tokens) throw new Error("startSecuredSidecar needs a control plane started with `security: { dataDir }`");
  const { namespace, labels, address } = pod.record;
  // The agent's files: readable by the proxy's uid only (the token is a credential).
  const dir = mkdtempSync(join(tmpdir(), `skiff-pod-agent-${pod.name}-`));
  const rootFile = join(dir, "root-cert.pem");
  const tokenFile = join(dir, "token");
  writeFileSync(rootFile, ca.rootPem);
  writeFileSync(tokenFile, tokens.issue({ namespace, serviceAccount: options.serviceAccount }, 600), { mode: 0o600 });
  for (const path of [dir, rootFile, tokenFile]) chownSync(path, PROXY_UID, PROXY_UID);
  const agentDir = join(dir, "agent");
  const nodeId = `sidecar~${address}~${pod.name}.${namespace}~${namespace}.svc.cluster.local`;
  const command = [
    process.execPath, "--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), "agent",
    "--control-plane", `${controlPlane.host}:${controlPlane.xdsPort}`,
    "--root-cert", rootFile,
    "--token-file", tokenFile,
    "--namespace", namespace,
    "--service-account", options.serviceAccount,
    "--trust-domain", ca.trustDomain,
    ...(options.certTtlSeconds ? ["--cert-ttl", `${options.certTtlSeconds}s`] : []),
    "--dir", agentDir,
    "--node", nodeId,
    "--role", "sidecar",
    ...Object.entries(labels).flatMap(([key, value]) => ["--label", `${key}=${value}`]),
    "--ip", address,
    "--no-envoy",
  ];
  const [binary, ...args] = podCommand(pod.netns, command, PROXY_UID);
  const env = { ...process.env, SKIFF_COMPONENTS_DIR: readableComponents(dir), [CHILD_MARKER]: testRunId() };
  const child = spawn(binary, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env });
  const agent = new PodAgent(child, dir, pod.name);
  track(agent);
  pod.mesh.adopt(agent);
  const bootstrapFile = join(agentDir, "envoy.json");
  await waitFor(() => {
    if (!agent.running) throw new Error(`the agent of pod ${pod.name} exited: ${agent.logTail()}`);
    return existsSync(bootstrapFile);
  }, `the agent of pod ${pod.name} wrote its bootstrap`, 60_000);
  // Ready only once it has its listeners, which wait for the certificate by SDS: on a loaded machine that takes the
  // control plane, the agent and Envoy each a turn, so allow more than a plain Envoy's start.
  const bootstrap = JSON.parse(readFileSync(bootstrapFile, "utf8")) as Record<string, unknown>;
  const envoy = await pod.startSidecar({
    bootstrap,
    concurrency: options.concurrency,
    readyTimeoutMs: 120_000,
  });
  return { envoy, agent, identity: `spiffe://${ca.trustDomain}/ns/${namespace}/sa/${options.serviceAccount}`, bootstrap };
}

/** The agent decodes Envoy's requests with the Envoy API descriptor set (control/protos/registry.ts). As uid 1337 it
 * cannot read a components folder under /root (a shared SKIFF_COMPONENTS_DIR), so it gets a copy in its own folder. */
function readableComponents(dir: string): string {
  const descriptors = componentPath("descriptors");
  const root = join(dir, "components");
  const copy = join(root, basename(dirname(descriptors)));
  mkdirSync(copy, { recursive: true });
  copyFileSync(descriptors, join(copy, basename(descriptors)));
  return root;
}
