// Kubernetes Services, EndpointSlices, Pods and Nodes -> the service registry, as istiod's Kubernetes controller builds
// it (pilot/pkg/serviceregistry/kube/conversion.go ConvertService, controller/endpointslice.go, controller/pod.go).
// Each Service becomes a service of the registry in its own namespace, written as the ServiceEntry that means the same
// to translation: host `<name>.<namespace>.svc.<domain>`, the cluster IP as its address, its ports with the protocol
// Istio reads from `appProtocol` or the port name, `networking.istio.io/exportTo`, and one endpoint per ready address
// of its EndpointSlices, with the pod's labels, service account and locality.
import type { V1EndpointSlice, V1Node, V1Pod, V1Service, V1ServicePort } from "@kubernetes/client-node";
import type { ServiceEntry } from "../model.js";
import { SERVICE_PROTOCOLS, type WorkloadEntrySpec } from "../schema/index.js";

type Protocol = (typeof SERVICE_PROTOCOLS)[number];

/** The label that ties an EndpointSlice to its Service (discovery.k8s.io/v1). */
const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
const EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo";
/** Istio's per-pod locality override, `region.zone.subzone` (model.LocalityLabel). */
const LOCALITY_LABEL = "istio-locality";
const TLS_MODE_LABEL = "security.istio.io/tlsMode";

export interface KubernetesObjects {
  services: V1Service[];
  endpointSlices: V1EndpointSlice[];
  pods: V1Pod[];
  nodes: V1Node[];
}

export interface RegistryResult {
  /** One ServiceEntry per Service, by unit (`services/<namespace>/<name>`), in a stable order. */
  entries: Map<string, ServiceEntry>;
  /** What a user should know: ports whose protocol Skiff does not serve, and the like. */
  warnings: string[];
}

export function kubernetesRegistry(objects: KubernetesObjects, domainSuffix = "cluster.local"): RegistryResult {
  const pods = new PodIndex(objects.pods, objects.nodes);
  const slicesByService = new Map<string, V1EndpointSlice[]>();
  for (const slice of objects.endpointSlices) {
    const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!service) continue;
    const key = `${slice.metadata?.namespace}/${service}`;
    slicesByService.set(key, [...(slicesByService.get(key) ?? []), slice]);
  }
  const warnings: string[] = [];
  const entries = new Map<string, ServiceEntry>();
  for (const service of [...objects.services].sort(byCreation)) {
    const namespace = service.metadata?.namespace ?? "default";
    const name = service.metadata?.name ?? "";
    const unit = `services/${namespace}/${name}`;
    const entry = serviceEntry(service, unit, domainSuffix, slicesByService.get(`${namespace}/${name}`) ?? [], pods, (warning) => warnings.push(`Service ${namespace}/${name}: ${warning}`));
    if (entry) entries.set(unit, entry);
  }
  return { entries, warnings };
}

function serviceEntry(
  service: V1Service,
  unit: string,
  domainSuffix: string,
  slices: V1EndpointSlice[],
  pods: PodIndex,
  warn: (message: string) => void,
): ServiceEntry | undefined {
  const namespace = service.metadata?.namespace ?? "default";
  const name = service.metadata?.name ?? "";
  const spec = service.spec ?? {};
  const ports: ServiceEntry["spec"]["ports"] = [];
  for (const port of spec.ports ?? []) {
    const protocol = istioProtocol(port);
    if (!(SERVICE_PROTOCOLS as readonly string[]).includes(protocol)) {
      warn(`port ${port.port}${port.name ? ` (${port.name})` : ""} is ${protocol}, which Skiff does not serve; it is left out`);
      continue;
    }
    ports.push({ number: port.port, name: port.name ?? "", protocol: protocol as Protocol, ...(typeof port.targetPort === "number" ? { targetPort: port.targetPort } : {}) });
  }
  if (ports.length === 0) return undefined;
  const exportTo = service.metadata?.annotations?.[EXPORT_TO_ANNOTATION]
    ?.split(",")
    .map((value) => value.trim())
    .filter(Boolean);
  const clusterIp = spec.clusterIP && spec.clusterIP !== "None" ? spec.clusterIP : undefined;
  const common = {
    hosts: [`${name}.${namespace}.svc.${domainSuffix}`],
    ports,
    location: "MESH_INTERNAL" as const,
    ...(exportTo?.length ? { exportTo } : {}),
  };
  if (spec.type === "ExternalName") {
    // Istio: a DNS service whose one endpoint is the external name (MeshExternal).
    if (!spec.externalName) return undefined;
    return resource(name, namespace, unit, { ...common, location: "MESH_EXTERNAL", resolution: "DNS", endpoints: [{ address: spec.externalName }] });
  }
  return resource(name, namespace, unit, {
    ...common,
    ...(clusterIp ? { addresses: [clusterIp] } : {}),
    // A headless Service is Istio's Passthrough (the address the application dialed); else its endpoints, balanced by
    // the proxy (ClientSideLB).
    resolution: clusterIp ? "STATIC" : "NONE",
    endpoints: endpoints(slices, ports, pods),
  });
}

function resource(name: string, namespace: string, file: string, spec: ServiceEntry["spec"]): ServiceEntry {
  return { kind: "ServiceEntry", name, namespace, file, spec };
}

/** Every ready address of the Service's EndpointSlices (IPv4 and IPv6; FQDN slices are skipped, as Istio does), with
 * the port numbers of the slice's ports by name, and the labels, service account and locality of the pod behind it. */
function endpoints(slices: V1EndpointSlice[], ports: ServiceEntry["spec"]["ports"], pods: PodIndex): WorkloadEntrySpec[] {
  const out: WorkloadEntrySpec[] = [];
  for (const slice of [...slices].sort(byName)) {
    if (slice.addressType !== "IPv4" && slice.addressType !== "IPv6") continue;
    const targetPorts: Record<string, number> = {};
    for (const port of slice.ports ?? []) {
      if (port.port !== undefined && ports.some((servicePort) => servicePort.name === (port.name ?? ""))) targetPorts[port.name ?? ""] = port.port;
    }
    for (const endpoint of slice.endpoints ?? []) {
      // Not ready means not serving (Istio leaves unhealthy endpoints out unless PILOT_SEND_UNHEALTHY_ENDPOINTS).
      if (endpoint.conditions?.ready === false) continue;
      for (const address of endpoint.addresses ?? []) {
        const ref = endpoint.targetRef?.kind === "Pod" ? endpoint.targetRef : undefined;
        const pod = pods.find(slice.metadata?.namespace ?? "default", ref?.name, address);
        const labels = { ...(pod?.metadata?.labels ?? {}) };
        // Istio marks an endpoint for mutual TLS only when its pod says it has a sidecar (the injected label).
        labels[TLS_MODE_LABEL] ??= "disabled";
        const locality = pod ? pods.locality(pod) : endpoint.zone ? `/${endpoint.zone}` : undefined;
        out.push({
          address,
          ports: targetPorts,
          labels,
          ...(pod?.spec?.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
          ...(locality ? { locality } : {}),
        });
      }
    }
  }
  return out;
}

/** Istio's kube.ConvertProtocol: UDP by the port's protocol; else `appProtocol` (with Kubernetes' standard names),
 * else the port name's prefix before `-`; well-known ports (3306, ...) are TCP; anything else is auto-detected by
 * Istio, which Skiff (without protocol sniffing) treats as HTTP. Mongo, Redis, MySQL are TCP to Envoy. */
export function istioProtocol(port: V1ServicePort): string {
  if (port.protocol === "UDP") return "UDP";
  let name = port.name ?? "";
  if (port.appProtocol) {
    name = port.appProtocol;
    if (name === "kubernetes.io/h2c") return "HTTP2";
    if (name === "kubernetes.io/ws") return "HTTP";
    if (name === "kubernetes.io/wss") return "HTTPS";
  }
  if (name.toLowerCase().startsWith("grpc-web")) return "HTTP";
  const prefix = name.split("-")[0]!.toLowerCase();
  const known: Record<string, string> = { http: "HTTP", http2: "HTTP2", grpc: "GRPC", https: "HTTPS", tls: "TLS", tcp: "TCP", udp: "UDP", mongo: "TCP", redis: "TCP", mysql: "TCP" };
  if (known[prefix]) return known[prefix];
  if ([3306, 27017, 6379].includes(port.port)) return "TCP";
  return "HTTP";
}

/** Pods by namespace and name and by address, and the locality of each (istiod's getPodLocality). */
class PodIndex {
  private readonly byName = new Map<string, V1Pod>();
  private readonly byAddress = new Map<string, V1Pod>();
  private readonly nodes = new Map<string, V1Node>();

  constructor(pods: V1Pod[], nodes: V1Node[]) {
    for (const pod of pods) {
      this.byName.set(`${pod.metadata?.namespace}/${pod.metadata?.name}`, pod);
      for (const ip of pod.status?.podIPs ?? (pod.status?.podIP ? [{ ip: pod.status.podIP }] : [])) this.byAddress.set(`${pod.metadata?.namespace}/${ip.ip}`, pod);
    }
    for (const node of nodes) this.nodes.set(node.metadata?.name ?? "", node);
  }

  find(namespace: string, name: string | undefined, address: string): V1Pod | undefined {
    return (name ? this.byName.get(`${namespace}/${name}`) : undefined) ?? this.byAddress.get(`${namespace}/${address}`);
  }

  /** `region/zone/subzone`: the pod's `istio-locality` label (dots as separators), else its node's topology labels. */
  locality(pod: V1Pod): string | undefined {
    const label = pod.metadata?.labels?.[LOCALITY_LABEL];
    if (label) return label.replaceAll(".", "/");
    const labels = this.nodes.get(pod.spec?.nodeName ?? "")?.metadata?.labels ?? {};
    const parts = [labels["topology.kubernetes.io/region"], labels["topology.kubernetes.io/zone"], labels["topology.istio.io/subzone"]];
    if (!parts.some(Boolean)) return undefined;
    return parts.map((part) => part ?? "").join("/").replace(/\/+$/, "");
  }
}

/** Istio orders configuration by creation time, then namespace and name: the older of two Services for one host wins. */
function byCreation(a: V1Service, b: V1Service): number {
  const time = (service: V1Service) => new Date(service.metadata?.creationTimestamp ?? 0).getTime();
  return time(a) - time(b) || byName(a, b);
}

function byName(a: { metadata?: { namespace?: string; name?: string } }, b: { metadata?: { namespace?: string; name?: string } }): number {
  const key = (object: typeof a) => `${object.metadata?.namespace}/${object.metadata?.name}`;
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}
