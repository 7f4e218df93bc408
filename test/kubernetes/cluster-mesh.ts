// A mesh whose configuration comes only from a real Kubernetes API server: kube-apiserver + etcd with Istio's CRDs
// (harness/kube-apiserver.ts), pods on a mesh network whose apps answer on port 8080 (harness/pods.ts), the Pod,
// Service and EndpointSlice objects that describe them (the API server refuses loopback addresses in EndpointSlices,
// so the pods' own addresses are used), the control plane watching the API server, and a gateway Envoy on the host
// whose bootstrap names nothing but the control plane. Tests change the mesh only by kubectl-style writes.
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from "../../control/control-plane.js";
import type { ProxyIdentity } from "../../control/resources.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type KubeCluster, startKubeCluster } from "../harness/kube-apiserver.js";
import { type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";
import { track, untrack } from "../harness/processes.js";

export const APP_PORT = 8080;
export const NAMESPACE = "shop";
export const GATEWAY: ProxyIdentity = { nodeId: "ingressgateway", role: "gateway", labels: { istio: "ingressgateway" }, namespace: NAMESPACE, ips: [] };

export interface WorkloadSpec {
  /** The pod's name; its app names itself so in `x-upstream`. */
  name: string;
  labels: Record<string, string>;
  /** What the app answers (default 200). */
  status?: number;
}

export interface Workload {
  pod: TestPod;
  app: PodApp;
  spec: WorkloadSpec;
}

export interface ClusterMesh {
  cluster: KubeCluster;
  network: MeshNetwork;
  workloads: Map<string, Workload>;
  controlPlane: ControlPlane;
  envoy: Envoy;
  log: string[];
  /** Pods on the mesh network with apps on APP_PORT, and their Pod objects. */
  addWorkloads(specs: WorkloadSpec[]): Promise<Workload[]>;
  /** A Service `name` (port 80 named http -> APP_PORT) and its EndpointSlice listing `endpoints` (workload names). */
  service(name: string, endpoints: string[]): Promise<void>;
  stop(): Promise<void>;
}

export async function startClusterMesh(options: { controlPlane?: Partial<ControlPlaneOptions> } = {}): Promise<ClusterMesh> {
  const cluster = await startKubeCluster({ istioCrds: true });
  const stops: Array<() => Promise<void>> = [() => cluster.stop()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop();
  };
  try {
    await cluster.namespace(NAMESPACE);
    await cluster.namespace("istio-system");
    const network = startMeshNetwork();
    stops.push(() => network.stop());
    const log: string[] = [];
    const controlPlane = await startControlPlane({
      kubernetes: { config: cluster.config },
      xdsPort: 0,
      httpPort: 0,
      log: (line) => log.push(line),
      security: { plaintext: true },
      ...options.controlPlane,
    });
    const tracked = { description: "control plane (kubernetes)", stop: () => controlPlane.stop(), logTail: () => log.slice(-40).join("\n") };
    track(tracked);
    stops.push(async () => {
      untrack(tracked);
      await controlPlane.stop();
    });
    const envoy = await startEnvoy({ bootstrap: bootstrap({ ...GATEWAY, xdsPort: controlPlane.xds.port, adminPort: 0 }) });
    stops.push(() => envoy.stop());
    const workloads = new Map<string, Workload>();
    return {
      cluster,
      network,
      workloads,
      controlPlane,
      envoy,
      log,
      addWorkloads: async (specs) => {
        const added: Workload[] = [];
        for (const spec of specs) {
          const pod = network.addPod(spec.name, { namespace: NAMESPACE, labels: spec.labels });
          const app = await pod.startApp();
          await app.listen(APP_PORT, { name: spec.name, status: spec.status });
          await cluster.pod(NAMESPACE, spec.name, { ip: pod.address, labels: spec.labels, serviceAccount: spec.labels.app });
          const workload = { pod, app, spec };
          workloads.set(spec.name, workload);
          added.push(workload);
        }
        return added;
      },
      service: async (name, endpoints) => {
        await cluster.apply([
          { apiVersion: "v1", kind: "Service", metadata: { name, namespace: NAMESPACE }, spec: { selector: { app: name }, ports: [{ name: "http", port: 80, targetPort: APP_PORT }] } },
          endpointSlice(name, endpoints.map((endpoint) => workloads.get(endpoint)!)),
        ]);
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The EndpointSlice a Service's controller would write for these workloads. */
export function endpointSlice(service: string, workloads: Workload[]): Record<string, unknown> & { apiVersion: string; kind: string } {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name: `${service}-slice`, namespace: NAMESPACE, labels: { "kubernetes.io/service-name": service } },
    addressType: "IPv4",
    ports: [{ name: "http", port: APP_PORT, protocol: "TCP" }],
    endpoints: workloads.map(({ pod, spec }) => ({
      addresses: [pod.address],
      conditions: { ready: true },
      targetRef: { kind: "Pod", name: spec.name, namespace: NAMESPACE },
    })),
  };
}
