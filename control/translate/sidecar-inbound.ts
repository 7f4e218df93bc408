// A sidecar's inbound side, as istiod builds it (pilot/pkg/networking/core/listener_inbound.go, cluster.go
// buildInboundClusters, cluster_builder.go buildInboundCluster, httproute.go buildSidecarInboundHTTPRouteConfig):
//
// The ports the workload serves are those of the services whose endpoints have the proxy's address (INSTANCE_IPS),
// each at its target port, or, when a Sidecar resource lists `ingress` ports, exactly those. With capture (REDIRECT)
// they are filter chains of `virtualInbound` on 0.0.0.0:15006, where istio-init redirects inbound TCP: chain
// `0.0.0.0_<port>` (matched by destination port) has an HTTP connection manager with the inline route configuration
// `inbound|<port>||` (HTTP ports) or a tcp_proxy (TCP and TLS ports), both to cluster `inbound|<port>||`, which connects
// to the connection's original destination (the app on the pod's address) from 127.0.0.6. Connections to other
// ports pass through (`virtualInbound-catchall-http`, `virtualInbound`, to InboundPassthroughCluster); a connection to
// 15006 itself is dropped. Without capture (NONE) there is inbound only for Sidecar `ingress` ports, each a listener
// bound on the pod's address (or `bind`), to the ingress's `defaultEndpoint`.
//
// Security (listener_inbound.go inboundChainForOpts, buildInboundPassthroughChains): each port's chains, and the
// pass-through chains, are those of its PeerAuthentication mode (peer-authentication.ts): plain text, mesh mTLS
// terminated with the agent's certificate, or both; TCP chains run the AuthorizationPolicy's network RBAC filters
// before tcp_proxy, HTTP chains its HTTP filters (`httpFilters`); the inbound HTTP connection managers pass the
// verified client identity on in x-forwarded-client-cert. The TLS and HTTP inspectors are enabled per port from what
// the chains match (populateListenerFilters).
import type { ProxyIdentity, XdsResource } from "../resources.js";
import { circuitBreakerThreshold, INBOUND_PASSTHROUGH_SOURCE, passthroughCluster } from "./clusters.js";
import { BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, inboundClusterName, socketAddress, typed } from "./envoy.js";
import { HTTP_INSPECTOR, httpConnectionManagerFilter, listenerName, ORIGINAL_DST, TLS_INSPECTOR, tcpProxyFilter, WILDCARD } from "./listeners.js";
import {
  INBOUND_XFCC,
  type InboundChainOption,
  inboundChainOptions,
  type InboundMode,
  type InboundMtls,
  inboundTlsTransportSocket,
  type ListenerProtocol,
  modeForPort,
} from "./peer-authentication.js";
import type { Registry } from "./registry.js";
import type { SidecarScope } from "./scope.js";

type Json = Record<string, unknown>;

/** What the inbound side enforces: the workload's mutual TLS, and its AuthorizationPolicy on TCP chains. */
export interface InboundSecurity {
  mtls: InboundMtls;
  /** False without workload certificates (--plaintext): chains that would terminate mesh mTLS are left out, so a
   * STRICT port refuses every connection. */
  certificates: boolean;
  trustDomain: string;
  /** Network filters before tcp_proxy on TCP chains (RBAC). */
  tcpFilters: Json[];
}

/** Istio's ProxyInboundListenPort: where istio-init redirects inbound TCP. */
export const INBOUND_CAPTURE_PORT = 15006;

/** One port the workload serves (Istio's inboundChainConfig). */
interface InboundPort {
  /** The port the app listens on, which the connection was addressed to. */
  port: number;
  /** The service port, for names and tracing. */
  servicePort: number;
  host: string;
  protocol: string;
  /** A listener of its own bound on `bind` (no capture), or a chain of virtualInbound. */
  bindToPort: boolean;
  bind: string;
  /** Where the cluster sends connections; unset: the connection's original destination. */
  endpoint?: { address: string; port: number };
}

export interface InboundOutput {
  listeners: XdsResource[];
  clusters: XdsResource[];
}

const HTTP_PROTOCOLS = new Set(["HTTP", "HTTP2", "GRPC"]);
const HTTP2_PROTOCOLS = new Set(["HTTP2", "GRPC"]);

export function buildSidecarInbound(
  registry: Registry,
  scope: SidecarScope,
  proxy: ProxyIdentity,
  httpFilters: Record<string, unknown>[],
  security: InboundSecurity,
): InboundOutput {
  const ports = inboundPorts(registry, scope, proxy);
  const out: InboundOutput = { listeners: [], clusters: [] };
  const virtualChains: Record<string, unknown>[] = [];
  for (const port of ports) {
    const chains = inboundChains(port, httpFilters, security);
    if (port.bindToPort) {
      const name = listenerName(port.port, port.bind);
      out.listeners.push({ name, body: inboundListener(name, port.bind, port.port, true, chains) });
    } else {
      virtualChains.push(...chains);
    }
    out.clusters.push(inboundCluster(port));
  }
  if (scope.interception === "REDIRECT") out.listeners.unshift(virtualInbound(ports, virtualChains, httpFilters, security));
  out.clusters.push(passthroughCluster(INBOUND_PASSTHROUGH_CLUSTER));
  return out;
}

/** Istio's buildInboundChainConfigs: the Sidecar's `ingress` ports if it lists any; else, with capture, every
 * service port the workload is an endpoint of (one per target port, the first service's), in port order. */
function inboundPorts(registry: Registry, scope: SidecarScope, proxy: ProxyIdentity): InboundPort[] {
  const ingress = scope.sidecar?.spec.ingress;
  const byPort = new Map<number, InboundPort>();
  if (ingress?.length) {
    for (const listener of ingress) {
      if (byPort.has(listener.port.number)) continue;
      const captureMode = listener.captureMode ?? "DEFAULT";
      const bindToPort = captureMode === "DEFAULT" ? scope.interception === "NONE" : captureMode === "NONE";
      const [endpointHost, endpointPort] = listener.defaultEndpoint?.split(":") ?? [];
      byPort.set(listener.port.number, {
        port: listener.port.number,
        servicePort: listener.port.number,
        // Istio names the Sidecar itself where a service host would go.
        host: `${scope.sidecar!.name}.${scope.sidecar!.namespace}`,
        protocol: listener.port.protocol,
        bindToPort,
        bind: listener.bind ?? (bindToPort ? (proxy.ips[0] ?? WILDCARD) : WILDCARD),
        ...(endpointHost
          ? { endpoint: { address: endpointHost === "0.0.0.0" ? (proxy.ips[0] ?? "127.0.0.1") : endpointHost, port: Number(endpointPort) } }
          : {}),
      });
    }
  } else if (scope.interception === "REDIRECT") {
    // Without capture there is nothing to take inbound traffic from: Istio makes no inbound listeners then, or they
    // would take the application's own ports.
    for (const instance of registry.instancesOf(proxy.ips)) {
      if (byPort.has(instance.targetPort)) continue;
      byPort.set(instance.targetPort, {
        port: instance.targetPort,
        servicePort: instance.port.number,
        host: instance.service.host,
        protocol: instance.port.protocol,
        bindToPort: false,
        bind: WILDCARD,
      });
    }
  }
  return [...byPort.values()].sort((a, b) => a.port - b.port);
}

/** A port's filter chains, one per option of its mTLS mode: HTTP ports to an HTTP connection manager with the inline
 * route to the app, anything else to a tcp_proxy (Istio's inboundChainForOpts). */
function inboundChains(port: InboundPort, httpFilters: Record<string, unknown>[], security: InboundSecurity): Record<string, unknown>[] {
  const name = listenerName(port.port, port.bind);
  const cluster = inboundClusterName(port.port);
  const protocol: ListenerProtocol = HTTP_PROTOCOLS.has(port.protocol) ? "http" : "tcp";
  const route = inboundRouteConfiguration(cluster, `inbound|http|${port.servicePort}`, `${port.host}:${port.servicePort}/*`, !port.protocol.startsWith("GRPC"));
  return chainsForMode(security, modeForPort(security.mtls, port.port), protocol, port.port, (option) => ({
    name,
    filters:
      option.protocol === "http"
        ? [httpConnectionManagerFilter(`inbound_${name}`, route, httpFilters, false, INBOUND_XFCC)]
        : [...security.tcpFilters, tcpProxyFilter(cluster, cluster)],
  }));
}

/** The chains of `mode` for `protocol` on `port` (0: any port), each with its name and filters from `chain`: the
 * match and transport socket are the option's; without workload certificates, those that terminate mTLS are left
 * out. */
function chainsForMode(
  security: InboundSecurity,
  mode: InboundMode,
  protocol: ListenerProtocol | "auto",
  port: number,
  chain: (option: InboundChainOption) => { name: string; filters: Json[] },
): Json[] {
  return inboundChainOptions(mode, protocol)
    .filter((option) => security.certificates || !option.tls)
    .map((option) => {
      const { name, filters } = chain(option);
      return {
        name,
        filter_chain_match: { ...(port > 0 ? { destination_port: port } : {}), ...option.match },
        filters,
        ...(option.tls ? { transport_socket: inboundTlsTransportSocket(option.protocol, security.trustDomain) } : {}),
      };
    });
}

/** An inbound listener: virtualInbound (not bound, from capture) or a port of its own (bound). */
function inboundListener(name: string, address: string, port: number, bindToPort: boolean, chains: Json[]): Json {
  return {
    name,
    address: socketAddress(address, port),
    traffic_direction: "INBOUND",
    continue_on_listener_filters_timeout: true,
    listener_filters: listenerFilters(chains, bindToPort),
    // Istio's protocolDetectionTimeout, 0 (none) by default: the inspectors wait for the first bytes.
    listener_filters_timeout: "0s",
    filter_chains: chains,
  };
}

/** Istio's inbound route configuration: everything to the one local cluster, no timeout, and the inbound default
 * retry (2 on reset-before-request; none for gRPC, whose streams it would break). */
function inboundRouteConfiguration(cluster: string, virtualHost: string, operation: string, retry: boolean): Record<string, unknown> {
  return {
    name: cluster,
    virtual_hosts: [
      {
        name: virtualHost,
        domains: ["*"],
        routes: [
          {
            name: "default",
            match: { prefix: "/" },
            decorator: { operation },
            route: {
              cluster,
              timeout: "0s",
              max_stream_duration: { max_stream_duration: "0s", grpc_timeout_header_max: "0s" },
              ...(retry ? { retry_policy: { retry_on: "reset-before-request", num_retries: 2 } } : {}),
            },
          },
        ],
      },
    ],
    validate_clusters: false,
  };
}

/** Istio's virtualInbound: a blackhole for 15006 itself, the pass-through chains for ports without chains of their
 * own (in the workload's mTLS mode, and per port for `portLevelMtls` ports no service declares: ForPassthrough), and
 * the ports' chains. */
function virtualInbound(ports: InboundPort[], chains: Json[], httpFilters: Json[], security: InboundSecurity): XdsResource {
  const name = "virtualInbound";
  const passthroughRoute = inboundRouteConfiguration(INBOUND_PASSTHROUGH_CLUSTER, "inbound|http|0", ":0/*", true);
  const passthrough = (mode: InboundMode, port: number) =>
    chainsForMode(security, mode, "auto", port, (option) =>
      option.protocol === "http"
        ? { name: "virtualInbound-catchall-http", filters: [httpConnectionManagerFilter(INBOUND_PASSTHROUGH_CLUSTER, passthroughRoute, httpFilters, false, INBOUND_XFCC)] }
        : { name: "virtualInbound", filters: [...security.tcpFilters, tcpProxyFilter(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER)] },
    );
  // needPerPortPassthroughFilterChain: a port-level setting for a port that has no chain of its own (all inbound ports
  // have one: those of the Sidecar's ingress, else the services').
  const ownPorts = new Set(ports.map((port) => port.port));
  const extraPorts = [...security.mtls.perPort.keys()].filter((port) => !ownPorts.has(port)).sort((a, b) => a - b);
  const allChains = [
    { name: "virtualInbound-blackhole", filter_chain_match: { destination_port: INBOUND_CAPTURE_PORT }, filters: [tcpProxyFilter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)] },
    ...passthrough(security.mtls.mode, 0),
    ...extraPorts.flatMap((port) => passthrough(modeForPort(security.mtls, port), port)),
    ...chains,
  ];
  return { name, body: inboundListener(name, WILDCARD, INBOUND_CAPTURE_PORT, false, allChains) };
}

/** Istio's populateListenerFilters: original_dst on virtualInbound; the TLS inspector where a chain matches TLS, the
 * HTTP inspector where one matches plain-text HTTP ALPNs, each enabled or disabled per destination port (port 0: the
 * chains for any port). */
function listenerFilters(chains: Json[], bindToPort: boolean): Json[] {
  const inspectors = new Map<number, { tls: boolean; http: boolean }>();
  for (const chain of chains) {
    const match = (chain.filter_chain_match ?? {}) as { destination_port?: number; transport_protocol?: string; application_protocols?: string[] };
    const port = match.destination_port ?? 0;
    const current = inspectors.get(port) ?? { tls: false, http: false };
    inspectors.set(port, {
      tls: current.tls || match.transport_protocol === "tls",
      http: current.http || (match.application_protocols ?? []).some((alpn) => alpn === "http/1.1" || alpn === "h2c"),
    });
  }
  const out: Json[] = bindToPort ? [] : [ORIGINAL_DST];
  const ports = (want: boolean, kind: "tls" | "http") => [...inspectors].filter(([port, i]) => port !== 0 && i[kind] === want).map(([port]) => port).sort((a, b) => a - b);
  if ([...inspectors.values()].some((i) => i.tls)) {
    // buildTLSInspector: on by default when the any-port chains need it (then off where a port's chains do not),
    // else only on the ports that need it.
    const defaultOn = inspectors.get(0)?.tls ?? false;
    const exceptions = ports(!defaultOn, "tls");
    if (exceptions.length === 0) out.push(TLS_INSPECTOR);
    else out.push({ ...TLS_INSPECTOR, filter_disabled: defaultOn ? portsPredicate(exceptions) : { not_match: portsPredicate(exceptions) } });
  }
  if ([...inspectors.values()].some((i) => i.http)) {
    // buildHTTPInspector: off on every port (0 included) whose chains do not need it.
    const off = [...inspectors].filter(([, i]) => !i.http).map(([port]) => port).sort((a, b) => a - b);
    out.push(off.length === 0 ? HTTP_INSPECTOR : { ...HTTP_INSPECTOR, filter_disabled: portsPredicate(off) });
  }
  return out;
}

/** Istio's listenerPredicateExcludePorts: matches connections to these ports. */
function portsPredicate(ports: number[]): Json {
  const ranges = ports.map((port) => ({ destination_port_range: { start: port, end: port + 1 } }));
  return ranges.length === 1 ? ranges[0]! : { or_match: { rules: ranges } };
}

/** `inbound|<port>||`: to the connection's original destination from 127.0.0.6, or to the Sidecar ingress's
 * defaultEndpoint (Istio's buildInboundCluster with inboundTrafficPolicy PASSTHROUGH, the mesh default). */
function inboundCluster(port: InboundPort): XdsResource {
  const name = inboundClusterName(port.port);
  const body: Record<string, unknown> = { name };
  if (port.endpoint) {
    body.type = "STATIC";
    body.load_assignment = { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(port.endpoint.address, port.endpoint.port) } }] }] };
  } else {
    body.type = "ORIGINAL_DST";
    body.lb_policy = "CLUSTER_PROVIDED";
    // Istio never cleans up an inbound original-destination host: the longest interval Envoy takes, about 292 years
    // (maxSecondsValue in cluster_builder.go).
    body.cleanup_interval = "9223372035s";
  }
  body.connect_timeout = "10s";
  body.circuit_breakers = { thresholds: [circuitBreakerThreshold(undefined)] };
  // A connection to the pod's own address would be captured again; 127.0.0.6 is what istio-init lets through.
  if (port.endpoint?.address !== "127.0.0.1") {
    body.upstream_bind_config = { source_address: { address: INBOUND_PASSTHROUGH_SOURCE, port_value: 0 } };
  }
  if (HTTP2_PROTOCOLS.has(port.protocol)) {
    body.typed_extension_protocol_options = {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {
        explicit_http_config: { http2_protocol_options: {} },
      }),
    };
  }
  return { name, body };
}
