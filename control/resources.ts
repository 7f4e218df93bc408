// The contract between translation (Istio resources -> Envoy resources) and delivery (snapshots, the xDS server):
// every Envoy resource travels as proto3 JSON, the form Envoy's docs and /config_dump use, so translation code and
// golden files read like Envoy configuration. Only the xDS server turns it into protobuf bytes.

export const TypeUrl = {
  Cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  ClusterLoadAssignment: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  Listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  RouteConfiguration: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  Secret: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
  ExtensionConfig: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
} as const;

export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** The order in which updates reach a proxy, so it never holds a reference to something it does not know yet:
 * clusters, then endpoints, then extension configs and secrets, then listeners, then routes. */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.ExtensionConfig,
  TypeUrl.Secret,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
];

/** One xDS resource. `body` is proto3 JSON: durations as "1s", enums by name, `google.protobuf.Any` as
 * `{ "@type": "type.googleapis.com/...", ...fields }`, field names in snake_case as in Envoy's docs. */
export interface XdsResource {
  name: string;
  body: Record<string, unknown>;
}

/** Everything one proxy should have, by type. */
export type ProxyResources = Record<TypeUrl, XdsResource[]>;

export function emptyResources(): ProxyResources {
  return Object.fromEntries(Object.values(TypeUrl).map((url) => [url, []])) as unknown as ProxyResources;
}

/** Who a connected proxy is, from the `node` of its first discovery request (see `skiff bootstrap`), with the
 * node metadata keys istio-agent sends: `node.id`; `node.metadata.ROLE` ("gateway" or "sidecar"), `LABELS`
 * (workload labels), `NAMESPACE`, `SERVICE_ACCOUNT`, `INSTANCE_IPS` (comma-separated), `INTERCEPTION_MODE`;
 * `node.locality`. */
export interface ProxyIdentity {
  nodeId: string;
  role: "gateway" | "sidecar";
  labels: Record<string, string>;
  /** The workload's namespace ("default" when the bootstrap names none). */
  namespace: string;
  serviceAccount?: string;
  /** The workload's own addresses (a pod's address on the mesh network); empty for a proxy on loopback. */
  ips: string[];
  locality?: Locality;
  /** How the workload's traffic reaches its sidecar (`INTERCEPTION_MODE`, as istio-agent sends it): REDIRECT (the
   * default, as in Istio: istio-init's iptables rules capture it, the sidecar has virtual listeners on 15001 and
   * 15006) or NONE (no capture: listeners bind 127.0.0.1 on each service port, no inbound side; for proxies that run
   * without root). Gateways ignore it. */
  interceptionMode?: InterceptionMode;
}

export type InterceptionMode = "REDIRECT" | "NONE";

export interface Locality {
  region?: string;
  zone?: string;
  subZone?: string;
}

/** Translation depends on these parts of an identity only (not on `nodeId`): proxies alike share one translation. */
export function translationKey(proxy: ProxyIdentity): string {
  return JSON.stringify([
    proxy.role,
    Object.entries(proxy.labels).sort(),
    proxy.namespace,
    proxy.serviceAccount ?? "",
    proxy.ips,
    proxy.locality ?? {},
    proxy.interceptionMode ?? "REDIRECT",
  ]);
}

/** A Wasm module the control plane serves to proxies over HTTP, pinned by its sha256. */
export interface ServedModule {
  /** Where Envoy fetches it (`remote.http_uri.uri`). */
  uri: string;
  sha256: string;
  size: number;
}

/** What translation needs to know beyond the Istio resources. */
export interface TranslationContext {
  proxy: ProxyIdentity;
  /** The Envoy cluster through which proxies reach the control plane's module server. */
  moduleCluster: { name: string; host: string; port: number };
  /** The served module for a WasmPlugin `url` (a file resolved against the config folder, or an oci:// image the
   * control plane pulled), if it is there; `owner` ("WasmPlugin/<namespace>/<name>") lets a plugin whose new image
   * cannot be pulled keep the module it had. Undefined: translation sends the plugin's failStrategy stand-in. */
  module(url: string, owner?: string): ServedModule | undefined;
  /** The JSON Web Key Set the control plane fetched for a RequestAuthentication `jwksUri`, if it has one (without it,
   * tokens of that issuer are refused, as istiod does when a fetch fails). */
  jwks?(uri: string): string | undefined;
  /** The trust domain of workload identities (`spiffe://<trustDomain>/ns/<ns>/sa/<sa>`); default `cluster.local`. */
  trustDomain?: string;
  /** Whether proxies have a workload certificate: SDS secrets `default` and `ROOTCA` from the agent beside them
   * (cluster `sds-grpc`). True unless the control plane runs with --plaintext (no CA, no agents), where mutual TLS
   * cannot happen: auto mTLS is off, and whatever requires mTLS (STRICT, ISTIO_MUTUAL) refuses traffic instead. */
  workloadCertificates?: boolean;
  /** The istio-stats filter's module (build/filters/istio-stats.wasm), served like WasmPlugin modules; without it
   * no proxy gets Istio's standard metrics. */
  statsModule?: ServedModule;
}
