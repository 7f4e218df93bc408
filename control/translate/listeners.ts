// Sidecar listeners and route configurations, and the HTTP listener both kinds of proxy use (gateway.ts has the
// gateway's).
//
// Sidecar: one outbound listener per service port of the registry, route config `<port>`, one virtual host per
// service (VirtualServices bound to `mesh`, or Istio's default route), and Istio's `block_all` virtual host for
// hosts outside the registry (REGISTRY_ONLY: 502).
//
// There is no traffic capture in the embedded mode, so listeners bind 127.0.0.1 on the port itself.
import type { MeshConfig } from "../sources/index.js";
import type { XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, clusterName, socketAddress, typed } from "./envoy.js";
import type { Registry } from "./registry.js";
import { defaultRoute, virtualServiceRoutes } from "./routes.js";
import { visibleVirtualServices } from "./virtual-services.js";

export const BIND_ADDRESS = "127.0.0.1";

export interface ListenerOutput {
  listeners: XdsResource[];
  routes: XdsResource[];
}

export function buildSidecarListeners(mesh: MeshConfig, registry: Registry, httpFilters: Record<string, unknown>[]): ListenerOutput {
  const meshServices = visibleVirtualServices(mesh, registry.viewer).filter((vs) => (vs.spec.gateways ?? ["mesh"]).includes("mesh"));
  const ports = new Map<number, Record<string, unknown>[]>();
  const domainsTaken = new Set<string>();
  for (const service of registry.services()) {
    // resolution NONE sends traffic on to the address the application dialed, which only a sidecar that captures
    // traffic knows; a sidecar on loopback (no instance addresses) would send it back to itself.
    if (service.entry.spec.resolution === "NONE" && !registry.viewer?.ips.length) continue;
    for (const port of service.entry.spec.ports) {
      const routes = meshServices
        .filter((vs) => vs.spec.hosts.some((host) => registry.resolveHost(host, vs.namespace) === service.host))
        .flatMap((vs) => virtualServiceRoutes(vs, registry));
      // The service's addresses are names for it too (Istio's generateVirtualHostDomains); CIDR blocks are not.
      const addresses = (service.entry.spec.addresses ?? []).filter((address) => !address.includes("/")).map((address) => (address.includes(":") ? `[${address}]` : address));
      const domains = [...hostAliases(service.host), ...addresses]
        .flatMap((alias) => [alias, `${alias}:${port.number}`])
        .filter((domain) => !domainsTaken.has(`${port.number} ${domain}`));
      for (const domain of domains) domainsTaken.add(`${port.number} ${domain}`);
      const list = ports.get(port.number) ?? [];
      list.push({
        name: `${service.host}:${port.number}`,
        domains,
        routes: routes.length > 0 ? routes : [defaultRoute(clusterName(port.number, undefined, service.host))],
        include_request_attempt_count: true,
      });
      ports.set(port.number, list);
    }
  }
  const out: ListenerOutput = { listeners: [], routes: [] };
  for (const [port, hosts] of [...ports].sort(([a], [b]) => a - b)) {
    const routeName = String(port);
    hosts.push({
      name: "block_all",
      domains: ["*"],
      routes: [{ name: "block_all", match: { prefix: "/" }, direct_response: { status: 502 } }],
      include_request_attempt_count: true,
    });
    out.routes.push({ name: routeName, body: { name: routeName, virtual_hosts: hosts, validate_clusters: false } });
    out.listeners.push(httpListener(port, routeName, httpFilters, false));
  }
  return out;
}

/** A Kubernetes-style host is also reachable by its short forms, as in a pod's DNS search path. */
function hostAliases(host: string): string[] {
  const match = /^([^.]+)\.([^.]+)\.svc\.cluster\.local$/.exec(host);
  if (!match) return [host];
  const [, name, namespace] = match;
  return [host, name!, `${name}.${namespace}`, `${name}.${namespace}.svc`];
}

export function httpConnectionManager(statPrefix: string, routeName: string, httpFilters: Record<string, unknown>[], gateway: boolean) {
  return typed("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
    stat_prefix: statPrefix,
    rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: routeName },
    http_filters: [...httpFilters, { name: "envoy.filters.http.router", typed_config: typed("envoy.extensions.filters.http.router.v3.Router") }],
    use_remote_address: gateway,
    normalize_path: true,
    merge_slashes: true,
  });
}

export function listenerName(port: number): string {
  return `${BIND_ADDRESS}_${port}`;
}

export function httpListener(port: number, routeName: string, httpFilters: Record<string, unknown>[], gateway: boolean): XdsResource {
  const name = listenerName(port);
  const manager = httpConnectionManager(gateway ? name : `outbound_${name}`, routeName, httpFilters, gateway);
  return {
    name,
    body: {
      name,
      address: socketAddress(BIND_ADDRESS, port),
      traffic_direction: "OUTBOUND",
      filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: manager }] }],
    },
  };
}
