// VirtualService `tcp` and `tls` routes -> tcp_proxy network filters, for sidecars and gateways alike (Istio's
// buildOutboundNetworkFilters in pilot/pkg/networking/core/networkfilter.go, matchTCP/matchTLS in tls.go and
// l4SingleMatch in gateway.go). Match conditions that a proxy's own identity decides (port, gateways, sourceLabels,
// sourceNamespace) are evaluated here, when the proxy's configuration is made; `sniHosts` become filter chain
// matches.
import type { VirtualService } from "../sources/model.js";
import type { Destination, TcpRoute, TlsRoute } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { clusterName } from "./envoy.js";
import { tcpProxyFilter } from "./listeners.js";
import type { Registry } from "./registry.js";

type L4Match = NonNullable<TcpRoute["match"]>[number] | TlsRoute["match"][number];

/** Where a match is evaluated: the proxy, the port of the listener, and the gateway it is on (`namespace/name`, or
 * `mesh` for sidecars). */
export interface L4Context {
  proxy: ProxyIdentity;
  port: number;
  gateway: string;
}

/** Istio's matchTCP/matchTLS: every condition a match sets holds for this proxy, port and gateway. */
export function l4MatchApplies(match: L4Match, vs: VirtualService, context: L4Context): boolean {
  if (match.port !== undefined && match.port !== context.port) return false;
  if (match.gateways?.length && !match.gateways.some((gateway) => gatewayRef(gateway, vs.namespace) === context.gateway)) return false;
  if (match.sourceLabels && !Object.entries(match.sourceLabels).every(([key, value]) => context.proxy.labels[key] === value)) return false;
  if (match.sourceNamespace !== undefined && match.sourceNamespace !== context.proxy.namespace) return false;
  return true;
}

/** A `gateways` entry as `namespace/name` (a bare name is in the VirtualService's namespace), or `mesh`. */
export function gatewayRef(entry: string, namespace: string): string {
  return entry === "mesh" || entry.includes("/") ? entry : `${namespace}/${entry}`;
}

/** The tcp_proxy for a route's destinations: one cluster (stat prefix: the cluster), or weighted clusters (stat
 * prefix `<name>.<namespace>` of the VirtualService). */
export function tcpRouteFilter(route: TcpRoute | TlsRoute, vs: VirtualService, registry: Registry, listenPort: number): Record<string, unknown> {
  if (route.route.length === 1) {
    const cluster = l4Cluster(route.route[0]!.destination, vs.namespace, registry, listenPort);
    return tcpProxyFilter(cluster, cluster);
  }
  const clusters = route.route
    .filter((destination) => (destination.weight ?? 0) > 0)
    .map((destination) => ({ name: l4Cluster(destination.destination, vs.namespace, registry, listenPort), weight: destination.weight! }));
  return tcpProxyFilter(`${vs.name}.${vs.namespace}`, clusters);
}

/** Istio's GetDestinationCluster for L4: the destination's port, else the service's only port, else the port the
 * traffic came in on. */
export function l4Cluster(destination: Destination, namespace: string, registry: Registry, listenPort: number): string {
  const service = registry.lookup(destination.host, namespace);
  const ports = service?.entry.spec.ports ?? [];
  const port = destination.port?.number ?? (ports.length === 1 ? ports[0]!.number : listenPort);
  return clusterName(port, destination.subset, service?.host ?? destination.host);
}
