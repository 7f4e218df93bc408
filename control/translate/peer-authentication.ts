// PeerAuthentication -> the mutual TLS a workload's inbound side accepts, as istiod builds it:
//
// - The mode (pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication): of the policies that apply to the
//   workload (its namespace's and the root namespace's whose selector its labels match), the mesh-wide one (root
//   namespace, no selector), then the namespace's (no selector), then the workload's (a selector, not in the root
//   namespace: selectors there are ignored), each overriding the one before unless its mode is UNSET; the workload
//   policy's `portLevelMtls` last (UNSET there: the workload's mode). Nothing set: PERMISSIVE. Where Istio takes the
//   oldest of several policies of one level, Skiff takes the first in load order (warnings.ts names the others).
// - The filter chains per mode and protocol (pilot/pkg/networking/core/filterchain_options.go): STRICT accepts only
//   TLS, which it terminates requiring a client certificate from the mesh root; PERMISSIVE terminates TLS whose ALPN
//   names Istio's mTLS (what a client sidecar offers, upstream-tls.ts) and takes plain text beside it (and, on TCP
//   ports, passes any other TLS through untouched); DISABLE takes plain text only.
// - The server side of mesh mTLS (pilot/pkg/security/authn/utils BuildInboundTLS): the workload certificate (SDS
//   `default`) and the mesh root (SDS `ROOTCA`), both from the agent beside the proxy; the client's certificate must
//   carry a SPIFFE ID of this trust domain; TLS 1.2 to 1.3 with Istio's cipher suites.
import { ROOT_SECRET, SDS_CLUSTER, WORKLOAD_SECRET } from "../bootstrap/bootstrap.js";
import type { MeshConfig } from "../sources/index.js";
import type { PeerAuthentication } from "../sources/model.js";
import type { MutualTlsMode } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { workloadPolicies } from "./authz.js";
import { typed } from "./envoy.js";
import { PLAINTEXT_HTTP_ALPNS } from "./listeners.js";

type Json = Record<string, unknown>;
export type InboundMode = Exclude<MutualTlsMode, "UNSET">;

/** What the workload accepts: its mode, and the ports whose mode `portLevelMtls` sets. */
export interface InboundMtls {
  mode: InboundMode;
  perPort: Map<number, InboundMode>;
  /** The policies that decided, mesh first (for notes). */
  policies: PeerAuthentication[];
}

/** Istio's SupportedCiphers for the server side of mesh mTLS (authn/utils). */
const CIPHERS = ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-GCM-SHA256"];

/** ALPN values that mark a TLS connection as Istio's mTLS (core/listener.go allIstioMtlsALPNs), and the HTTP ones that
 * Istio's client sidecars put there when they saw HTTP (mtlsHTTPALPNs). */
export const ISTIO_MTLS_ALPNS = ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"];
const ISTIO_MTLS_HTTP_ALPNS = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
const ISTIO_MTLS_TCP_ALPNS = ["istio-peer-exchange", "istio"];

const hasSelector = (policy: PeerAuthentication) => Object.keys(policy.spec.selector?.matchLabels ?? {}).length > 0;
const setMode = (policy: PeerAuthentication | undefined): InboundMode | undefined => {
  const mode = policy?.spec.mtls?.mode;
  return mode && mode !== "UNSET" ? mode : undefined;
};

/** Istio's ComposePeerAuthentication for one workload. */
export function inboundMtls(mesh: MeshConfig, proxy: Pick<ProxyIdentity, "namespace" | "labels">): InboundMtls {
  const applying = workloadPolicies(mesh.peerAuthentications, mesh, proxy);
  const meshWide = applying.find((policy) => policy.namespace === mesh.rootNamespace && !hasSelector(policy));
  const namespaced = applying.find((policy) => policy.namespace !== mesh.rootNamespace && !hasSelector(policy));
  const workload = applying.find((policy) => policy.namespace !== mesh.rootNamespace && hasSelector(policy));
  let mode: InboundMode = "PERMISSIVE";
  for (const policy of [meshWide, namespaced, workload]) mode = setMode(policy) ?? mode;
  const perPort = new Map<number, InboundMode>();
  for (const [port, mtls] of Object.entries(workload?.spec.portLevelMtls ?? {})) perPort.set(Number(port), mtls.mode === "UNSET" ? mode : mtls.mode);
  return { mode, perPort, policies: [meshWide, namespaced, workload].filter((policy) => policy !== undefined) };
}

export function modeForPort(mtls: InboundMtls, port: number): InboundMode {
  return mtls.perPort.get(port) ?? mtls.mode;
}

/** The mode a client infers for a service in `namespace` (Istio's GetNamespaceMutualTLSMode, what auto mTLS
 * follows): the namespace-wide policy's, else the mesh-wide one's, else PERMISSIVE. Workload policies are not looked
 * at: a client cannot know which endpoint it will reach. */
export function namespaceMtlsMode(mesh: MeshConfig, namespace: string): InboundMode {
  const level = (ns: string) => mesh.peerAuthentications.find((policy) => policy.namespace === ns && !hasSelector(policy));
  const meshWide = level(mesh.rootNamespace);
  // Istio: a mesh-wide policy that leaves the mode UNSET counts as PERMISSIVE.
  const inherited = meshWide ? (setMode(meshWide) ?? "PERMISSIVE") : "PERMISSIVE";
  const own = namespace === mesh.rootNamespace ? undefined : level(namespace);
  return own ? (setMode(own) ?? inherited) : inherited;
}

export type ListenerProtocol = "http" | "tcp";

/** One filter chain of an inbound port: what it matches besides the port, and whether it terminates mesh mTLS. */
export interface InboundChainOption {
  protocol: ListenerProtocol;
  match: { transport_protocol: "tls" | "raw_buffer"; application_protocols?: string[] };
  tls: boolean;
}

const option = (protocol: ListenerProtocol, transport: "tls" | "raw_buffer", tls: boolean, alpns?: string[]): InboundChainOption => ({
  protocol,
  match: { transport_protocol: transport, ...(alpns ? { application_protocols: alpns } : {}) },
  tls,
});

/** Istio's getFilterChainMatchOptions: the chains of a port of a known protocol (`http`, `tcp`), or of the
 * pass-through chains (`auto`: the protocol found by the inspectors). */
export function inboundChainOptions(mode: InboundMode, protocol: ListenerProtocol | "auto"): InboundChainOption[] {
  if (protocol === "http") {
    if (mode === "STRICT") return [option("http", "tls", true)];
    if (mode === "PERMISSIVE") return [option("http", "tls", true, ISTIO_MTLS_ALPNS), option("http", "raw_buffer", false)];
    return [option("http", "raw_buffer", false)];
  }
  if (protocol === "tcp") {
    if (mode === "STRICT") return [option("tcp", "tls", true)];
    if (mode === "PERMISSIVE") return [option("tcp", "tls", true, ISTIO_MTLS_ALPNS), option("tcp", "tls", false), option("tcp", "raw_buffer", false)];
    return [option("tcp", "raw_buffer", false)];
  }
  if (mode === "STRICT") return [option("http", "tls", true, ISTIO_MTLS_HTTP_ALPNS), option("tcp", "tls", true)];
  if (mode === "PERMISSIVE") {
    return [
      option("http", "tls", true, ISTIO_MTLS_HTTP_ALPNS),
      option("http", "raw_buffer", false, PLAINTEXT_HTTP_ALPNS),
      option("tcp", "tls", true, ISTIO_MTLS_TCP_ALPNS),
      option("tcp", "raw_buffer", false),
      option("tcp", "tls", false),
    ];
  }
  return [option("http", "raw_buffer", false, PLAINTEXT_HTTP_ALPNS), option("tcp", "raw_buffer", false)];
}

/** An SDS secret from the agent beside the proxy (Istio's ConstructSdsSecretConfig for `default` and `ROOTCA`): a
 * listener or cluster waits for it rather than serving without it (initial_fetch_timeout 0). */
export function agentSecret(name: typeof WORKLOAD_SECRET | typeof ROOT_SECRET): Json {
  return {
    name,
    sds_config: {
      api_config_source: { api_type: "GRPC", set_node_on_first_message_only: true, transport_api_version: "V3", grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }] },
      resource_api_version: "V3",
      initial_fetch_timeout: "0s",
    },
  };
}

/** Envoy's typed SAN matchers (`match_typed_subject_alt_names`; the untyped `match_subject_alt_names` is deprecated):
 * a SPIFFE ID is a URI SAN, any other name a DNS SAN. `prefix`: matches every URI under it. */
export function subjectAltNameMatchers(exact: string[], prefix?: string): Json[] {
  return [
    ...exact.map((name) => ({ san_type: name.startsWith("spiffe://") ? "URI" : "DNS", matcher: { exact: name } })),
    ...(prefix ? [{ san_type: "URI", matcher: { prefix } }] : []),
  ];
}

/** The workload certificate and the mesh root from the agent, with `sanMatchers` checked on the peer's certificate on
 * top of the chain (Istio's ApplyToCommonTLSContext). */
export function meshCommonTlsContext(alpnProtocols: string[], tlsParams: Json, sanMatchers: Json[]): Json {
  return {
    tls_params: tlsParams,
    alpn_protocols: alpnProtocols,
    tls_certificate_sds_secret_configs: [agentSecret(WORKLOAD_SECRET)],
    combined_validation_context: {
      default_validation_context: sanMatchers.length > 0 ? { match_typed_subject_alt_names: sanMatchers } : {},
      validation_context_sds_secret_config: agentSecret(ROOT_SECRET),
    },
  };
}

/** Istio's BuildInboundTLS: the server side of mesh mTLS for an HTTP or a TCP chain. The ALPN offered is the
 * underlying protocol's (never "istio", which would hide h2 from the client); TCP also offers istio-peer-exchange. */
export function inboundTlsTransportSocket(protocol: ListenerProtocol, trustDomain: string): Json {
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: typed("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", {
      common_tls_context: meshCommonTlsContext(
        protocol === "http" ? ["h2", "http/1.1"] : ["istio-peer-exchange", "h2", "http/1.1"],
        { tls_minimum_protocol_version: "TLSv1_2", tls_maximum_protocol_version: "TLSv1_3", cipher_suites: CIPHERS },
        // TrustDomainsForValidation: a client certificate of another trust domain is refused even under the same root.
        subjectAltNameMatchers([], `spiffe://${trustDomain}/`),
      ),
      require_client_certificate: true,
    }),
  };
}

/** The inbound HTTP connection manager's client certificate header (Istio's proxy headers defaults): the verified
 * peer's identity appended to `x-forwarded-client-cert` (Hash, Subject, URI, DNS) and forwarded to the app. */
export const INBOUND_XFCC = {
  forward_client_cert_details: "APPEND_FORWARD",
  set_current_client_cert_details: { subject: true, uri: true, dns: true },
};
