// Gateway servers that are not HTTP, as istiod's createGatewayTCPFilterChainOpts builds them (gateway.go:
// buildGatewayNetworkFiltersFromTCPRoutes, buildGatewayNetworkFiltersFromTLSRoutes):
// - TCP: one chain, a tcp_proxy as the first `tcp` route of a bound VirtualService says;
// - TLS or HTTPS with tls.mode PASSTHROUGH: a chain per `tls` route match, chosen by SNI (`server_names` = the match's
//   `sniHosts`), passing the TLS connection on untouched to a backend that terminates it;
// - TLS with SIMPLE, MUTUAL or OPTIONAL_MUTUAL: TLS terminated here with the server's certificate (chosen by SNI among
//   the server's hosts), then a tcp_proxy as the first matching `tcp` route says.
// A VirtualService takes part when it is bound to the server's Gateway and its hosts and the server's overlap; a route
// match takes part when its `port` and `gateways` (if set) fit this server (Istio's l4SingleMatch).
import type { Gateway, VirtualService } from "../sources/model.js";
import type { GatewayServer } from "../sources/schema/index.js";
import { hostPart, hostsForNamespace, intersectHosts } from "./hosts.js";
import type { Registry } from "./registry.js";
import { gatewayRef, tcpRouteFilter } from "./tcp-routes.js";

export interface L4Server {
  gateway: Gateway;
  server: GatewayServer;
}

/** Whether a server is served by tcp_proxy chains rather than an HTTP connection manager. */
export function isL4Server(server: GatewayServer): boolean {
  const protocol = server.port.protocol;
  return protocol === "TCP" || protocol === "TLS" || (protocol === "HTTPS" && server.tls?.mode === "PASSTHROUGH");
}

/** The filter chains of a port's TCP and TLS servers. `terminate` gives the transport socket (and registers the
 * secrets) that terminates TLS with a server's certificate, or nothing while its Kubernetes credential is missing.
 * Servers nothing routes (or without their credential) get no chain, as in Istio. */
export function l4FilterChains(
  servers: L4Server[],
  port: number,
  registry: Registry,
  bound: (gateway: Gateway) => VirtualService[],
  terminate: (server: GatewayServer, gateway: Gateway) => Record<string, unknown> | undefined,
): Record<string, unknown>[] {
  const chains: Record<string, unknown>[] = [];
  const sniTaken = new Set<string>();
  for (const { gateway, server } of servers) {
    const gatewayName = `${gateway.namespace}/${gateway.name}`;
    const services = bound(gateway).filter((vs) => intersectHosts(hostsForNamespace(server.hosts, gateway.namespace, vs.namespace), vs.spec.hosts).length > 0);
    const fits = (match: { port?: number; gateways?: string[] }, vs: VirtualService) =>
      (match.port === undefined || match.port === port) && (!match.gateways?.length || match.gateways.some((entry) => gatewayRef(entry, vs.namespace) === gatewayName));
    if (server.tls?.mode === "PASSTHROUGH") {
      for (const vs of services) {
        for (const route of vs.spec.tls) {
          for (const match of route.match) {
            if (!fits(match, vs)) continue;
            // Envoy refuses two chains with the same SNI names; Istio skips the later rule (with a warning).
            const key = [...match.sniHosts].sort().join(",");
            if (sniTaken.has(key)) continue;
            sniTaken.add(key);
            chains.push({ filter_chain_match: { server_names: match.sniHosts }, filters: [tcpRouteFilter(route, vs, registry, port)] });
          }
        }
      }
      continue;
    }
    const route = services.flatMap((vs) => vs.spec.tcp.map((tcp) => ({ vs, tcp }))).find(({ vs, tcp }) => !tcp.match?.length || tcp.match.some((match) => fits(match, vs)));
    if (!route) continue;
    const filters = [tcpRouteFilter(route.tcp, route.vs, registry, port)];
    if (server.port.protocol === "TCP") {
      chains.push({ filters });
    } else {
      const serverNames = server.hosts.map(hostPart).filter((host) => host !== "*");
      const transportSocket = terminate(server, gateway);
      if (transportSocket) chains.push({ ...(serverNames.length > 0 ? { filter_chain_match: { server_names: serverNames } } : {}), transport_socket: transportSocket, filters });
    }
  }
  return chains;
}
