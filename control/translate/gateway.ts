// Gateways -> the listeners, route configurations and certificates of a gateway proxy, as istiod's gateway.go: the
// Gateways whose selector labels the proxy has, one listener per server port (bound on 127.0.0.1).
//
// HTTP port: route config `http.<port>`, one virtual host per host the bound VirtualServices route.
// HTTPS port: one filter chain per server, chosen by SNI among the server's hosts, terminating TLS with the server's
// certificate (by SDS: secrets `file-cert:<cert>~<key>`, and `file-root:<ca>` for MUTUAL, as Istio names file-based
// ones), each with its own route config `https.<port>.<port name>.<gateway>.<namespace>`.
import { dirname } from "node:path";
import { credentialFiles, type MeshConfig } from "../sources/index.js";
import type { Gateway, VirtualService } from "../sources/model.js";
import type { GatewayServer } from "../sources/schema/index.js";
import type { ProxyIdentity, XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, socketAddress, typed } from "./envoy.js";
import { BIND_ADDRESS, httpConnectionManager, httpListener, type ListenerOutput, listenerName } from "./listeners.js";
import type { Registry } from "./registry.js";
import { virtualServiceRoutes } from "./routes.js";

interface BoundServer {
  gateway: Gateway;
  server: GatewayServer;
}

export function buildGatewayListeners(
  mesh: MeshConfig,
  registry: Registry,
  proxy: ProxyIdentity,
  httpFilters: Record<string, unknown>[],
): ListenerOutput & { secrets: XdsResource[] } {
  const gateways = mesh.gateways.filter((gateway) => Object.entries(gateway.spec.selector).every(([k, v]) => proxy.labels[k] === v));
  const serversByPort = new Map<number, BoundServer[]>();
  for (const gateway of gateways) {
    for (const server of gateway.spec.servers) {
      serversByPort.set(server.port.number, [...(serversByPort.get(server.port.number) ?? []), { gateway, server }]);
    }
  }

  const out = { listeners: [] as XdsResource[], routes: [] as XdsResource[], secrets: [] as XdsResource[] };
  for (const [port, servers] of [...serversByPort].sort(([a], [b]) => a - b)) {
    const https = servers.filter(({ server }) => server.port.protocol === "HTTPS");
    if (https.length > 0) {
      // A port is either TLS or plain; Istio reports a conflict, here the HTTPS servers win.
      addHttpsPort(out, mesh, registry, port, https, httpFilters);
    } else {
      const routeName = `http.${port}`;
      out.routes.push(routeConfiguration(routeName, virtualHosts(mesh, registry, port, servers)));
      out.listeners.push(httpListener(port, routeName, httpFilters, true));
    }
  }
  return out;
}

function addHttpsPort(
  out: ListenerOutput & { secrets: XdsResource[] },
  mesh: MeshConfig,
  registry: Registry,
  port: number,
  servers: BoundServer[],
  httpFilters: Record<string, unknown>[],
): void {
  const name = listenerName(port);
  const filterChains = servers.map(({ gateway, server }) => {
    const routeName = `https.${port}.${server.port.name ?? "https"}.${gateway.name}.${gateway.namespace}`;
    out.routes.push(routeConfiguration(routeName, virtualHosts(mesh, registry, port, [{ gateway, server }])));
    const files = credentialFiles(mesh.dir, server.tls!);
    const certificate = `file-cert:${files.certificate}~${files.privateKey}`;
    addSecret(out.secrets, certificate, {
      tls_certificate: {
        certificate_chain: { filename: files.certificate },
        private_key: { filename: files.privateKey },
        // Envoy reloads the files when they are replaced in this folder (certificate rotation).
        watched_directory: { path: dirname(files.certificate) },
      },
    });
    const common: Record<string, unknown> = {
      alpn_protocols: ["h2", "http/1.1"],
      tls_certificate_sds_secret_configs: [{ name: certificate, sds_config: ADS_CONFIG_SOURCE }],
    };
    if (files.caCertificates) {
      const root = `file-root:${files.caCertificates}`;
      addSecret(out.secrets, root, { validation_context: { trusted_ca: { filename: files.caCertificates }, watched_directory: { path: dirname(files.caCertificates) } } });
      common.validation_context_sds_secret_config = { name: root, sds_config: ADS_CONFIG_SOURCE };
    }
    const serverNames = server.hosts.map(hostname).filter((host) => host !== "*");
    return {
      ...(serverNames.length > 0 ? { filter_chain_match: { server_names: serverNames } } : {}),
      transport_socket: {
        name: "envoy.transport_sockets.tls",
        typed_config: typed("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", {
          common_tls_context: common,
          ...(files.caCertificates ? { require_client_certificate: true } : {}),
        }),
      },
      filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: httpConnectionManager(routeName, routeName, httpFilters, true) }],
    };
  });
  out.listeners.push({
    name,
    body: {
      name,
      address: socketAddress(BIND_ADDRESS, port),
      traffic_direction: "OUTBOUND",
      listener_filters: [{ name: "envoy.filters.listener.tls_inspector", typed_config: typed("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector") }],
      filter_chains: filterChains,
    },
  });
}

function addSecret(secrets: XdsResource[], name: string, fields: Record<string, unknown>): void {
  if (!secrets.some((secret) => secret.name === name)) secrets.push({ name, body: { name, ...fields } });
}

function routeConfiguration(name: string, hosts: Record<string, unknown>[]): XdsResource {
  return { name, body: { name, virtual_hosts: hosts, validate_clusters: false } };
}

/** One virtual host `<host>:<port>` per VirtualService host that falls under a server host, with the routes of the
 * VirtualServices bound to that server's Gateway. */
function virtualHosts(mesh: MeshConfig, registry: Registry, port: number, servers: BoundServer[]): Record<string, unknown>[] {
  const hosts = new Map<string, Record<string, unknown>>();
  for (const { gateway, server } of servers) {
    const bound = mesh.virtualServices.filter((vs) => boundTo(vs, gateway));
    for (const serverHost of server.hosts.map(hostname)) {
      const vsHosts = new Map<string, VirtualService[]>();
      for (const vs of bound) {
        for (const host of vs.spec.hosts) {
          if (hostMatches(serverHost, host)) vsHosts.set(host, [...(vsHosts.get(host) ?? []), vs]);
        }
      }
      if (vsHosts.size === 0 && server.tls?.httpsRedirect) vsHosts.set(serverHost, []);
      for (const [host, services] of vsHosts) {
        const name = `${host}:${port}`;
        if (hosts.has(name)) continue; // The first server for a host wins, as in Istio.
        hosts.set(name, {
          name,
          domains: host === "*" ? ["*"] : [host, `${host}:*`],
          routes: services.flatMap((vs) => virtualServiceRoutes(vs, registry)),
          ...(server.tls?.httpsRedirect ? { require_tls: "ALL" } : {}),
          include_request_attempt_count: true,
        });
      }
    }
  }
  if (hosts.size === 0) {
    // Istio's placeholder when nothing is bound: a 404 for every request.
    return [
      {
        name: `blackhole:${port}`,
        domains: ["*"],
        routes: [{ name: "default", match: { prefix: "/" }, direct_response: { status: 404 } }],
        include_request_attempt_count: true,
      },
    ];
  }
  return [...hosts.values()];
}

/** Server hosts may be written `namespace/host`; the namespace part limits which VirtualServices may bind (Istio),
 * which the embedded mode does not enforce. */
function hostname(serverHost: string): string {
  return serverHost.includes("/") ? serverHost.split("/")[1]! : serverHost;
}

/** `gateways` entries name a Gateway as `name` (in the VirtualService's namespace) or `namespace/name`. */
function boundTo(vs: VirtualService, gateway: Gateway): boolean {
  return (vs.spec.gateways ?? []).some((ref) => {
    const [namespace, name] = ref.includes("/") ? ref.split("/") : [vs.namespace, ref];
    return name === gateway.name && namespace === gateway.namespace;
  });
}

/** Whether a VirtualService host falls under a Gateway server host (`*`, `*.example.com` or exact). */
function hostMatches(serverHost: string, vsHost: string): boolean {
  if (serverHost === "*" || serverHost === vsHost) return true;
  if (serverHost.startsWith("*.")) return vsHost.endsWith(serverHost.slice(1));
  return false;
}
