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
// The place security hooks in: `inboundChains()` builds each port's filter chains (plaintext only today: transport
// `raw_buffer`); mTLS chains, the TLS inspector and RBAC filters belong there.
import type { ProxyIdentity, XdsResource } from "../resources.js";
import { circuitBreakerThreshold, INBOUND_PASSTHROUGH_SOURCE, passthroughCluster } from "./clusters.js";
import { BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, inboundClusterName, socketAddress, typed } from "./envoy.js";
import { HTTP_INSPECTOR, httpConnectionManagerFilter, listenerName, ORIGINAL_DST, PLAINTEXT_HTTP_ALPNS, tcpProxyFilter, WILDCARD } from "./listeners.js";
import type { Registry } from "./registry.js";
import type { SidecarScope } from "./scope.js";

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

export function buildSidecarInbound(registry: Registry, scope: SidecarScope, proxy: ProxyIdentity, httpFilters: Record<string, unknown>[]): InboundOutput {
  const ports = inboundPorts(registry, scope, proxy);
  const out: InboundOutput = { listeners: [], clusters: [] };
  const virtualChains: Record<string, unknown>[] = [];
  for (const port of ports) {
    const chains = inboundChains(port, httpFilters);
    if (port.bindToPort) {
      const name = listenerName(port.port, port.bind);
      out.listeners.push({ name, body: { name, address: socketAddress(port.bind, port.port), traffic_direction: "INBOUND", continue_on_listener_filters_timeout: true, filter_chains: chains } });
    } else {
      virtualChains.push(...chains);
    }
    out.clusters.push(inboundCluster(port));
  }
  if (scope.interception === "REDIRECT") out.listeners.unshift(virtualInbound(ports.filter((port) => !port.bindToPort), virtualChains, httpFilters));
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

/** A port's filter chains: plaintext HTTP to an HTTP connection manager, anything else to a tcp_proxy. */
function inboundChains(port: InboundPort, httpFilters: Record<string, unknown>[]): Record<string, unknown>[] {
  const name = listenerName(port.port, port.bind);
  const cluster = inboundClusterName(port.port);
  const match = { destination_port: port.port, transport_protocol: "raw_buffer" };
  if (!HTTP_PROTOCOLS.has(port.protocol)) return [{ name, filter_chain_match: match, filters: [tcpProxyFilter(cluster, cluster)] }];
  const route = inboundRouteConfiguration(cluster, `inbound|http|${port.servicePort}`, `${port.host}:${port.servicePort}/*`, !port.protocol.startsWith("GRPC"));
  return [{ name, filter_chain_match: match, filters: [httpConnectionManagerFilter(`inbound_${name}`, route, httpFilters, false)] }];
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

/** Istio's virtualInbound: the ports' chains, the pass-through chains for other ports (HTTP found by the HTTP
 * inspector, which is off for the ports that have chains of their own), and a blackhole for 15006 itself. */
function virtualInbound(ports: InboundPort[], chains: Record<string, unknown>[], httpFilters: Record<string, unknown>[]): XdsResource {
  const name = "virtualInbound";
  const passthroughRoute = inboundRouteConfiguration(INBOUND_PASSTHROUGH_CLUSTER, "inbound|http|0", ":0/*", true);
  const ownPorts = [INBOUND_CAPTURE_PORT, ...ports.map((port) => port.port)].sort((a, b) => a - b);
  const ranges = ownPorts.map((port) => ({ destination_port_range: { start: port, end: port + 1 } }));
  return {
    name,
    body: {
      name,
      address: socketAddress(WILDCARD, INBOUND_CAPTURE_PORT),
      traffic_direction: "INBOUND",
      continue_on_listener_filters_timeout: true,
      listener_filters: [ORIGINAL_DST, { ...HTTP_INSPECTOR, filter_disabled: ranges.length === 1 ? ranges[0] : { or_match: { rules: ranges } } }],
      listener_filters_timeout: "0s",
      filter_chains: [
        {
          name: "virtualInbound-blackhole",
          filter_chain_match: { destination_port: INBOUND_CAPTURE_PORT },
          filters: [tcpProxyFilter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
        },
        {
          name: "virtualInbound-catchall-http",
          filter_chain_match: { transport_protocol: "raw_buffer", application_protocols: PLAINTEXT_HTTP_ALPNS },
          filters: [httpConnectionManagerFilter(INBOUND_PASSTHROUGH_CLUSTER, passthroughRoute, httpFilters, false)],
        },
        {
          name: "virtualInbound",
          filter_chain_match: { transport_protocol: "raw_buffer" },
          filters: [tcpProxyFilter(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER)],
        },
        ...chains,
      ],
    },
  };
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
