// The client side of TLS for an outbound cluster, as istiod's cluster builder sets it (pilot/pkg/networking/core/
// cluster_tls.go buildUpstreamTLSSettings, applyUpstreamTLSSettings, buildUpstreamClusterTLSContext; push_context.go
// BestEffortInferServiceMTLSMode):
//
// - DestinationRule `tls.mode` DISABLE: plain text. SIMPLE: TLS, the server checked against `caCertificates` and
//   `subjectAltNames` (unless `insecureSkipVerify`); MUTUAL: the same with the client certificate; both from files that
//   Envoy reads itself (file secrets sent by ADS, as on gateways), or for `credentialName` the files of
//   `credentials/<name>/` in the config folder, or from Kubernetes the Secret `<name>` in the proxy's own namespace
//   (only with a DestinationRule workloadSelector on sidecars: without one Istio sends such a cluster plain text, and
//   so does Skiff, with a warning). Without `sni`, the SNI is the request's host (auto_sni), checked against the
//   certificate when no `subjectAltNames` are given (auto_san_validation).
// - A Kubernetes credential goes to Envoy as Istio's SDS names it: `kubernetes://<name>` (client certificate and key)
//   and `kubernetes://<name>-cacert` (the CA that checks the server), sent inline by ADS (security/model
//   ApplyCustomSDSToClientCommonTLSContext). The Secret must be in the proxy's namespace: Istio's SDS refuses any other
//   (pilot/pkg/xds/sds.go filterAuthorizedResources: "we require the secret to be in the same namespace as the
//   proxy"); Skiff refuses that cluster's traffic (503) with a note, and so while the Secret is missing.
// - ISTIO_MUTUAL: mesh mTLS with the workload certificate (`default`) and the mesh root (`ROOTCA`) from the agent; SNI
//   the cluster's name unless `sni`; the server's certificate must carry one of `subjectAltNames`, else one of the
//   service's identities (its endpoints' service accounts as SPIFFE IDs, and the ServiceEntry's `subjectAltNames`),
//   else any of the mesh; ALPN `istio-peer-exchange`, `istio` (and `h2` for HTTP/2 clusters), which a server sidecar's
//   PERMISSIVE chains recognise as mesh mTLS.
// - No `tls` (auto mTLS, MeshConfig enableAutoMtls, on by default): for a MESH_INTERNAL service whose namespace does
//   not DISABLE mTLS, ISTIO_MUTUAL to the endpoints marked `tlsMode: istio` (a sidecar: a service account or the
//   `security.istio.io/tlsMode` label, registry.ts) by transport_socket_matches, plain text to the others. A service
//   without endpoints of its own (resolution NONE) gets mTLS only if every instance has a sidecar.
import type { MeshConfig } from "../sources/index.js";
import type { ClientTls } from "../sources/schema/index.js";
import type { XdsResource } from "../resources.js";
import { spiffeId } from "../ca/spiffe.js";
import { CA_SECRET_SUFFIX, clientTlsFiles, credentialReference } from "../sources/index.js";
import { ADS_CONFIG_SOURCE, fileCertificateSecret, fileRootSecret, inlineCertificateSecret, inlineRootSecret, typed } from "./envoy.js";
import { meshCommonTlsContext, namespaceMtlsMode, subjectAltNameMatchers } from "./peer-authentication.js";
import type { Registry, Service } from "./registry.js";

type Json = Record<string, unknown>;

export interface UpstreamTlsInput {
  mesh: MeshConfig;
  registry: Registry;
  service: Service;
  clusterName: string;
  /** The cluster's type: an ORIGINAL_DST cluster has no endpoints to match sockets on. */
  originalDestination: boolean;
  http2: boolean;
  /** The DestinationRule's `tls` for this cluster (the subset's over the rule's). */
  tls: ClientTls | undefined;
  /** Whether the rule that gave `tls` has a workloadSelector (credentialName on sidecars). */
  ruleHasWorkloadSelector: boolean;
  sidecar: boolean;
  /** The proxy's namespace, where a Kubernetes `credentialName` Secret is looked up (none in mesh-wide checks). */
  proxyNamespace: string | undefined;
  trustDomain: string;
  /** False without workload certificates (--plaintext). */
  certificates: boolean;
}

export interface UpstreamTls {
  /** Fields to merge into the cluster: `transport_socket` or `transport_socket_matches`. */
  cluster: Json;
  /** Upstream HTTP options (auto_sni, auto_san_validation) for an HTTP cluster. */
  httpOptions?: Json;
  /** File secrets the cluster names (SIMPLE and MUTUAL), sent by ADS. */
  secrets: XdsResource[];
  /** ISTIO_MUTUAL asked for where there are no workload certificates: the cluster must refuse its traffic. */
  refused?: string;
}

export const TLS_MODE_ISTIO = "istio";

/** Istio's ClientTLSSettings -> the cluster's transport socket(s). */
export function upstreamTls(input: UpstreamTlsInput): UpstreamTls {
  const { tls } = input;
  const none: UpstreamTls = { cluster: {}, secrets: [] };
  if (tls?.mode === "DISABLE") return none;
  if (tls?.mode === "SIMPLE" || tls?.mode === "MUTUAL") {
    // cluster_tls.go: a credentialName on a sidecar is looked up only for rules with a workloadSelector.
    if (tls.credentialName && input.sidecar && !input.ruleHasWorkloadSelector) return none;
    if (tls.credentialName && input.mesh.credentials) {
      const found = clientCredential(input.mesh, tls, input.proxyNamespace);
      return "problem" in found ? { ...none, refused: found.problem } : secretTls(input, tls, found.secrets);
    }
    return secretTls(input, tls, fileSecrets(input.mesh.dir, tls));
  }
  if (tls?.mode === "ISTIO_MUTUAL") {
    if (!input.certificates) return { ...none, refused: "its DestinationRule asks for ISTIO_MUTUAL" };
    return { cluster: { transport_socket: istioMutual(input, tls.subjectAltNames ?? serviceIdentities(input), tls.sni) }, secrets: [] };
  }
  if (!autoMtls(input)) return none;
  const socket = istioMutual(input, serviceIdentities(input), undefined);
  // An original-destination cluster has no endpoint metadata to choose by: mTLS to all (applyUpstreamTLSSettings).
  if (input.originalDestination) return { cluster: { transport_socket: socket }, secrets: [] };
  return {
    cluster: {
      transport_socket_matches: [
        { name: `tlsMode-${TLS_MODE_ISTIO}`, match: { tlsMode: TLS_MODE_ISTIO }, transport_socket: socket },
        { name: "tlsMode-disabled", match: {}, transport_socket: { name: "envoy.transport_sockets.raw_buffer", typed_config: typed("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer") } },
      ],
    },
    secrets: [],
  };
}

/** buildUpstreamTLSSettings' auto case with BestEffortInferServiceMTLSMode. */
function autoMtls(input: UpstreamTlsInput): boolean {
  const { mesh, service } = input;
  if (!input.certificates || !mesh.enableAutoMtls) return false;
  // ServiceEntry location defaults to MESH_EXTERNAL (its zero value in Istio's API).
  if (service.entry.spec.location !== "MESH_INTERNAL") return false;
  if (service.entry.spec.resolution === "NONE") {
    const workloads = input.registry.workloadsOf(service);
    if (workloads.length === 0 || workloads.some((workload) => input.registry.tlsMode(workload) !== TLS_MODE_ISTIO)) return false;
  }
  return namespaceMtlsMode(mesh, service.namespace) !== "DISABLE";
}

/** Istio's ISTIO_MUTUAL UpstreamTlsContext. */
function istioMutual(input: UpstreamTlsInput, subjectAltNames: string[], sni: string | undefined): Json {
  return tlsSocket({
    common_tls_context: meshCommonTlsContext(
      input.http2 ? ["istio-peer-exchange", "istio", "h2"] : ["istio-peer-exchange", "istio"],
      { tls_minimum_protocol_version: "TLSv1_2", tls_maximum_protocol_version: "TLSv1_3" },
      subjectAltNameMatchers(subjectAltNames),
    ),
    sni: sni ?? input.clusterName,
  });
}

/** Who may answer for a service (Istio's PushContext.ServiceAccounts): the SPIFFE IDs of its endpoints' service
 * accounts and its ServiceEntries' `subjectAltNames`, sorted. Empty: any workload of the mesh. */
export function serviceIdentities(input: Pick<UpstreamTlsInput, "registry" | "service" | "trustDomain">): string[] {
  const { registry, service, trustDomain } = input;
  const accounts = registry
    .workloadsOf(service)
    .flatMap((workload) => (workload.serviceAccount ? [spiffeId({ trustDomain, namespace: service.namespace, serviceAccount: workload.serviceAccount })] : []));
  const named = service.entries.flatMap((entry) => entry.spec.subjectAltNames ?? []);
  return [...new Set([...accounts, ...named])].sort();
}

function tlsSocket(context: Json): Json {
  return { name: "envoy.transport_sockets.tls", typed_config: typed("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", context) };
}

interface ClientSecrets {
  certificate?: XdsResource;
  root?: XdsResource;
}

/** The file secrets of SIMPLE and MUTUAL: certificate files, or a credentialName folder (the folder mode). */
function fileSecrets(dir: string, tls: ClientTls): ClientSecrets {
  const files = clientTlsFiles(dir, tls);
  return {
    ...(files.certificate && files.privateKey ? { certificate: fileCertificateSecret(files.certificate, files.privateKey) } : {}),
    ...(files.caCertificates ? { root: fileRootSecret(files.caCertificates) } : {}),
  };
}

/** A DestinationRule's `credentialName` from Kubernetes, for a proxy in `namespace`: the SDS secrets of the Secret
 * `<name>` of that namespace (MUTUAL: its certificate and key; unless insecureSkipVerify: the CA from `<name>-cacert`,
 * else the Secret's own, the order of Istio's GetCaCert), or why there are none. */
export function clientCredential(mesh: MeshConfig, tls: ClientTls, namespace: string | undefined): { secrets: ClientSecrets } | { problem: string } {
  const reference = credentialReference(tls.credentialName!);
  if (namespace === undefined) return { problem: `credentialName ${tls.credentialName} is read in the namespace of a proxy, and there is none` };
  if (reference.namespace !== undefined && reference.namespace !== namespace) {
    return { problem: `credentialName ${tls.credentialName} names a Secret in namespace ${reference.namespace}, and a proxy may use only Secrets of its own namespace (${namespace}), as with Istio's SDS` };
  }
  const found = mesh.credentials?.[`${namespace}/${reference.name}`];
  const caCertificate = mesh.credentials?.[`${namespace}/${reference.name}${CA_SECRET_SUFFIX}`]?.caCertificate ?? found?.caCertificate;
  const needsCertificate = tls.mode === "MUTUAL";
  const needsCa = !tls.insecureSkipVerify;
  if ((needsCertificate && !(found?.certificate && found.privateKey)) || (needsCa && !caCertificate)) {
    const wanted = [needsCertificate ? "tls.crt and tls.key" : "", needsCa ? `ca.crt or a Secret ${reference.name}${CA_SECRET_SUFFIX}` : ""].filter(Boolean).join(", and ");
    return { problem: `credentialName ${tls.credentialName}: no usable Secret ${reference.name} in namespace ${namespace} (${wanted})` };
  }
  return {
    secrets: {
      ...(needsCertificate ? { certificate: inlineCertificateSecret(reference.sdsName, found!.certificate!, found!.privateKey!) } : {}),
      ...(needsCa ? { root: inlineRootSecret(reference.sdsName + CA_SECRET_SUFFIX, caCertificate!) } : {}),
    },
  };
}

/** SIMPLE and MUTUAL (constructUpstreamTLS) with the client certificate and the CA from these secrets. */
function secretTls(input: UpstreamTlsInput, tls: ClientTls, { certificate, root }: ClientSecrets): UpstreamTls {
  const secrets: XdsResource[] = [];
  const common: Json = { tls_params: { tls_minimum_protocol_version: "TLSv1_2", tls_maximum_protocol_version: "TLSv1_3" } };
  if (certificate) {
    secrets.push(certificate);
    common.tls_certificate_sds_secret_configs = [{ name: certificate.name, sds_config: ADS_CONFIG_SOURCE }];
  }
  if (root) {
    secrets.push(root);
    common.combined_validation_context = {
      default_validation_context: tls.subjectAltNames ? { match_typed_subject_alt_names: subjectAltNameMatchers(tls.subjectAltNames) } : {},
      validation_context_sds_secret_config: { name: root.name, sds_config: ADS_CONFIG_SOURCE },
    };
  }
  if (input.http2) common.alpn_protocols = ["h2"];
  // setAutoSniAndAutoSanValidation: without `sni`, the request's host; checked when no subjectAltNames name others.
  const httpOptions = tls.sni ? undefined : { auto_sni: true, ...(!tls.subjectAltNames?.length && !tls.insecureSkipVerify ? { auto_san_validation: true } : {}) };
  return { cluster: { transport_socket: tlsSocket({ common_tls_context: common, ...(tls.sni ? { sni: tls.sni } : {}) }) }, httpOptions, secrets };
}
