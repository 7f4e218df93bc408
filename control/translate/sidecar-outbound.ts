// A sidecar's outbound side, as istiod builds it (pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners,
// buildListenerFromEntry; listener_builder.go buildVirtualOutboundListener; httproute.go):
//
// With capture (REDIRECT): `virtualOutbound` on 0.0.0.0:15001 takes every redirected connection and, with
// `use_original_dst`, hands it to the listener of its original destination: `0.0.0.0_<port>` (bind_to_port false)
// per service port. An HTTP port's listener sends HTTP (found by the HTTP inspector) to an HTTP connection manager
// with RDS route configuration `<port>`, anything else to its default chain (PassthroughCluster under ALLOW_ANY,
// BlackHoleCluster under REGISTRY_ONLY); a TCP port's listener is a tcp_proxy to `outbound|<port>||<host>` or where
// the VirtualService's `tcp` routes say; a TLS port's listener picks a chain by SNI (the TLS inspector), per `tls`
// route or per service host. What no listener takes, virtualOutbound passes through or blackholes itself.
//
// Without capture (NONE), the same listeners bind 127.0.0.1:<port> (`127.0.0.1_<port>`) and the application calls
// them there; there is no virtualOutbound.
//
// Each route configuration `<port>` has one virtual host per service on that port (its host and short forms, each
// also with `:port`), routed by the VirtualServices bound to `mesh`, or by Istio's default route; and the catch-all
// `allow_any` (to PassthroughCluster) or `block_all` (502) virtual host.
import type { ProxyIdentity, XdsResource } from "../resources.js";
import { BLACKHOLE_CLUSTER, clusterName, PASSTHROUGH_CLUSTER, socketAddress } from "./envoy.js";
import { hostSubsetOf } from "./hosts.js";
import {
  BIND_ADDRESS,
  HTTP_INSPECTOR,
  httpConnectionManagerFilter,
  type ListenerOutput,
  listenerName,
  PLAINTEXT_HTTP_ALPNS,
  routeConfiguration as routeConfigurationResource,
  TLS_INSPECTOR,
  tcpProxyFilter,
  WILDCARD,
} from "./listeners.js";
import { consistentHashFor } from "./policy.js";
import type { Registry, Service } from "./registry.js";
import { defaultRoute, virtualServiceRoutes } from "./routes.js";
import type { EgressListener, SidecarScope } from "./scope.js";
import { l4MatchApplies, tcpRouteFilter } from "./tcp-routes.js";

/** Istio's ProxyListenPort: where istio-init redirects outbound TCP. */
export const OUTBOUND_CAPTURE_PORT = 15001;

type Kind = "http" | "tcp" | "tls";

interface Chain {
  match?: { server_names?: string[]; transport_protocol?: string; application_protocols?: string[]; prefix_ranges?: Array<Record<string, unknown>> };
  filters: Record<string, unknown>[];
}

/** One outbound listener being assembled (Istio's outboundListenerEntry). */
interface Entry {
  address: string;
  port: number;
  bindToPort: boolean;
  kinds: Set<Kind>;
  chains: Chain[];
  /** Made for an egress listener with an explicit port: the catch-all listener adds nothing to it. */
  locked: boolean;
}

const PROTOCOL_KIND: Record<string, Kind> = { HTTP: "http", HTTP2: "http", GRPC: "http", TCP: "tcp", TLS: "tls", HTTPS: "tls" };

export function buildSidecarOutbound(registry: Registry, scope: SidecarScope, proxy: ProxyIdentity, httpFilters: Record<string, unknown>[]): ListenerOutput {
  const entries = new Map<string, Entry>();
  /** Route configuration name -> the egress listener whose services and VirtualServices fill it. */
  const routeSources = new Map<string, EgressListener>();
  const passthrough = scope.outboundTrafficPolicy === "ALLOW_ANY" && scope.interception === "REDIRECT";

  // resolution NONE sends traffic on to the address the application dialed, which only a sidecar that captures
  // traffic knows; without capture its listener would send it back to itself (a proxy note says so).
  const egressListeners = scope.egress.map((egress) => ({
    ...egress,
    services: egress.services.filter((service) => !(service.entry.spec.resolution === "NONE" && scope.interception === "NONE")),
  }));
  for (const egress of egressListeners) {
    // Without capture, or when this egress listener asks for none, the listener binds its port (on 127.0.0.1
    // unless `bind` says where); with capture it only takes connections virtualOutbound hands over.
    const bindToPort = scope.interception === "NONE" || egress.captureMode === "NONE";
    const bind = egress.bind ?? (bindToPort ? BIND_ADDRESS : undefined);
    if (!egress.port) for (const entry of entries.values()) entry.locked = true;
    for (const service of egress.services) {
      const ports = egress.port ? [egress.port] : service.entry.spec.ports;
      for (const port of ports) {
        const kind = PROTOCOL_KIND[port.protocol] ?? "http";
        // With capture, a TCP or TLS service with an address gets a listener on it (Istio's VIP listener); HTTP
        // services share 0.0.0.0_<port>, told apart by Host. A CIDR block is matched by the chain instead.
        const vip = kind === "http" || bind ? undefined : service.entry.spec.addresses?.find((address) => !address.includes("/"));
        const cidrs = kind === "http" || bind || vip ? [] : (service.entry.spec.addresses ?? []).filter((address) => address.includes("/"));
        const address = bind ?? vip ?? WILDCARD;
        const key = `${address}_${port.number}`;
        const existing = entries.get(key);
        if (existing?.locked) continue;
        const entry = existing ?? { address, port: port.number, bindToPort, kinds: new Set<Kind>(), chains: [], locked: egress.port !== undefined };
        entries.set(key, entry);
        if (kind === "http") {
          if (entry.kinds.has("http")) continue; // One HTTP chain per port; the route configuration has every service.
          const routeName = String(port.number);
          if (!routeSources.has(routeName)) routeSources.set(routeName, egress);
          entry.chains.push({
            // On a captured wildcard port, the HTTP inspector tells HTTP from other traffic to the same port.
            ...(address === WILDCARD ? { match: { transport_protocol: "raw_buffer", application_protocols: PLAINTEXT_HTTP_ALPNS } } : {}),
            filters: [httpConnectionManagerFilter(`outbound_${listenerName(port.number, address)}`, routeName, httpFilters, false)],
          });
        } else {
          const useSni = kind === "tls" && address === WILDCARD && cidrs.length === 0;
          for (const chain of l4Chains(registry, egress, service, port.number, kind, useSni, proxy, cidrs)) {
            // Envoy refuses two chains with one match; as istiod, the first service on the port keeps it.
            if (!entry.chains.some((other) => JSON.stringify(other.match ?? {}) === JSON.stringify(chain.match ?? {}))) entry.chains.push(chain);
          }
        }
        entry.kinds.add(kind);
      }
    }
  }

  const catchAll = tcpProxyFilter(passthrough ? PASSTHROUGH_CLUSTER : BLACKHOLE_CLUSTER, passthrough ? PASSTHROUGH_CLUSTER : BLACKHOLE_CLUSTER);
  const out: ListenerOutput = { listeners: [], routes: [] };
  for (const entry of [...entries.values()].sort((a, b) => a.port - b.port || a.address.localeCompare(b.address))) {
    out.listeners.push(outboundListener(entry, catchAll));
  }
  for (const [routeName, egress] of [...routeSources].sort(([a], [b]) => Number(a) - Number(b))) {
    out.routes.push(routeConfiguration(routeName, egress, registry, passthrough));
  }
  if (scope.interception === "REDIRECT") out.listeners.push(virtualOutbound(catchAll));
  return out;
}

/** Istio's buildListenerFromEntry: a chain that matches everything becomes the default chain (or the only chain);
 * otherwise connections no chain matches go to the pass-through (or blackhole) default chain. */
function outboundListener(entry: Entry, catchAll: Record<string, unknown>): XdsResource {
  const name = listenerName(entry.port, entry.address);
  const matching = entry.chains.filter((chain) => chain.match);
  const matchAll = entry.chains.find((chain) => !chain.match);
  const body: Record<string, unknown> = {
    name,
    address: socketAddress(entry.address, entry.port),
    traffic_direction: "OUTBOUND",
    ...(entry.bindToPort ? {} : { bind_to_port: false }),
  };
  const listenerFilters = [
    ...(matching.some((chain) => chain.match!.server_names) ? [TLS_INSPECTOR] : []),
    ...(matching.some((chain) => chain.match!.application_protocols) ? [HTTP_INSPECTOR] : []),
  ];
  if (listenerFilters.length > 0) body.listener_filters = listenerFilters;
  // Istio's mesh default protocolDetectionTimeout is 0s: the inspectors wait for the first bytes without a timeout.
  body.listener_filters_timeout = "0s";
  body.continue_on_listener_filters_timeout = true;
  const chain = (c: Chain) => ({ ...(c.match ? { filter_chain_match: c.match } : {}), filters: c.filters });
  if (matching.length === 0) {
    body.filter_chains = [chain(matchAll!)];
  } else {
    body.filter_chains = matching.map(chain);
    body.default_filter_chain = matchAll ? chain(matchAll) : { filter_chain_match: {}, name: "PassthroughFilterChain", filters: [catchAll] };
  }
  return { name, body };
}

/** Filter chains for a TCP or TLS service port: its VirtualServices' `tcp`/`tls` routes that apply to this sidecar,
 * else straight to the service's cluster (by SNI for TLS on a captured port: the service's host). */
function l4Chains(
  registry: Registry,
  egress: EgressListener,
  service: Service,
  port: number,
  kind: "tcp" | "tls",
  useSni: boolean,
  proxy: ProxyIdentity,
  cidrs: string[],
): Chain[] {
  const context = { proxy, port, gateway: "mesh" };
  // A service addressed by CIDR blocks on the wildcard listener: its chains match those destinations.
  const prefixRanges = cidrs.length > 0 ? { prefix_ranges: cidrs.map(prefixRange) } : {};
  const services = egress.virtualServices.filter((vs) =>
    vs.spec.hosts.some((name) => {
      const host = registry.resolveHost(name, vs.namespace);
      return hostSubsetOf(service.host, host) || hostSubsetOf(host, service.host);
    }),
  );
  const defaultChain = (): Chain => {
    const cluster = clusterName(service.entry.spec.ports.length === 1 ? service.entry.spec.ports[0]!.number : port, undefined, service.host);
    const match = { ...prefixRanges, ...(useSni ? { server_names: [service.host] } : {}) };
    return { ...(Object.keys(match).length > 0 ? { match } : {}), filters: [tcpProxyFilter(cluster, cluster)] };
  };
  if (kind === "tls") {
    const chains: Chain[] = [];
    for (const vs of services) {
      for (const route of vs.spec.tls) {
        for (const match of route.match) {
          if (!l4MatchApplies(match, vs, context)) continue;
          // The first route for a set of SNI names wins (Istio's matchHasBeenHandled).
          if (chains.some((chain) => JSON.stringify(chain.match?.server_names) === JSON.stringify(match.sniHosts))) continue;
          chains.push({ match: { ...prefixRanges, server_names: match.sniHosts }, filters: [tcpRouteFilter(route, vs, registry, port)] });
        }
      }
    }
    return chains.length > 0 ? chains : [defaultChain()];
  }
  for (const vs of services) {
    for (const route of vs.spec.tcp) {
      if (!route.match?.length || route.match.some((match) => l4MatchApplies(match, vs, context))) {
        return [{ ...(cidrs.length > 0 ? { match: prefixRanges } : {}), filters: [tcpRouteFilter(route, vs, registry, port)] }];
      }
    }
  }
  return [defaultChain()];
}

/** Istio's virtualOutbound: everything istio-init redirects arrives here and goes on to the listener of its
 * original destination; what no listener takes is passed through (ALLOW_ANY) or dropped (REGISTRY_ONLY). A
 * connection to 15001 itself is dropped, or it would loop. */
function virtualOutbound(catchAll: Record<string, unknown>): XdsResource {
  const name = "virtualOutbound";
  return {
    name,
    body: {
      name,
      address: socketAddress(WILDCARD, OUTBOUND_CAPTURE_PORT),
      use_original_dst: true,
      traffic_direction: "OUTBOUND",
      filter_chains: [
        {
          name: "virtualOutbound-blackhole",
          filter_chain_match: { destination_port: OUTBOUND_CAPTURE_PORT },
          filters: [tcpProxyFilter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
        },
        { name: "virtualOutbound-catchall-tcp", filters: [catchAll] },
      ],
    },
  };
}

/** Route configuration `<port>`: a virtual host per HTTP service the egress listener has on that port. */
function routeConfiguration(routeName: string, egress: EgressListener, registry: Registry, passthrough: boolean): XdsResource {
  const port = Number(routeName);
  const hosts: Record<string, unknown>[] = [];
  const domainsTaken = new Set<string>();
  for (const service of egress.services) {
    const servicePort = service.entry.spec.ports.find((candidate) => candidate.number === port);
    if (!servicePort || (PROTOCOL_KIND[servicePort.protocol] ?? "http") !== "http") continue;
    const routes = egress.virtualServices
      .filter((vs) => vs.spec.hosts.some((host) => registry.resolveHost(host, vs.namespace) === service.host))
      .flatMap((vs) => virtualServiceRoutes(vs, registry, { port, gateways: MESH, tls: false }));
    // The service's addresses are names for it too (Istio's generateVirtualHostDomains); CIDR blocks are not.
    const addresses = (service.entry.spec.addresses ?? []).filter((address) => !address.includes("/")).map((address) => (address.includes(":") ? `[${address}]` : address));
    const domains = [...hostAliases(service.host), ...addresses]
      .flatMap((alias) => [alias, `${alias}:${port}`])
      .filter((domain) => !domainsTaken.has(domain));
    for (const domain of domains) domainsTaken.add(domain);
    hosts.push({
      name: `${service.host}:${port}`,
      domains,
      routes: routes.length > 0 ? routes : [defaultRoute(clusterName(port, undefined, service.host), consistentHashFor(registry.destinationRule(service)?.spec, undefined, port))],
      include_request_attempt_count: true,
    });
  }
  hosts.push(passthrough ? allowAny() : blockAll());
  return routeConfigurationResource(routeName, hosts);
}

/** The routes of a sidecar serve the `mesh` gateway. */
const MESH = new Set(["mesh"]);

/** Istio's catch-all virtual host under ALLOW_ANY: any other host goes where the request was going. */
function allowAny(): Record<string, unknown> {
  return {
    name: "allow_any",
    domains: ["*"],
    routes: [{ name: "allow_any", match: { prefix: "/" }, route: { cluster: PASSTHROUGH_CLUSTER, timeout: "0s", max_stream_duration: { grpc_timeout_header_max: "0s" } } }],
    include_request_attempt_count: true,
  };
}

/** Istio's catch-all virtual host under REGISTRY_ONLY (and, in Skiff, without capture): 502 for any other host. */
function blockAll(): Record<string, unknown> {
  return {
    name: "block_all",
    domains: ["*"],
    routes: [{ name: "block_all", match: { prefix: "/" }, direct_response: { status: 502 } }],
    include_request_attempt_count: true,
  };
}

/** A CIDR block as an Envoy CidrRange. */
function prefixRange(cidr: string): Record<string, unknown> {
  const [address, length] = cidr.split("/");
  return { address_prefix: address, prefix_len: Number(length) };
}

/** A Kubernetes-style host is also reachable by its short forms, as in a pod's DNS search path. */
function hostAliases(host: string): string[] {
  const match = /^([^.]+)\.([^.]+)\.svc\.cluster\.local$/.exec(host);
  if (!match) return [host];
  const [, name, namespace] = match;
  return [host, name!, `${name}.${namespace}`, `${name}.${namespace}.svc`];
}
