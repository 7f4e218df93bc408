// The validated mesh: what translation reads. Each resource keeps the file it came from, for error messages.
import type { z } from "zod";
import type {
  authorizationPolicySpec,
  destinationRuleSpec,
  requestAuthenticationSpec,
  peerAuthenticationSpec,
  envoyFilterSpec,
  gatewaySpec,
  Kind,
  ExtensionProvider,
  LocalityLbSetting,
  serviceEntrySpec,
  sidecarSpec,
  trafficExtensionSpec,
  workloadEntrySpec,
  telemetrySpec,
  virtualServiceSpec,
  wasmPluginSpec,
} from "./schema/index.js";

export interface Resource<S> {
  kind: Kind;
  name: string;
  namespace: string;
  /** The file it was read from, relative to the config folder. */
  file: string;
  spec: S;
  /** Skiff's own `skiff.dev/` annotations of the resource (schema/annotations.ts), when it has any. */
  annotations?: Record<string, string>;
  /** WasmPlugins and Wasm TrafficExtensions only (see WasmPlugin). */
  module?: ModuleSource;
}

/** A module file (in or beside the config folder), read and hashed when the folder was read. */
export interface ModuleFile {
  path: string;
  sha256: string;
}

/** A module in an OCI registry (`oci://`): the control plane pulls it (control/modules/remote.ts), not the reader. */
export interface ModuleImage {
  image: string;
  /** The pin from `spec.sha256`: the image digest or the module's sha256. */
  sha256?: string;
  /** The `.dockerconfigjson` file of `spec.imagePullSecret`. */
  pullSecret?: string;
}

export type ModuleSource = ModuleFile | ModuleImage;

/** A sha256 for a plugin's module without pulling anything: the file's, or an image's pin, or a placeholder. For
 * checks of what translation emits (`skiff validate`, EnvoyFilter checks), never for what proxies get. */
export function moduleSha256(module: ModuleSource): string {
  return "path" in module ? module.sha256 : (module.sha256 ?? "0".repeat(64));
}

export type Gateway = Resource<z.infer<typeof gatewaySpec>>;
export type VirtualService = Resource<z.infer<typeof virtualServiceSpec>>;
export type DestinationRule = Resource<z.infer<typeof destinationRuleSpec>>;
export type ServiceEntry = Resource<z.infer<typeof serviceEntrySpec>>;
/** A workload outside the mesh's pods (a VM, a bare process), selected by ServiceEntries' workloadSelector. */
export type WorkloadEntry = Resource<z.infer<typeof workloadEntrySpec>>;
export type WasmPlugin = Resource<z.infer<typeof wasmPluginSpec>> & {
  /** The module `spec.url` names: a file with its sha256 when the folder was read, or an OCI image. */
  module: ModuleSource;
};
/** A TrafficExtension; with `wasm`, `module` is the file `spec.wasm.url` names. */
export type TrafficExtension = Resource<z.infer<typeof trafficExtensionSpec>>;
export type EnvoyFilter = Resource<z.infer<typeof envoyFilterSpec>>;
export type AuthorizationPolicy = Resource<z.infer<typeof authorizationPolicySpec>>;
export type RequestAuthentication = Resource<z.infer<typeof requestAuthenticationSpec>>;
export type PeerAuthentication = Resource<z.infer<typeof peerAuthenticationSpec>>;
export type Sidecar = Resource<z.infer<typeof sidecarSpec>>;

/** Istio's outboundTrafficPolicy: ALLOW_ANY (the default) passes traffic to hosts outside the registry on to where
 * it was going; REGISTRY_ONLY refuses it. */
export type OutboundTrafficPolicy = "ALLOW_ANY" | "REGISTRY_ONLY";
export type Telemetry = Resource<z.infer<typeof telemetrySpec>>;

/** MeshConfig's telemetry fields (meshconfig.yaml), with Istio's defaults. */
export interface MeshTelemetry {
  /** As written (Istio's default: true). istiod reads it only for a proxy that no tracing provider reaches (no
   * Telemetry tracing, no `defaultProviders.tracing`), to trace with the bootstrap's tracer, which Skiff's bootstrap
   * does not have: it changes no configuration, and skiff validate warns where it would mislead. */
  enableTracing?: boolean;
  /** `defaultConfig.tracing.sampling` as written: the sampling percentage when a Telemetry gives none (0 or unset:
   * istiod's default 1%). */
  defaultSampling?: number;
  defaultProviders: { tracing: string[]; metrics: string[] };
  /** `extensionProviders`, plus Istio's built-in `prometheus` when not redefined. */
  extensionProviders: ExtensionProvider[];
}

export interface MeshConfig {
  /** The config folder, absolute; WasmPlugin file urls are relative to it. */
  dir: string;
  gateways: Gateway[];
  virtualServices: VirtualService[];
  destinationRules: DestinationRule[];
  serviceEntries: ServiceEntry[];
  workloadEntries: WorkloadEntry[];
  wasmPlugins: WasmPlugin[];
  trafficExtensions: TrafficExtension[];
  envoyFilters: EnvoyFilter[];
  authorizationPolicies: AuthorizationPolicy[];
  requestAuthentications: RequestAuthentication[];
  /** In load order (file by file): where Istio takes the oldest of several, Skiff takes the first. */
  peerAuthentications: PeerAuthentication[];
  sidecars: Sidecar[];
  /** From meshconfig.yaml; default ALLOW_ANY, as in Istio. A Sidecar resource may set its own. */
  outboundTrafficPolicy: OutboundTrafficPolicy;
  telemetries: Telemetry[];
  /** From meshconfig.yaml. */
  telemetry: MeshTelemetry;
  /** From meshconfig.yaml, default `istio-system` as in Istio: EnvoyFilters there apply in every namespace, and
   * PeerAuthentication, AuthorizationPolicy and RequestAuthentication there apply mesh-wide. */
  rootNamespace: string;
  /** From meshconfig.yaml: locality load balancing for services whose DestinationRule sets none. Unset means Istio's
   * default `{ enabled: true }`: failover by locality wherever outlier detection is on (translate/locality.ts). */
  localityLbSetting?: LocalityLbSetting;
  /** From meshconfig.yaml, default true as in Istio: a client sidecar uses mutual TLS to the endpoints that have a
   * sidecar (and plain text to the others) when no DestinationRule sets `tls`. */
  enableAutoMtls: boolean;
  /** From Kubernetes only: the TLS Secrets that Gateways' and DestinationRules' `credentialName` name, by
   * `<namespace>/<name>` (a proxy finds its credential in its own namespace, as in Istio). Absent in the folder mode,
   * where `credentialName` names files of the config folder. Never logged: it holds private keys. */
  credentials?: Record<string, TlsCredential>;
  /** Resources that install a mesh rather than configure it (IstioOperator, injected Deployments): not translated,
   * reported with the Skiff command that plays their part (installation.ts). */
  installation: InstallationResource[];
}

/** The Secret Istio reads a MUTUAL server's CA from when the credential itself has none (`<name>-cacert`). */
export const CA_SECRET_SUFFIX = "-cacert";

/** A DestinationRule's `credentialName` as Istio's SDS reads it (pilot/pkg/model/credentials/resource.go ToResourceName,
 * ParseResourceName): `name` and `kubernetes://name` are the Secret `name` in the namespace of the proxy that uses it;
 * `kubernetes://ns/name` (or `ns/name`) names namespace `ns`. `sdsName` is the SDS resource name Envoy is given. */
export function credentialReference(credentialName: string): { namespace?: string; name: string; sdsName: string } {
  const sdsName = credentialName.startsWith(KUBERNETES_SECRET_PREFIX) ? credentialName : KUBERNETES_SECRET_PREFIX + credentialName;
  const [first, second] = sdsName.slice(KUBERNETES_SECRET_PREFIX.length).split("/") as [string, string | undefined];
  return second === undefined ? { name: first, sdsName } : { namespace: first, name: second, sdsName };
}

const KUBERNETES_SECRET_PREFIX = "kubernetes://";

/** A Kubernetes TLS Secret's contents, PEM. */
export interface TlsCredential {
  certificate?: string;
  privateKey?: string;
  /** The CA that client certificates must chain to (MUTUAL, OPTIONAL_MUTUAL). */
  caCertificate?: string;
}

export interface InstallationResource {
  file: string;
  kind: string;
  namespace: string;
  name: string;
  /** What it does in Istio: "installs Istio (istiod and its gateways)". */
  what: string;
  /** What does that with Skiff. */
  equivalent: string;
}

export interface ConfigError {
  /** Relative to the config folder. */
  file: string;
  /** "Kind namespace/name", when the error belongs to one resource. */
  resource?: string;
  /** Dotted path inside the resource, e.g. "spec.http[0].route[1].weight". */
  field?: string;
  message: string;
}

/** Every Wasm module the mesh's resources name (WasmPlugins, Wasm TrafficExtensions), by their `url` as written. */
export function wasmModules(mesh: MeshConfig): Array<ModuleSource & { url: string }> {
  return [
    ...mesh.wasmPlugins.map((plugin) => ({ url: plugin.spec.url, ...plugin.module })),
    ...mesh.trafficExtensions.flatMap((extension) => (extension.spec.wasm && extension.module ? [{ url: extension.spec.wasm.url, ...extension.module }] : [])),
  ];
}

export function formatConfigError(error: ConfigError): string {
  return [error.file, error.resource, error.field, error.message].filter(Boolean).join(": ");
}

export function emptyMesh(dir: string): MeshConfig {
  return {
    dir,
    gateways: [],
    virtualServices: [],
    destinationRules: [],
    serviceEntries: [],
    workloadEntries: [],
    wasmPlugins: [],
    trafficExtensions: [],
    envoyFilters: [],
    authorizationPolicies: [],
    requestAuthentications: [],
    peerAuthentications: [],
    sidecars: [],
    outboundTrafficPolicy: "ALLOW_ANY",
    telemetries: [],
    telemetry: {
      // Istio's default profile turns on Prometheus metrics for every proxy (meshConfig.defaultProviders.metrics).
      defaultProviders: { tracing: [], metrics: ["prometheus"] },
      extensionProviders: [{ name: "prometheus", prometheus: {} }],
    },
    rootNamespace: "istio-system",
    enableAutoMtls: true,
    installation: [],
  };
}
