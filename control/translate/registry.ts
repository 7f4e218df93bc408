// The service registry of the embedded mode: ServiceEntries. Hosts in VirtualServices and DestinationRules are
// resolved against it as Istio resolves short names: as written, then as `<name>.<namespace>.svc.cluster.local` in
// the namespace of the resource that names them.
import type { MeshConfig } from "../sources/index.js";
import type { DestinationRule, ServiceEntry } from "../sources/model.js";

export interface Service {
  /** The host as the ServiceEntry writes it; cluster names use it. */
  host: string;
  entry: ServiceEntry;
}

export interface ServicePort {
  number: number;
  name: string;
}

export class Registry {
  private readonly byHost = new Map<string, Service>();

  constructor(private readonly mesh: MeshConfig) {
    for (const entry of mesh.serviceEntries) {
      for (const host of entry.spec.hosts) {
        if (!this.byHost.has(host)) this.byHost.set(host, { host, entry });
      }
    }
  }

  services(): Service[] {
    return [...this.byHost.values()];
  }

  /** The canonical host a name refers to from `namespace`, whether or not a ServiceEntry defines it. */
  resolveHost(name: string, namespace: string): string {
    return this.lookup(name, namespace)?.host ?? name;
  }

  lookup(name: string, namespace: string): Service | undefined {
    return this.byHost.get(name) ?? (name.includes(".") ? undefined : this.byHost.get(`${name}.${namespace}.svc.cluster.local`));
  }

  /** The port a destination without `port` goes to: the service's only (or first) port; 80 for unknown hosts. */
  defaultPort(name: string, namespace: string): number {
    return this.lookup(name, namespace)?.entry.spec.ports[0]?.number ?? 80;
  }

  /** Endpoints of `service` on `port` whose labels include `labels`, as Envoy lb_endpoints. */
  lbEndpoints(service: Service, port: ServicePort, labels: Record<string, string>): Record<string, unknown>[] {
    const spec = service.entry.spec;
    const portSpec = spec.ports.find((p) => p.number === port.number);
    return spec.endpoints
      .filter((endpoint) => Object.entries(labels).every(([key, value]) => endpoint.labels?.[key] === value))
      .map((endpoint) => {
        const target = endpoint.ports?.[port.name] ?? portSpec?.targetPort ?? port.number;
        return {
          endpoint: { address: { socket_address: { address: endpoint.address, port_value: target } } },
          load_balancing_weight: endpoint.weight ?? 1,
        };
      });
  }

  /** The DestinationRule for a service host (the first one, by file and name order, as Istio picks the oldest). */
  destinationRule(service: Service): DestinationRule | undefined {
    return this.mesh.destinationRules.find((rule) => this.resolveHost(rule.spec.host, rule.namespace) === service.host);
  }
}
