// Listener and network-filter builders that every role shares: the HTTP connection manager (the one place an HCM is
// made, for gateways and for sidecars' inbound and outbound chains), tcp_proxy, listener filters and names.
// Which listeners a proxy gets is decided per role: gateway.ts and gateway-l4.ts, sidecar-outbound.ts,
// sidecar-inbound.ts.
import type { XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, socketAddress, typed } from "./envoy.js";
import { CORS_FILTER, FAULT_FILTER, MAX_DIRECT_RESPONSE_BODY_BYTES } from "./routes.js";

/** Where gateways and sidecars without traffic capture bind their listeners. */
export const BIND_ADDRESS = "127.0.0.1";
/** The address of listeners that take captured traffic (Istio's actualWildcard). */
export const WILDCARD = "0.0.0.0";

export interface ListenerOutput {
  listeners: XdsResource[];
  routes: XdsResource[];
}

export const HCM_NAME = "envoy.filters.network.http_connection_manager";
export const TCP_PROXY_NAME = "envoy.filters.network.tcp_proxy";

/** The HTTP connection manager. `route` is an RDS route configuration name, or an inline route configuration (the
 * sidecar's inbound chains, as Istio builds them). `gateway`: a gateway trusts no forwarded addresses and uses the
 * connection's (use_remote_address). `fields`: more HttpConnectionManager fields (the inbound side's client
 * certificate header). */
export function httpConnectionManager(statPrefix: string, route: string | Record<string, unknown>, httpFilters: Record<string, unknown>[], gateway: boolean, fields: Record<string, unknown> = {}) {
  return typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
    stat_prefix: statPrefix,
    ...(typeof route === "string" ? { rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: route } } : { route_config: route }),
    // Fault and CORS just before the router, as Istio: routes configure them per route (typed_per_filter_config).
    http_filters: [...httpFilters, FAULT_FILTER, CORS_FILTER, { name: "envoy.filters.http.router", typed_config: typed("envoy.extensions.filters.http.router.v3.Router") }],
    use_remote_address: gateway,
    normalize_path: true,
    merge_slashes: true,
    ...fields,
  });
}

export function httpConnectionManagerFilter(
  statPrefix: string,
  route: string | Record<string, unknown>,
  httpFilters: Record<string, unknown>[],
  gateway: boolean,
  fields: Record<string, unknown> = {},
): Record<string, unknown> {
  return { name: HCM_NAME, typed_config: httpConnectionManager(statPrefix, route, httpFilters, gateway, fields) };
}

/** tcp_proxy to one cluster, or to several by weight (Istio's buildOutboundNetworkFilters). */
export function tcpProxyFilter(statPrefix: string, target: string | Array<{ name: string; weight: number }>): Record<string, unknown> {
  return {
    name: TCP_PROXY_NAME,
    typed_config: typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", {
      stat_prefix: statPrefix,
      ...(typeof target === "string" ? { cluster: target } : { weighted_clusters: { clusters: target } }),
    }),
  };
}

export const TLS_INSPECTOR = { name: "envoy.filters.listener.tls_inspector", typed_config: typed("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector") };
export const HTTP_INSPECTOR = { name: "envoy.filters.listener.http_inspector", typed_config: typed("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector") };
export const ORIGINAL_DST = { name: "envoy.filters.listener.original_dst", typed_config: typed("envoy.extensions.filters.listener.original_dst.v3.OriginalDst") };

/** The plaintext HTTP ALPNs the HTTP inspector detects (Istio's plaintextHTTPALPNs, without HTTP/1.0). */
export const PLAINTEXT_HTTP_ALPNS = ["http/1.1", "h2c"];

/** A route configuration, with Istio's 1 MiB limit for direct response bodies (Envoy's default is 4 KiB). */
export function routeConfiguration(name: string, hosts: Record<string, unknown>[]): XdsResource {
  return { name, body: { name, virtual_hosts: hosts, validate_clusters: false, max_direct_response_body_size_bytes: MAX_DIRECT_RESPONSE_BODY_BYTES } };
}

/** Istio's listener name: `<address>_<port>`. */
export function listenerName(port: number, address = BIND_ADDRESS): string {
  return `${address}_${port}`;
}

/** An HTTP listener bound on 127.0.0.1 (gateways, and sidecars without capture). */
export function httpListener(port: number, routeName: string, httpFilters: Record<string, unknown>[], gateway: boolean): XdsResource {
  const name = listenerName(port);
  return {
    name,
    body: {
      name,
      address: socketAddress(BIND_ADDRESS, port),
      traffic_direction: "OUTBOUND",
      filter_chains: [{ filters: [httpConnectionManagerFilter(gateway ? name : `outbound_${name}`, routeName, httpFilters, gateway)] }],
    },
  };
}
