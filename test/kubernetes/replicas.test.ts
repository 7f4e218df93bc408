// Several control planes against one API server, with secured xDS as in a cluster: each serves any proxy, all
// converge to the same configuration version for the same objects (versions are content hashes), and killing the
// replica a gateway is connected to moves the gateway to another with no failed request: Envoy keeps serving its last
// configuration while its agent reconnects, and the other replica gives it the very same resources.
// The replicas share the mesh CA (the `cacerts` of examples/kubernetes/cacerts.sh) and run as the service account of
// examples/kubernetes/rbac.yaml; each gateway's `skiff agent` authenticates its first CSR with a service account token
// from the TokenRequest API (audience istio-ca, in a file as a projected token is), which any replica accepts since
// the API server reviews it. The gateway's agent names both replicas (a gRPC `ipv4:` target: tried in order), as a
// Service in front of the replicas would send a new connection to a live one.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { requestCertificate } from "../../control/agent/certificates.js";
import { BootstrapTokens } from "../../control/ca/tokens.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import type { StreamStatus } from "../../control/xds/streams.js";
import { steadyLoad } from "../control/load.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type KubeCluster, startKubeCluster } from "../harness/kube-apiserver.js";
import { describePods } from "../harness/e2e.js";
import { type MeshNetwork, startMeshNetwork } from "../harness/pods.js";
import { CHILD_MARKER, testRunId, track, untrack } from "../harness/processes.js";
import { eventually, freePort } from "../scenarios/mesh.js";
import { APP_PORT, GATEWAY, NAMESPACE } from "./cluster-mesh.js";

const EXAMPLES = join(PROJECT_ROOT, "examples", "kubernetes");
const GATEWAY_ACCOUNT = "istio-ingressgateway-service-account";
const GATEWAY_IDENTITY = `spiffe://cluster.local/ns/${NAMESPACE}/sa/${GATEWAY_ACCOUNT}`;

/** A `skiff` command as its own process (a replica's `control-plane --kubernetes`, an agent), its output kept. */
class SkiffProcess {
  readonly log: string[] = [];
  readonly description: string;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  constructor(
    readonly name: string,
    args: string[],
  ) {
    this.child = spawn(process.execPath, ["--import", "tsx", "control/cli/main.ts", ...args], { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, [CHILD_MARKER]: testRunId() } });
    this.description = `${name} (pid ${this.child.pid})`;
    this.exited = new Promise((resolve) => this.child.once("close", () => resolve()));
    const collect = (chunk: Buffer) => this.log.push(...chunk.toString().trimEnd().split("\n"));
    this.child.stdout!.on("data", collect);
    this.child.stderr!.on("data", collect);
    track(this);
  }

  get exitCode(): number | null {
    return this.child.exitCode;
  }

  /** SIGKILL: no goodbye to the proxies, as a crashed or evicted pod. */
  async kill(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited;
    untrack(this, this.logTail());
  }

  logTail(lines = 40): string {
    return this.log.slice(-lines).join("\n");
  }

  async stop(): Promise<void> {
    untrack(this, this.logTail());
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      await Promise.race([this.exited, sleep(10_000).then(() => this.child.kill("SIGKILL"))]);
    }
    await this.exited;
  }
}

/** `skiff control-plane --kubernetes` with secured xDS, as a Deployment's replica runs it. */
class Replica extends SkiffProcess {
  private constructor(
    name: string,
    args: string[],
    readonly xdsPort: number,
    readonly httpPort: number,
  ) {
    super(`control plane replica ${name}`, args);
  }

  static async start(name: string, kubeconfig: string, dir: string): Promise<Replica> {
    const [xdsPort, httpPort] = [await freePort(), await freePort()];
    const args = ["control-plane", "--kubernetes", "--kubeconfig", kubeconfig, "--port", String(xdsPort), "--http-port", String(httpPort), "--cacerts", join(dir, "cacerts"), "--data-dir", join(dir, `data-${name}`)];
    const replica = new Replica(name, args, xdsPort, httpPort);
    await eventually(async () => {
      expect(replica.exitCode, replica.logTail()).toBeNull();
      expect(replica.log.some((line) => line.includes("xDS (ADS) on"))).toBe(true);
    }, 120_000);
    return replica;
  }

  get address(): string {
    return `127.0.0.1:${this.xdsPort}`;
  }

  async status(): Promise<StreamStatus[]> {
    return (await (await fetch(`http://127.0.0.1:${this.httpPort}/status`)).json()) as StreamStatus[];
  }
}

/** A gateway as it runs in a pod: `skiff agent` with the pod's projected token in a file, and Envoy on the bootstrap
 * the agent writes once it has the certificate. */
async function startGateway(dir: string, nodeId: string, controlPlane: string, token: string): Promise<{ agent: SkiffProcess; envoy: Envoy }> {
  const home = join(dir, nodeId);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const tokenFile = join(home, "istio-token");
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const agent = new SkiffProcess(`skiff agent of ${nodeId}`, [
    "agent",
    "--control-plane", controlPlane,
    "--root-cert", join(dir, "cacerts", "root-cert.pem"),
    "--token-file", tokenFile,
    "--namespace", NAMESPACE,
    "--service-account", GATEWAY_ACCOUNT,
    "--dir", join(home, "agent"),
    "--node", nodeId,
    "--role", "gateway",
    ...Object.entries(GATEWAY.labels).flatMap(([key, value]) => ["--label", `${key}=${value}`]),
    "--no-envoy",
  ]);
  const bootstrapFile = join(home, "agent", "envoy.json");
  await eventually(async () => {
    expect(agent.exitCode, agent.logTail()).toBeNull();
    expect(existsSync(bootstrapFile)).toBe(true);
  }, 60_000);
  const envoy = await startEnvoy({ bootstrap: JSON.parse(readFileSync(bootstrapFile, "utf8")) as Record<string, unknown>, readyTimeoutMs: 60_000 });
  return { agent, envoy };
}

describePods("Kubernetes: control plane replicas", () => {
  let cluster: KubeCluster;
  let network: MeshNetwork;
  let dir: string;
  let replicas: Replica[] = [];
  let gateway: { agent: SkiffProcess; envoy: Envoy };
  let port: number;
  const HOST = "catalog.example.com";
  // Every token handed out here: none may show up in a log line.
  const tokens: string[] = [];
  const token = async (serviceAccount: string, audiences = ["istio-ca"]) => {
    const issued = await cluster.serviceAccountToken(NAMESPACE, serviceAccount, { audiences, expirationSeconds: 600 });
    tokens.push(issued);
    return issued;
  };
  const agents: SkiffProcess[] = [];

  beforeAll(async () => {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), "skiff-k8s-replicas-"));
    cluster = await startKubeCluster({ istioCrds: true });
    await cluster.apply(readFileSync(join(EXAMPLES, "rbac.yaml"), "utf8"));
    await cluster.namespace(NAMESPACE);
    await cluster.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: GATEWAY_ACCOUNT, namespace: NAMESPACE } });
    execFileSync("sh", [join(EXAMPLES, "cacerts.sh"), join(dir, "cacerts")], { stdio: "ignore" });
    network = startMeshNetwork();
    const endpoints = [];
    for (const version of ["v1", "v2"]) {
      const pod = network.addPod(`catalog-${version}`, { namespace: NAMESPACE });
      await (await pod.startApp()).listen(APP_PORT, { name: `catalog-${version}` });
      await cluster.pod(NAMESPACE, `catalog-${version}`, { ip: pod.address, labels: { app: "catalog", version } });
      endpoints.push({ addresses: [pod.address], targetRef: { kind: "Pod", name: `catalog-${version}`, namespace: NAMESPACE } });
    }
    await cluster.apply(`apiVersion: v1
kind: Service
metadata: { name: catalog, namespace: ${NAMESPACE} }
spec:
  ports: [{ name: http, port: 80, targetPort: ${APP_PORT} }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: catalog-slice, namespace: ${NAMESPACE}, labels: { kubernetes.io/service-name: catalog } }
addressType: IPv4
ports: [{ name: http, port: ${APP_PORT}, protocol: TCP }]
endpoints: ${JSON.stringify(endpoints)}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gateway, namespace: ${NAMESPACE} }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: ${port}, name: http, protocol: HTTP }, hosts: ["${HOST}"] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: ${NAMESPACE} }
spec:
  host: catalog
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: ${NAMESPACE} }
spec:
  hosts: ["${HOST}"]
  gateways: [gateway]
  http: [{ route: [{ destination: { host: catalog, subset: v1 } }] }]
`);
    // The replicas run with the rights of rbac.yaml's service account (TokenReview among them).
    const kubeconfig = await cluster.serviceAccountKubeconfig("skiff-system", "skiff");
    replicas = await Promise.all(["a", "b"].map((name) => Replica.start(name, kubeconfig, dir)));
    gateway = await startGateway(dir, GATEWAY.nodeId, `ipv4:${replicas.map((replica) => replica.address).join(",")}`, await token(GATEWAY_ACCOUNT));
    agents.push(gateway.agent);
  }, 400_000);

  afterAll(async () => {
    await gateway?.envoy.stop();
    for (const agent of agents) await agent.stop();
    for (const replica of replicas) await replica.stop();
    await network?.stop();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The replica the gateway is connected to, and the status of its stream there. */
  const connected = async () => {
    for (const replica of replicas) {
      const stream = await replica.status().catch(() => []);
      const status = stream.find((candidate) => candidate.nodeId === GATEWAY.nodeId);
      if (status) return { replica, gateway: status };
    }
    return undefined;
  };
  const synced = (status: StreamStatus) => Object.values(status.types).every((type) => type?.status === "SYNCED");
  const signed = (replica: Replica, nodeLog: string[]) =>
    replica.log.some((line) => line.includes(`CA: signed a certificate for ${GATEWAY_IDENTITY} (Kubernetes service account token`)) && nodeLog.some((line) => line.includes("agent: certificate"));

  it("gives a proxy with a service account token its certificate, and the same configuration version, at every replica", async () => {
    await eventually(async () => expect((await connected())?.gateway).toBeDefined(), 60_000);
    const first = (await connected())!;
    await eventually(async () => expect(synced((await connected())!.gateway)).toBe(true), 60_000);
    expect(signed(first.replica, gateway.agent.log), first.replica.logTail()).toBe(true);
    // rbac.yaml lets them review tokens (each checks at start and would say otherwise).
    for (const replica of replicas) expect(replica.log.filter((line) => line.includes("tokenreviews"))).toEqual([]);
    // A second gateway of the same identity, whose agent knows only the other replica: its certificate from there
    // (the token is the API server's, not a replica's), and the same version, resource for resource.
    const other = replicas.find((replica) => replica !== first.replica)!;
    const second = await startGateway(dir, "ingressgateway-2", other.address, await token(GATEWAY_ACCOUNT));
    agents.push(second.agent);
    try {
      expect(signed(other, second.agent.log), other.logTail()).toBe(true);
      await eventually(async () => {
        const [a, b] = [(await connected())!.gateway, (await other.status()).find((status) => status.nodeId === "ingressgateway-2")!];
        expect(b && synced(b)).toBe(true);
        expect(b.contentVersion).toBe(a.contentVersion);
        for (const type of Object.keys(a.types)) expect(b.types[type]?.ackedVersion, type).toBe(a.types[type]?.ackedVersion);
      }, 30_000);
    } finally {
      await second.envoy.stop();
      await second.agent.stop();
    }
  });

  it("refuses a token for another audience, a forged one, a bootstrap token and one of a deleted service account, saying why in its log", async () => {
    const replica = replicas[1]!;
    const ask = (credential: string) =>
      requestCertificate({ address: replica.address, rootPem: readFileSync(join(dir, "cacerts", "root-cert.pem"), "utf8"), token: () => credential, namespace: NAMESPACE, serviceAccount: "leaver", trustDomain: "cluster.local" });
    const refusedFor = async (credential: string, reason: string) => {
      await expect(ask(credential)).rejects.toThrow(`CA ${replica.address}: ${grpcStatus[grpcStatus.UNAUTHENTICATED]}: request authenticate failure`);
      await eventually(async () => expect(replica.log.filter((line) => line.includes("CA: refused a CSR")).join("\n")).toContain(reason));
    };
    await cluster.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "leaver", namespace: NAMESPACE } });
    await refusedFor(await token("leaver", ["vault"]), 'Kubernetes service account token: the API server refused the token: [invalid bearer token, token audiences ["vault"] is invalid for the target audiences ["istio-ca"]]');
    const valid = await token("leaver");
    const [header, claims, signature] = valid.split(".") as [string, string, string];
    const renamed = Buffer.from(Buffer.from(claims, "base64url").toString("utf8").replaceAll("leaver", GATEWAY_ACCOUNT)).toString("base64url");
    tokens.push(`${header}.${renamed}.${signature}`);
    await refusedFor(`${header}.${renamed}.${signature}`, "the API server refused the token: [invalid bearer token, go-jose/go-jose: error in cryptographic primitive]");
    // A bootstrap token (`skiff ca token`, the folder mode's credential) is not one: with --kubernetes only the API
    // server vouches for an identity.
    const bootstrapToken = BootstrapTokens.open(join(dir, "bootstrap")).issue({ namespace: NAMESPACE, serviceAccount: "leaver" }, 600);
    tokens.push(bootstrapToken);
    await refusedFor(bootstrapToken, "Kubernetes service account token: the API server refused the token: ");
    expect((await ask(valid)).chainPem).toBeTruthy();
    await cluster.delete({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "leaver", namespace: NAMESPACE } });
    // The API server finds the deletion through its own cache, within seconds.
    await eventually(() => refusedFor(valid, 'the API server refused the token: [invalid bearer token, serviceaccounts "leaver" not found]'), 60_000);
  });

  it("moves the gateway to the other replica when its replica is killed, with no failed request, and keeps following changes", async () => {
    const before = (await connected())!;
    const load = steadyLoad(port, "x-upstream", { host: HOST });
    try {
      await expect.poll(() => load.total(), { timeout: 30_000 }).toBeGreaterThan(20);
      await before.replica.kill();
      const survivor = replicas.find((replica) => replica !== before.replica)!;
      await eventually(async () => {
        const status = (await survivor.status()).find((candidate) => candidate.nodeId === GATEWAY.nodeId);
        expect(status && synced(status)).toBe(true);
        // Same content, so Envoy was told nothing new.
        expect(status!.contentVersion).toBe(before.gateway.contentVersion);
      }, 60_000);
      const served = load.total();
      await expect.poll(() => load.total(), { timeout: 30_000 }).toBeGreaterThan(served + 20);
      // A change after the failover reaches the gateway through the surviving replica.
      await cluster.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: ${NAMESPACE} }
spec:
  hosts: ["${HOST}"]
  gateways: [gateway]
  http: [{ route: [{ destination: { host: catalog, subset: v2 } }] }]
`);
      await expect.poll(() => load.values.get("catalog-v2") ?? 0, { timeout: 60_000 }).toBeGreaterThan(20);
    } finally {
      await load.stop();
    }
    expect(Object.fromEntries(load.statuses)).toEqual({ 200: load.total() });
  });

  it("never writes a token into a log line", () => {
    const lines = [...replicas, ...agents].flatMap((child) => child.log);
    expect(lines.length).toBeGreaterThan(0);
    expect(tokens.length).toBeGreaterThan(3);
    // A token, or its signature alone (a JWT's most secret part, should a log cut it up).
    for (const issued of tokens) expect(lines.filter((line) => line.includes(issued) || line.includes(issued.split(".")[2]!))).toEqual([]);
  });
});
