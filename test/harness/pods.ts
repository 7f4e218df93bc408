// Pods for e2e tests: a mesh network of its own per test file (control/mesh: a bridge, network namespaces, veth pairs,
// addresses from 198.18.0.0/15, istio-init's capture rules), apps and sidecar Envoys running inside the pods. All of it
// is tracked like every other harness process: a test that fails, or forgets, still removes every process, namespace,
// link and rule; a crashed test run's leftovers are removed by the next run (global-setup.ts) or `skiff mesh cleanup`.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from "../../control/control-plane.js";
import { PROXY_UID, SIDECAR_ADMIN_PORT } from "../../control/mesh/capture.js";
import { addPod, type AddPodOptions, addService, createMesh, deleteMesh, type MeshRecord, type PodRecord, podCommand, removePod, type ServiceRecord } from "../../control/mesh/mesh.js";
import type { RequestOptions, Response, Tally } from "./client.js";
import { type Envoy, startEnvoy } from "./envoy.js";
import { CHILD_MARKER, type Stoppable, testRunId, track, untrack } from "./processes.js";
import type { Greeting } from "./pod-agent.js";
import type { ReceivedRequest } from "./upstream.js";

/** A mesh network for one test file, removed with everything in it by stop() (or the harness's teardown). */
export class MeshNetwork implements Stoppable {
  readonly description: string;
  private readonly children = new Set<Stoppable>();

  private constructor(readonly record: MeshRecord) {
    this.description = `mesh network ${record.name} (${record.podSubnet}, bridge ${record.bridge})`;
  }

  /** A new mesh with a unique name: test files running in parallel, and other people's meshes, never collide. */
  static start(): MeshNetwork {
    const mesh = new MeshNetwork(createMesh(`t${randomBytes(4).toString("hex")}`, { owner: "process" }));
    track(mesh);
    return mesh;
  }

  get name(): string {
    return this.record.name;
  }

  /** The host's address on the bridge: where pods reach the control plane (and anything else on the host). */
  get hostAddress(): string {
    return this.record.hostAddress;
  }

  addPod(name: string, options: AddPodOptions = {}): TestPod {
    return new TestPod(this, addPod(this.name, name, options));
  }

  /** A name every pod resolves: a new service address (VIP, answered only through a capturing sidecar), a pod's
   * address, or a given one. */
  addService(name: string, target: { address?: string; pod?: string } = {}): ServiceRecord {
    return addService(this.name, name, target);
  }

  /** A control plane for this mesh's sidecars, in this process, listening on the mesh's host address (free ports),
   * serving the YAML `files` (file name -> text) from a temp folder; `write` changes a file as an edit would.
   * xDS is plain text unless `security` says otherwise (sidecars then need `skiff agent`). Stopped with the mesh. */
  async startControlPlane(files: Record<string, string>, options: { security?: ControlPlaneOptions["security"] } = {}): Promise<MeshControlPlane> {
    const dir = mkdtempSync(join(tmpdir(), "skiff-mesh-config-"));
    const write = (file: string, text: string) => writeFileSync(join(dir, file), text);
    for (const [file, text] of Object.entries(files)) write(file, text);
    const log: string[] = [];
    const controlPlane = await startControlPlane({
      configDir: dir,
      host: this.hostAddress,
      xdsPort: 0,
      httpPort: 0,
      log: (line) => log.push(line),
      security: options.security ?? { plaintext: true },
    });
    const running: MeshControlPlane = {
      description: `control plane on ${this.hostAddress} for ${dir}`,
      controlPlane,
      host: this.hostAddress,
      xdsPort: controlPlane.xds.port,
      httpPort: controlPlane.modules.port,
      log,
      write,
      logTail: () => log.slice(-40).join("\n"),
      stop: async () => {
        untrack(running);
        await controlPlane.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    track(running);
    this.adopt(running);
    return running;
  }

  /** @internal Processes in this mesh's pods, stopped before the mesh is removed. */
  adopt(child: Stoppable): void {
    this.children.add(child);
  }

  async stop(): Promise<void> {
    untrack(this);
    await Promise.all([...this.children].map((child) => child.stop()));
    deleteMesh(this.name);
  }
}

export interface MeshControlPlane extends Stoppable {
  controlPlane: ControlPlane;
  /** Where sidecars reach it: the mesh's host address and the xDS and HTTP (modules, /status) ports. */
  host: string;
  xdsPort: number;
  httpPort: number;
  /** Its log lines (connections, pushes, ACKs, NACKs, config errors). */
  log: string[];
  write(file: string, text: string): void;
}

export function startMeshNetwork(): MeshNetwork {
  return MeshNetwork.start();
}

export class TestPod {
  constructor(
    readonly mesh: MeshNetwork,
    readonly record: PodRecord,
  ) {}

  get name(): string {
    return this.record.name;
  }

  get address(): string {
    return this.record.address;
  }

  get netns(): string {
    return this.record.netns;
  }

  /** Runs a command in the pod to completion (as `uid` when given). */
  exec(command: string[], options: { uid?: number } = {}): { status: number | null; stdout: string; stderr: string } {
    const [binary, ...args] = podCommand(this.netns, command, options.uid);
    const result = spawnSync(binary, args, { encoding: "utf8", timeout: 30_000 });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Starts the pod's app (pod-agent.ts): echo servers, HTTP clients and TCP connects inside the pod. `agent` runs
   * another script that speaks the same line protocol instead (path from the project root; e.g. the benchmark's load
   * generator), used through `call()`. */
  async startApp(options: { uid?: number; agent?: string } = {}): Promise<PodApp> {
    const app = await PodApp.start(this, options.uid, options.agent ?? "test/harness/pod-agent.ts");
    this.mesh.adopt(app);
    return app;
  }

  /** A `skiff bootstrap` for this pod's sidecar: Istio's node id form (sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local),
   * the pod's namespace, labels and address, and ADS to a control plane listening on the mesh's host address. */
  sidecarBootstrap(controlPlane: { host: string; xdsPort: number }, options: { serviceAccount?: string; delta?: boolean } = {}): Record<string, unknown> {
    const { namespace, labels, address } = this.record;
    return bootstrap({
      nodeId: `sidecar~${address}~${this.name}.${namespace}~${namespace}.svc.cluster.local`,
      role: "sidecar",
      labels,
      namespace,
      serviceAccount: options.serviceAccount,
      ips: [address],
      xdsHost: controlPlane.host,
      xdsPort: controlPlane.xdsPort,
      adminPort: SIDECAR_ADMIN_PORT,
      delta: options.delta,
    });
  }

  /** Starts Envoy in the pod as its sidecar: uid/gid 1337 (whose traffic capture leaves alone), admin on the pod's
   * address, port 15000. `bootstrap` is e.g. `skiff bootstrap --ip <pod address> --xds-address <mesh host>:<port>`;
   * `wrapper` runs it under another command (the benchmark's callgrind), also as 1337. */
  async startSidecar(options: { bootstrap: Record<string, unknown> | string; concurrency?: number; args?: string[]; readyTimeoutMs?: number; wrapper?: string[] }): Promise<Envoy> {
    const envoy = await startEnvoy({ ...options, pod: { netns: this.netns, address: this.address, uid: PROXY_UID } });
    this.mesh.adopt(envoy);
    return envoy;
  }

  /** Removes the pod: every process in it, its namespace, link and names. */
  remove(): void {
    removePod(this.mesh.name, this.name);
  }
}

interface AgentAnswer {
  id?: number;
  ready?: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** Thrown by PodApp calls that fail in the pod, with the error code the pod saw (ENETUNREACH, ECONNREFUSED, ...). */
export class PodError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** The app process of a pod. Its calls run inside the pod, with the pod's routes, names and capture rules. */
export class PodApp implements Stoppable {
  readonly description: string;
  private nextId = 0;
  private readonly pending = new Map<number, (answer: AgentAnswer) => void>();
  private stderr = "";
  private readonly exited: Promise<void>;

  private constructor(
    readonly pod: TestPod,
    private readonly child: ChildProcess,
  ) {
    this.description = `app of pod ${pod.name} (pid ${child.pid})`;
    this.exited = new Promise((resolve) => child.once("close", () => resolve()));
  }

  static async start(pod: TestPod, uid: number | undefined, agent: string): Promise<PodApp> {
    const [binary, ...args] = podCommand(pod.netns, [process.execPath, "--import", "tsx", join(PROJECT_ROOT, agent)], uid);
    const child = spawn(binary, args, { cwd: PROJECT_ROOT, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, [CHILD_MARKER]: testRunId() } });
    const app = new PodApp(pod, child);
    child.stderr!.on("data", (chunk: Buffer) => (app.stderr = (app.stderr + chunk.toString()).slice(-8000)));
    const ready = new Promise<void>((resolve, reject) => {
      child.once("close", (code) => reject(new Error(`the app of pod ${pod.name} exited with ${code}: ${app.stderr}`)));
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const answer = JSON.parse(line) as AgentAnswer;
        if (answer.ready) resolve();
        if (answer.id !== undefined) app.pending.get(answer.id)?.(answer);
      });
    });
    track(app);
    await ready;
    return app;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends one command (`{ op, ...arguments }`) and waits for its answer; a failure in the pod throws a PodError. */
  async call<T>(command: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    const answer = await new Promise<AgentAnswer>((resolve) => {
      this.pending.set(id, resolve);
      this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    });
    this.pending.delete(id);
    if (answer.error) throw new PodError(answer.error.code, answer.error.message);
    return answer.result as T;
  }

  /** An echo server (test/harness/upstream.ts) on 0.0.0.0:port in the pod, answering `status` after `delayMs`. */
  async listen(port: number, options: { name?: string; status?: number; delayMs?: number } = {}): Promise<void> {
    await this.call({ op: "listen", port, name: options.name ?? this.pod.name, status: options.status, delayMs: options.delayMs });
  }

  /** What the echo server on `port` received so far (with each connection's peer address). */
  received(port: number): Promise<ReceivedRequest[]> {
    return this.call({ op: "received", port });
  }

  /** One HTTP/1.1 request from the pod to host:port (a pod or service name, or an address). */
  request(host: string, port: number, options: RequestOptions = {}): Promise<Response> {
    return this.call({ op: "request", host, port, options });
  }

  /** `count` requests from the pod, `concurrency` at a time; failures are tallied in `errors`, not thrown. */
  load(host: string, port: number, options: { count: number; concurrency?: number } & RequestOptions): Promise<Omit<Tally, "responses">> {
    const { count, concurrency, ...request } = options;
    return this.call({ op: "load", host, port, count, concurrency, options: request });
  }

  /** A bare TCP connect from the pod; resolves when connected, throws a PodError with the code otherwise. */
  async connect(host: string, port: number, timeoutMs = 5000): Promise<void> {
    await this.call({ op: "connect", host, port, timeoutMs });
  }

  /** A server-first TCP server on 0.0.0.0:port in the pod: each connection is told `name` and closed; with `tls`
   * (PEM), after a TLS handshake with that certificate. */
  async greet(port: number, name: string, tls?: { cert: string; key: string }): Promise<void> {
    await this.call({ op: "greet", port, name, tls });
  }

  /** Connects from the pod (TLS with `tls`: SNI `servername`, trusting `ca`) and returns what the server said before
   * closing, with the certificate's CN for TLS; throws a PodError with the code the pod saw. */
  greeting(host: string, port: number, tls?: { servername: string; ca: string }): Promise<Greeting> {
    return this.call({ op: "greeting", host, port, tls });
  }

  /** A client-first TCP echo server on 0.0.0.0:port in the pod that keeps the bytes each connection brought. */
  async echoTcp(port: number): Promise<void> {
    await this.call({ op: "echoTcp", port });
  }

  /** The bytes each connection to the echo server on `port` brought, in order. */
  async echoed(port: number): Promise<Buffer[]> {
    return (await this.call<string[]>({ op: "echoed", port })).map((text) => Buffer.from(text, "base64"));
  }

  /** Connects from the pod, sends `data`, ends its side and returns what came back before the server closed. */
  async converse(host: string, port: number, data: Uint8Array): Promise<Buffer> {
    return Buffer.from(await this.call<string>({ op: "converse", host, port, data: Buffer.from(data).toString("base64") }), "base64");
  }

  logTail(): string {
    return this.stderr;
  }

  async stop(): Promise<void> {
    untrack(this, this.stderr);
    this.child.stdin!.end();
    const stopped = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000))]);
    if (!stopped) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }
}
