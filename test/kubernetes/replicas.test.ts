// Several control planes against one API server: each serves any proxy, all converge to the same configuration
// version for the same objects (versions are content hashes), and killing the replica a gateway is connected to moves
// the gateway to another (its bootstrap's xDS cluster names both) with no failed request: Envoy keeps serving its last
// configuration while it reconnects, and the other replica gives it the very same resources.
import { type ChildProcess, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
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

/** `skiff control-plane --kubernetes` as its own process, as a Deployment's replica runs it. */
class Replica {
  readonly log: string[] = [];
  readonly description: string;
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly xdsPort: number,
    readonly httpPort: number,
  ) {
    this.description = `control plane replica ${name} (pid ${child.pid})`;
    this.exited = new Promise((resolve) => child.once("close", () => resolve()));
    const collect = (chunk: Buffer) => this.log.push(...chunk.toString().trimEnd().split("\n"));
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
  }

  static async start(name: string, kubeconfig: string): Promise<Replica> {
    const [xdsPort, httpPort] = [await freePort(), await freePort()];
    const args = ["--import", "tsx", "control/cli/main.ts", "control-plane", "--kubernetes", "--kubeconfig", kubeconfig, "--port", String(xdsPort), "--http-port", String(httpPort), "--plaintext"];
    const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, [CHILD_MARKER]: testRunId() } });
    const replica = new Replica(name, child, xdsPort, httpPort);
    track(replica);
    await eventually(async () => {
      expect(child.exitCode, replica.logTail()).toBeNull();
      expect(replica.log.some((line) => line.includes("xDS (ADS) on"))).toBe(true);
    }, 120_000);
    return replica;
  }

  async status(): Promise<StreamStatus[]> {
    return (await (await fetch(`http://127.0.0.1:${this.httpPort}/status`)).json()) as StreamStatus[];
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

describePods("Kubernetes: control plane replicas", () => {
  let cluster: KubeCluster;
  let network: MeshNetwork;
  let replicas: Replica[] = [];
  let envoy: Envoy;
  let port: number;
  const HOST = "catalog.example.com";

  beforeAll(async () => {
    port = await freePort();
    cluster = await startKubeCluster({ istioCrds: true });
    await cluster.namespace(NAMESPACE);
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
    replicas = await Promise.all(["a", "b"].map((name) => Replica.start(name, cluster.kubeconfig)));
    envoy = await startEnvoy({
      bootstrap: bootstrap({ ...GATEWAY, adminPort: 0, xdsAddresses: replicas.map((replica) => ({ host: "127.0.0.1", port: replica.xdsPort })) }),
      readyTimeoutMs: 60_000,
    });
  }, 400_000);

  afterAll(async () => {
    await envoy?.stop();
    for (const replica of replicas) await replica.stop();
    await network?.stop();
    await cluster?.stop();
  });

  /** The replica the gateway is connected to, and the status of its stream there. */
  const connected = async () => {
    for (const replica of replicas) {
      const stream = await replica.status().catch(() => []);
      const gateway = stream.find((status) => status.nodeId === GATEWAY.nodeId);
      if (gateway) return { replica, gateway };
    }
    return undefined;
  };
  const synced = (status: StreamStatus) => Object.values(status.types).every((type) => type?.status === "SYNCED");

  it("gives any proxy the same configuration version from every replica", async () => {
    await eventually(async () => expect((await connected())?.gateway).toBeDefined(), 60_000);
    const first = (await connected())!;
    await eventually(async () => expect(synced((await connected())!.gateway)).toBe(true), 60_000);
    // A second gateway of the same identity on the other replica only: the same version, resource for resource.
    const other = replicas.find((replica) => replica !== first.replica)!;
    const second = await startEnvoy({ bootstrap: bootstrap({ ...GATEWAY, nodeId: "ingressgateway-2", adminPort: 0, xdsAddresses: [{ host: "127.0.0.1", port: other.xdsPort }] }) });
    try {
      await eventually(async () => {
        const [a, b] = [(await connected())!.gateway, (await other.status()).find((status) => status.nodeId === "ingressgateway-2")!];
        expect(b && synced(b)).toBe(true);
        expect(b.contentVersion).toBe(a.contentVersion);
        for (const type of Object.keys(a.types)) expect(b.types[type]?.ackedVersion, type).toBe(a.types[type]?.ackedVersion);
      }, 30_000);
    } finally {
      await second.stop();
    }
  });

  it("moves the gateway to the other replica when its replica is killed, with no failed request, and keeps following changes", async () => {
    const before = (await connected())!;
    const load = steadyLoad(port, "x-upstream", { host: HOST });
    try {
      await expect.poll(() => load.total(), { timeout: 30_000 }).toBeGreaterThan(20);
      await before.replica.kill();
      const survivor = replicas.find((replica) => replica !== before.replica)!;
      await eventually(async () => {
        const gateway = (await survivor.status()).find((status) => status.nodeId === GATEWAY.nodeId);
        expect(gateway && synced(gateway)).toBe(true);
        // Same content, so Envoy was told nothing new.
        expect(gateway!.contentVersion).toBe(before.gateway.contentVersion);
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
});
