// A pod's sidecar as Istio runs it on a secured mesh: `skiff agent` in the pod as the proxy's uid (1337, as
// pilot-agent shares the pod and uid with Envoy), which gets the workload certificate from the control plane's CA with
// a bootstrap token, serves it to Envoy by SDS on a Unix socket in its private folder and relays Envoy's xDS over
// mTLS; then Envoy in the pod on the bootstrap the agent wrote. The agent's own connection to the control plane is
// uid 1337's, so the pod's capture rules leave it alone. Both are stopped with the mesh.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { podAgentLaunch } from "../../control/agent/pod.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
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
  // The agent's files: readable by the proxy's uid only (the token is a credential); control/agent/pod.ts.
  const dir = mkdtempSync(join(tmpdir(), `skiff-pod-agent-${pod.name}-`));
  const { namespace } = pod.record;
  const { command, env, bootstrapFile } = podAgentLaunch({
    pod: pod.record,
    skiff: [process.execPath, "--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts")],
    controlPlane: `${controlPlane.host}:${controlPlane.xdsPort}`,
    rootPem: ca.rootPem,
    token: tokens.issue({ namespace, serviceAccount: options.serviceAccount }, 600),
    trustDomain: ca.trustDomain,
    serviceAccount: options.serviceAccount,
    certTtlSeconds: options.certTtlSeconds,
    dir,
  });
  const [binary, ...args] = command;
  const child = spawn(binary!, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...env, [CHILD_MARKER]: testRunId() } });
  const agent = new PodAgent(child, dir, pod.name);
  track(agent);
  pod.mesh.adopt(agent);
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
