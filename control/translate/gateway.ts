// Gateways -> the listeners, route configurations and certificates of a gateway proxy, as istiod's gateway.go: the
// Gateways whose selector labels the proxy has, one listener per server port (bound on 127.0.0.1).
//
// HTTP port: route config `http.<port>`, one virtual host per host the bound VirtualServices route.
// HTTPS port: one filter chain per server, chosen by SNI among the server's hosts, terminating TLS with the server's
// certificate (by SDS: secrets `file-cert:<cert>~<key>`, and `file-root:<ca>` for MUTUAL and OPTIONAL_MUTUAL, as Istio
// names file-based ones), each with its own route config `https.<port>.<port name>.<gateway>.<namespace>`. Plain HTTP
// servers on an HTTPS port get one more filter chain, for the connections that are not TLS. TCP and TLS servers (and
// HTTPS PASSTHROUGH) have tcp_proxy chains (gateway-l4.ts) on the same listener.
import { credentialFiles, type MeshConfig } from "../sources/index.js";
import { CA_SECRET_SUFFIX, type Gateway, type VirtualService } from "../sources/model.js";
import type { GatewayServer } from "../sources/schema/index.js";
import type { ProxyIdentity, XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, fileCertificateSecret, fileRootSecret, inlineCertificateSecret, inlineRootSecret, socketAddress, typed } from "./envoy.js";
import { hostPart, hostsForNamespace, intersectHosts } from "./hosts.js";
import { isL4Server, l4FilterChains } from "./gateway-l4.js";
import { BIND_ADDRESS, httpConnectionManager, httpListener, type ListenerOutput, listenerName, routeConfiguration, TLS_INSPECTOR } from "./listeners.js";
import type { Registry } from "./registry.js";
import { gatewayName, virtualServiceRoutes } from "./routes.js";
import { visibleVirtualServices } from "./virtual-services.js";

interface BoundServer {
  gateway: Gateway;
  server: GatewayServer;
}

type GatewayOutput = ListenerOutput & { secrets: XdsResource[] };

export function buildGatewayListeners(
  mesh: MeshConfig,
  registry: Registry,
  proxy: ProxyIdentity,
  httpFilters: Record<string, unknown>[],
): GatewayOutput {
  const gateways = selectedGateways(mesh, proxy);
  const serversByPort = new Map<number, BoundServer[]>();
  for (const gateway of gateways) {
    for (const server of gateway.spec.servers) {
      serversByPort.set(server.port.number, [...(serversByPort.get(server.port.number) ?? []), { gateway, server }]);
    }
  }

  const out: GatewayOutput = { listeners: [], routes: [], secrets: [] };
  const bound = (gateway: Gateway) => visibleVirtualServices(mesh, registry, registry.viewer).filter((vs) => boundTo(vs, gateway));
  for (const [port, servers] of [...serversByPort].sort(([a], [b]) => a - b)) {
    const l4 = servers.filter(({ server }) => isL4Server(server));
    const https = servers.filter(({ server }) => server.port.protocol === "HTTPS" && !isL4Server(server));
    const plain = servers.filter(({ server }) => server.port.protocol === "HTTP" || server.port.protocol === "HTTP2");
    const plainRoute = `http.${port}`;
    if (plain.length > 0) out.routes.push(routeConfiguration(plainRoute, virtualHosts(mesh, registry, port, plain, false)));
    if (https.length === 0 && l4.length === 0) {
      out.listeners.push(httpListener(port, plainRoute, httpFilters, true));
      continue;
    }
    const chains = [
      ...httpsFilterChains(out, mesh, registry, port, https, httpFilters),
      ...l4FilterChains(l4, port, registry, bound, (server, gateway) => {
        const secrets = serverSecrets(mesh, server.tls!, registry.viewer?.namespace ?? gateway.namespace);
        return secrets && terminatingTls(out, secrets, server.tls!, false);
      }),
    ];
    // Plain HTTP beside HTTPS on one port: Istio serves both when the HTTPS server comes first and drops the HTTPS
    // server otherwise (mergeGateways, pilot/pkg/model/gateway.go); Skiff serves both in either order. The plain
    // chain takes only connections that are not TLS (the TLS inspector tells), so a TLS client whose SNI no server
    // names is refused rather than read as plain HTTP.
    if (plain.length > 0) {
      chains.push({
        filter_chain_match: { transport_protocol: "raw_buffer" },
        filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: httpConnectionManager(listenerName(port), plainRoute, httpFilters, true) }],
      });
    }
    // A TCP or TLS server that no route takes gets no chain (Istio: "listener missed network filter"); a listener
    // without chains is refused by Envoy, so the port is left closed.
    if (chains.length > 0) out.listeners.push(gatewayListener(port, chains));
  }
  return out;
}

/** The Gateways whose `selector` labels the proxy has (Istio: every namespace's Gateways may select it). */
export function selectedGateways(mesh: MeshConfig, proxy: ProxyIdentity): Gateway[] {
  return mesh.gateways.filter((gateway) => Object.entries(gateway.spec.selector).every(([k, v]) => proxy.labels[k] === v));
}

/** The VirtualServices bound to the Gateways that select the proxy. */
export function gatewayVirtualServices(mesh: MeshConfig, proxy: ProxyIdentity): VirtualService[] {
  const gateways = selectedGateways(mesh, proxy);
  return mesh.virtualServices.filter((vs) => gateways.some((gateway) => boundTo(vs, gateway)));
}

/** One filter chain per HTTPS server, chosen by SNI, terminating TLS with the server's certificate. */
function httpsFilterChains(
  out: GatewayOutput,
  mesh: MeshConfig,
  registry: Registry,
  port: number,
  servers: BoundServer[],
  httpFilters: Record<string, unknown>[],
): Record<string, unknown>[] {
  return servers.flatMap(({ gateway, server }) => {
    const tls = server.tls!;
    const secrets = serverSecrets(mesh, tls, registry.viewer?.namespace ?? gateway.namespace);
    // A Kubernetes credential not found (yet): the server is left out rather than holding the listener back while
    // Envoy waits for a secret that does not come (translationNotes says so); it comes back with the Secret.
    if (!secrets) return [];
    const routeName = `https.${port}.${server.port.name ?? "https"}.${gateway.name}.${gateway.namespace}`;
    out.routes.push(routeConfiguration(routeName, virtualHosts(mesh, registry, port, [{ gateway, server }], true)));
    const serverNames = server.hosts.map(hostPart).filter((host) => host !== "*");
    return {
      ...(serverNames.length > 0 ? { filter_chain_match: { server_names: serverNames } } : {}),
      transport_socket: terminatingTls(out, secrets, tls, true),
      filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: httpConnectionManager(routeName, routeName, httpFilters, true) }],
    };
  });
}

/** The transport socket that terminates TLS with a server's certificate (by SDS), verifying client certificates for
 * MUTUAL and OPTIONAL_MUTUAL; HTTPS servers offer ALPN h2 and http/1.1 (Istio's BuildListenerTLSContext). */
function terminatingTls(out: GatewayOutput, secrets: ServerSecrets, tls: NonNullable<GatewayServer["tls"]>, http: boolean): Record<string, unknown> {
  addSecret(out.secrets, secrets.certificate);
  const common: Record<string, unknown> = {
    ...(http ? { alpn_protocols: ["h2", "http/1.1"] } : {}),
    tls_certificate_sds_secret_configs: [{ name: secrets.certificate.name, sds_config: ADS_CONFIG_SOURCE }],
  };
  if (secrets.root) {
    addSecret(out.secrets, secrets.root);
    common.validation_context_sds_secret_config = { name: secrets.root.name, sds_config: ADS_CONFIG_SOURCE };
  }
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: typed("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", {
      common_tls_context: common,
      // OPTIONAL_MUTUAL verifies a certificate the client presents but also lets clients without one in; only
      // MUTUAL requires one (Istio's BuildListenerTLSContext, pilot/pkg/networking/core/listener.go).
      ...(secrets.root ? { require_client_certificate: tls.mode === "MUTUAL" } : {}),
    }),
  };
}

interface ServerSecrets {
  certificate: XdsResource;
  root?: XdsResource;
}

/** The SDS secrets of an HTTPS server: from the Kubernetes Secret `credentialName` in the gateway's namespace when the
 * mesh comes from Kubernetes (undefined while it is missing), else the files the folder mode names. */
export function serverSecrets(mesh: MeshConfig, tls: NonNullable<GatewayServer["tls"]>, namespace: string): ServerSecrets | undefined {
  if (mesh.credentials && tls.credentialName) {
    const credential = kubernetesCredential(mesh, tls, namespace);
    if (!credential) return undefined;
    return {
      certificate: inlineCertificateSecret(`kubernetes://${tls.credentialName}`, credential.certificate, credential.privateKey),
      ...(credential.caCertificate ? { root: inlineRootSecret(`kubernetes://${tls.credentialName}${CA_SECRET_SUFFIX}`, credential.caCertificate) } : {}),
    };
  }
  const files = credentialFiles(mesh.dir, tls);
  return {
    certificate: fileCertificateSecret(files.certificate, files.privateKey),
    ...(files.caCertificates ? { root: fileRootSecret(files.caCertificates) } : {}),
  };
}

/** A server's Kubernetes credential as Istio reads it: certificate and key from the Secret `credentialName` in the
 * gateway's namespace; for MUTUAL and OPTIONAL_MUTUAL the CA from that Secret (`ca.crt`, `cacert`) or from its
 * `<credentialName>-cacert` companion. Undefined when something it needs is missing. */
export function kubernetesCredential(
  mesh: MeshConfig,
  tls: NonNullable<GatewayServer["tls"]>,
  namespace: string,
): { certificate: string; privateKey: string; caCertificate?: string } | undefined {
  const found = mesh.credentials?.[`${namespace}/${tls.credentialName}`];
  if (!found?.certificate || !found.privateKey) return undefined;
  if (tls.mode !== "MUTUAL" && tls.mode !== "OPTIONAL_MUTUAL") return { certificate: found.certificate, privateKey: found.privateKey };
  const caCertificate = found.caCertificate ?? mesh.credentials?.[`${namespace}/${tls.credentialName}${CA_SECRET_SUFFIX}`]?.caCertificate;
  return caCertificate ? { certificate: found.certificate, privateKey: found.privateKey, caCertificate } : undefined;
}


/** A gateway port with more than one kind of chain, or with TLS: the TLS inspector reads the SNI (and tells TLS from
 * plain text) when a chain matches on either; a port of plain TCP servers gets none, since the inspector would wait
 * for the client's first bytes and server-first protocols send none. */
function gatewayListener(port: number, filterChains: Record<string, unknown>[]): XdsResource {
  const name = listenerName(port);
  const inspect = filterChains.some((chain) => {
    const match = chain.filter_chain_match as { server_names?: unknown; transport_protocol?: unknown } | undefined;
    return match?.server_names !== undefined || match?.transport_protocol !== undefined;
  });
  return {
    name,
    body: {
      name,
      address: socketAddress(BIND_ADDRESS, port),
      traffic_direction: "OUTBOUND",
      ...(inspect ? { listener_filters: [TLS_INSPECTOR] } : {}),
      filter_chains: filterChains,
    },
  };
}

function addSecret(secrets: XdsResource[], secret: XdsResource): void {
  if (!secrets.some((other) => other.name === secret.name)) secrets.push(secret);
}

/** One virtual host `<host>:<port>` per host that a bound VirtualService and a server both cover (the more specific
 * of the two: Istio's buildGatewayHTTPRouteConfig intersects them), with the routes of every VirtualService bound to
 * it. A server host `ns/host` binds only VirtualServices of namespace `ns`; `./host` means the Gateway's namespace,
 * `*` or no prefix any namespace (Istio's NamesForNamespace). */
function virtualHosts(mesh: MeshConfig, registry: Registry, port: number, servers: BoundServer[], tls: boolean): Record<string, unknown>[] {
  const hosts = new Map<string, { redirect: boolean; routes: Record<string, unknown>[]; services: Set<VirtualService> }>();
  const add = (host: string, redirect: boolean, vs?: VirtualService, routes: Record<string, unknown>[] = []) => {
    const entry = hosts.get(host) ?? { redirect: false, routes: [], services: new Set<VirtualService>() };
    entry.redirect ||= redirect;
    if (vs && !entry.services.has(vs)) {
      entry.services.add(vs);
      entry.routes.push(...routes);
    }
    hosts.set(host, entry);
  };
  for (const { gateway, server } of servers) {
    const redirect = server.tls?.httpsRedirect === true;
    // Routes are built per Gateway: a match's `gateways` picks the Gateways it applies on.
    const context = { port, gateways: new Set([`${gateway.namespace}/${gateway.name}`]), tls };
    for (const vs of visibleVirtualServices(mesh, registry, registry.viewer).filter((candidate) => boundTo(candidate, gateway))) {
      const routes = virtualServiceRoutes(vs, registry, context);
      for (const host of intersectHosts(hostsForNamespace(server.hosts, gateway.namespace, vs.namespace), vs.spec.hosts)) add(host, redirect, vs, routes);
    }
    // Istio redirects every host of an httpsRedirect server, routed or not.
    if (redirect) for (const host of server.hosts.map(hostPart)) add(host, true);
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
  return [...hosts].map(([host, { redirect, routes }]) => ({
    name: `${host}:${port}`,
    domains: host === "*" ? ["*"] : [host, `${host}:*`],
    routes,
    ...(redirect ? { require_tls: "ALL" } : {}),
    include_request_attempt_count: true,
  }));
}

/** `gateways` entries name a Gateway as `name` (in the VirtualService's namespace) or `namespace/name`. */
function boundTo(vs: VirtualService, gateway: Gateway): boolean {
  return (vs.spec.gateways ?? []).some((ref) => gatewayName(ref, vs.namespace) === `${gateway.namespace}/${gateway.name}`);
}
