// The service registry of the embedded mode, as one proxy sees it (Istio's push context and sidecar scope): the
// services of the ServiceEntries exported to the proxy's namespace, their endpoints (the entries' own, the
// WorkloadEntries they select, or for DNS entries without either the host itself), and the DestinationRule that
// applies to each service for this proxy (destination-rules.ts).
//
// A service is a host in a namespace (pilot/pkg/serviceregistry/serviceentry): every host of a ServiceEntry is one.
// Several ServiceEntries for one host in one namespace are one service: the first defines its ports and
// resolution, and the endpoints of all of them count (Istio keeps the oldest Service and merges the instances by
// namespace and host). The same host in several namespaces is several services; a proxy sees the one of the
// referring resource's namespace or of its own namespace, else the first, among those exported to it.
//
// Host names resolve as Istio resolves short names: as written, then as `<name>.<namespace>.svc.cluster.local` in
// the namespace of the resource that names them.
import type { MeshConfig } from "../sources/index.js";
import type { DestinationRule, ServiceEntry } from "../sources/model.js";
import type { WorkloadEntrySpec } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { DestinationRuleIndex } from "./destination-rules.js";
import { visibleIn } from "./hosts.js";
import { type LocalityEndpoint, withTopologyLabels, workloadLocality } from "./locality.js";
import { workloadName } from "./workload.js";

export interface Service {
  /** The host as the ServiceEntry writes it; cluster names use it. */
  host: string;
  namespace: string;
  /** The ServiceEntry that defines the service (the first for this host in its namespace). */
  entry: ServiceEntry;
  /** Every ServiceEntry for this host in its namespace, `entry` first; the endpoints of all of them count. */
  entries: ServiceEntry[];
}

export interface ServicePort {
  number: number;
  name: string;
  targetPort?: number;
}

/** A service port served by a given workload (Istio's ServiceTarget): `targetPort` is where its app listens. */
export interface ServiceInstance {
  service: Service;
  port: ServicePort & { protocol: string };
  targetPort: number;
}

export class Registry {
  private readonly byHost = new Map<string, Service[]>();
  private readonly rules: DestinationRuleIndex;

  /** The registry as `viewer` sees it; without a viewer, every service is visible (mesh-wide checks). */
  constructor(
    private readonly mesh: MeshConfig,
    readonly viewer?: ProxyIdentity,
  ) {
    for (const entry of mesh.serviceEntries) {
      for (const host of entry.spec.hosts) {
        const services = this.byHost.get(host) ?? [];
        const existing = services.find((service) => service.namespace === entry.namespace);
        if (existing) existing.entries.push(entry);
        else services.push({ host, namespace: entry.namespace, entry, entries: [entry] });
        this.byHost.set(host, services);
      }
    }
    this.rules = new DestinationRuleIndex(mesh, this);
  }

  /** One service per host the viewer sees: of its own namespace if there is one, else the first exported to it. */
  services(): Service[] {
    return [...this.byHost.values()].flatMap((services) => {
      const chosen = this.choose(services, this.viewer?.namespace);
      return chosen ? [chosen] : [];
    });
  }

  /** The canonical host a name refers to from `namespace`, whether or not the viewer sees a ServiceEntry for it. */
  resolveHost(name: string, namespace: string): string {
    return this.lookup(name, namespace)?.host ?? this.canonicalHost(name, namespace);
  }

  /** A host name as written if some ServiceEntry has it, else a short name expanded into `namespace`
   * (`catalog` -> `catalog.<namespace>.svc.cluster.local`, Istio's ResolveShortnameToFQDN). */
  canonicalHost(name: string, namespace: string): string {
    if (this.byHost.has(name) || name.includes(".") || name === "*") return name;
    return `${name}.${namespace}.svc.cluster.local`;
  }

  /** DestinationRules merged into others (for warnings). */
  ruleMerges() {
    return this.rules.merges;
  }

  /** The service a host name in a resource of `namespace` refers to, if the viewer sees one. */
  lookup(name: string, namespace: string): Service | undefined {
    const services = this.byHost.get(name) ?? (name.includes(".") ? undefined : this.byHost.get(`${name}.${namespace}.svc.cluster.local`));
    return services && this.choose(services, namespace);
  }

  /** Every service for a host, in every namespace, visible or not (for checks across namespaces). */
  servicesForHost(host: string): Service[] {
    return this.byHost.get(host) ?? [];
  }

  private choose(services: Service[], preferredNamespace: string | undefined): Service | undefined {
    const visible = services.filter((service) => this.visible(service));
    return (
      visible.find((service) => service.namespace === preferredNamespace) ??
      visible.find((service) => service.namespace === this.viewer?.namespace) ??
      visible[0]
    );
  }

  private visible(service: Service): boolean {
    return !this.viewer || visibleIn(service.entry.spec.exportTo, service.namespace, this.viewer.namespace);
  }

  /** The port a destination without `port` goes to: the service's only (or first) port; 80 for unknown hosts. */
  defaultPort(name: string, namespace: string): number {
    return this.lookup(name, namespace)?.entry.spec.ports[0]?.number ?? 80;
  }

  /** Endpoints of `service` on `port` whose labels include `labels`, as Envoy lb_endpoints with their locality: those
   * of every entry for the service, the WorkloadEntries their workloadSelector selects, or, for a DNS entry with
   * neither, its host. */
  endpoints(service: Service, port: ServicePort, labels: Record<string, string>): LocalityEndpoint[] {
    return service.entries.flatMap((entry) => {
      const entryPort = entry.spec.ports.find((p) => p.number === port.number);
      if (!entryPort) return []; // Istio keys instances by the defining service's port numbers.
      return this.workloads(entry, service.host)
        .filter((workload) => Object.entries(labels).every(([key, value]) => workload.labels?.[key] === value))
        .map((workload) => {
          const locality = workloadLocality(workload);
          return {
            lbEndpoint: lbEndpoint(workload, workload.ports?.[entryPort.name] ?? entryPort.targetPort ?? entryPort.number, istioWorkload(service.host, entry.namespace, workload.labels ?? {})),
            ...(locality ? { locality } : {}),
            labels: withTopologyLabels(workload.labels, locality),
          };
        });
    });
  }

  /** The workloads behind one ServiceEntry for one of its hosts (Istio's convertServiceEntryToInstances). */
  /** Every workload of `service`, from all its entries: who may answer for it (service accounts, tlsMode). */
  workloadsOf(service: Service): WorkloadEntrySpec[] {
    return service.entries.flatMap((entry) => this.workloads(entry, service.host));
  }

  /** A workload's TLS mode: `istio` when it has a sidecar (Istio's getTLSModeFromWorkloadEntry). */
  tlsMode(workload: WorkloadEntrySpec): string {
    return workloadTlsMode(workload);
  }

  private workloads(entry: ServiceEntry, host: string): WorkloadEntrySpec[] {
    if (entry.spec.workloadSelector) {
      const selector = entry.spec.workloadSelector.labels;
      return this.mesh.workloadEntries
        .filter((workload) => workload.namespace === entry.namespace && Object.entries(selector).every(([key, value]) => workload.spec.labels?.[key] === value))
        .map((workload) => workload.spec);
    }
    if (entry.spec.endpoints) return entry.spec.endpoints;
    // A DNS entry without endpoints resolves its hosts themselves: each host is its own service and endpoint.
    const dns = entry.spec.resolution === "DNS" || entry.spec.resolution === "DNS_ROUND_ROBIN";
    return dns ? [{ address: host }] : [];
  }

  /** The service ports whose endpoints (or selected WorkloadEntries) have one of `ips`: what a sidecar with those
   * INSTANCE_IPS serves inbound. As in Istio, every service counts, whatever the proxy sees of the registry. */
  instancesOf(ips: readonly string[]): ServiceInstance[] {
    const out: ServiceInstance[] = [];
    if (ips.length === 0) return out;
    for (const service of [...this.byHost.values()].flat()) {
      for (const port of service.entry.spec.ports) {
        for (const entry of service.entries) {
          const workload = this.workloads(entry, service.host).find((candidate) => ips.includes(candidate.address));
          if (!workload) continue;
          out.push({ service, port, targetPort: workload.ports?.[port.name] ?? port.targetPort ?? port.number });
          break;
        }
      }
    }
    return out;
  }

  /** The DestinationRule that applies to `service` for the viewer (destination-rules.ts). */
  destinationRule(service: Service): DestinationRule | undefined {
    return this.rules.forService(service, this.viewer);
  }
}

/** An Envoy LbEndpoint with istiod's endpoint metadata (pilot/pkg/networking/util AppendLbEndpointMetadata):
 * `istio.workload` (which the istio-stats filter reads for the labels of a destination without a sidecar) and, for a
 * workload with a service account (or the `security.istio.io/tlsMode` label), the mark for Istio's mutual TLS, by
 * which clusters choose their transport socket. */
function lbEndpoint(workload: WorkloadEntrySpec, port: number, istio: string): Record<string, unknown> {
  const tlsMode = workloadTlsMode(workload);
  return {
    endpoint: { address: { socket_address: { address: workload.address, port_value: port } } },
    load_balancing_weight: workload.weight ?? 1,
    metadata: {
      filter_metadata: {
        istio: { workload: istio },
        ...(tlsMode !== "disabled" ? { "envoy.transport_socket_match": { tlsMode } } : {}),
      },
    },
  };
}

/** istiod's `istio.workload` value, "workload;namespace;canonical service;canonical revision;cluster": canonical
 * service and revision from Istio's labels, else app and version; without an app label, the service's short name. */
function istioWorkload(host: string, namespace: string, labels: Record<string, string>): string {
  const app = labels["service.istio.io/canonical-name"] ?? labels.app ?? host.split(".")[0]!;
  const revision = labels["service.istio.io/canonical-revision"] ?? labels.version ?? "latest";
  return `${workloadName(app, labels.version)};${namespace};${app};${revision};Kubernetes`;
}

/** The `security.istio.io/tlsMode` label if set, else `istio` for a workload with a service account, else
 * `disabled` (getTLSModeFromWorkloadEntry). */
function workloadTlsMode(workload: WorkloadEntrySpec): string {
  return workload.labels?.["security.istio.io/tlsMode"] ?? (workload.serviceAccount ? "istio" : "disabled");
}
