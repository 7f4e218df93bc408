// The control plane: Istio resources from a folder or a Kubernetes API server (sources) -> Envoy resources per proxy (translate) -> encoded,
// versioned snapshots (snapshots) -> ADS streams (xds). Data flows one way; Wasm modules are served over HTTP.
import { EnvoyFilterGate } from "./envoy-check.js";
import { EnvoyNotFoundError, locateEnvoy, PROJECT_ROOT } from "./envoy-binary/locate.js";
import { validateWithEnvoy } from "./envoy-binary/validate.js";
import { type ConfigError, formatConfigError, type MeshConfig, wasmModulePath, watchConfigDir } from "./sources/index.js";
import type { KubernetesSourceOptions } from "./sources/kubernetes/index.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkTranslation } from "./translate/check.js";
import { configDiff } from "./translate/config-diff.js";
import { translate, translationNotes } from "./translate/index.js";
import { meshWarnings } from "./translate/warnings.js";
import { inlineServedModules } from "./modules/inline.js";
import { RemoteModules } from "./modules/remote.js";
import { jsonPage, ModuleServer } from "./modules/server.js";
import { ControlPlaneMetrics } from "./metrics/metrics.js";
import { SnapshotCache, SnapshotError } from "./snapshots/cache.js";
import { JwksCache } from "./sources/jwks.js";
import { type ProxyIdentity, type ProxyResources, type TranslationContext, translationKey, TypeUrl } from "./resources.js";
import { type XdsSecurity, XdsServer } from "./xds/server.js";
import { StreamRefused } from "./xds/streams.js";
import { CertificateAuthority } from "./ca/authority.js";
import { certificateIdentity } from "./ca/peer.js";
import { certificateService } from "./ca/protocol.js";
import { certificateServiceHandlers } from "./ca/service.js";
import { ServingCredentials } from "./ca/serving.js";
import { DEFAULT_TRUST_DOMAIN } from "./ca/spiffe.js";
import { BootstrapTokens, type TokenAuthenticator } from "./ca/tokens.js";
import type { KubeConfig } from "@kubernetes/client-node";
import { status as grpcStatus } from "@grpc/grpc-js";
import { closedNetwork, MESH_RANGE } from "./mesh/addresses.js";

export interface ControlPlaneOptions {
  /** The folder of Istio YAML it serves and watches (the embedded mode); or `kubernetes`. */
  configDir?: string;
  /** Istio resources and services from a Kubernetes API server instead of a folder (sources/kubernetes/). */
  kubernetes?: Omit<KubernetesSourceOptions, "check" | "log">;
  /** The namespace of resources whose metadata names none (default "default"), as kubectl's `-n`. */
  namespace?: string;
  /** The address xDS listens on, which proxies reach it at: 127.0.0.1 (the default), the host's address on a mesh
   * bridge (`skiff mesh create`), so that sidecars in pods reach it, or, with TLS and workload authentication (not
   * plaintext), any address, e.g. a Kubernetes pod's IP. */
  host?: string;
  /** The address of the unauthenticated HTTP server (modules, /status, /metrics, /debug): loopback or a mesh bridge
   * address only. Default: `host` when that is one of those, else 127.0.0.1. */
  httpHost?: string;
  /** ADS port (0 picks a free one). */
  xdsPort?: number;
  /** Module and status HTTP port (0 picks a free one). */
  httpPort?: number;
  log?: (line: string) => void;
  /** The Envoy that checks EnvoyFilter results (`envoy --mode validate`) before proxies get them: by default the one
   * Skiff finds (locateEnvoy), without that check when there is none; `false` turns the check off. */
  envoyPath?: string | false;
  /** How proxies reach the control plane; always explicit. `{ plaintext: true }`: xDS without TLS, served to anyone
   * who connects (local development and tests only). Otherwise xDS over TLS with the CA on the same port: a proxy
   * authenticates with its workload certificate and is served as that identity only. */
  security: { plaintext: true } | SecurityOptions;
  /** With `kubernetes` and security (its certificate comes from the CA): serve the validating admission webhook
   * (sources/kubernetes/admission.ts) over HTTPS on this address; host default `host`, port default 15017 (0: free). */
  admissionWebhook?: { host?: string; port?: number };
}

export interface SecurityOptions {
  /** Where the CA keeps its root and (folder mode) the bootstrap token key. */
  dataDir: string;
  /** Istio's plugged-in CA folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem). */
  cacertsDir?: string;
  trustDomain?: string;
  /** Default lifetime of workload certificates, in seconds (24 h). */
  workloadTtlSeconds?: number;
  /** With `kubernetes`: the audiences a workload's service account token may be for (default istio-ca). */
  tokenAudiences?: string[];
}

export interface ControlPlane {
  xds: XdsServer;
  /** With security: the CA, and (folder mode) the issuer of bootstrap tokens for workloads. With `kubernetes`, a
   * workload's first CSR is authenticated by its service account token instead (TokenReview), so there are none. */
  ca?: CertificateAuthority;
  tokens?: BootstrapTokens;
  /** With `admissionWebhook`: where it listens. */
  admissionWebhook?: { host: string; port: number };
  modules: ModuleServer;
  cache: SnapshotCache;
  metrics: ControlPlaneMetrics;
  stop(): Promise<void>;
}

/** Istio's standard metrics come from this filter: the module the packed package carries (dist/filters/, compiled by
 * tools/bundle-assets.ts), else the checkout's (`npm run build` makes build/filters/); without it, proxies get none. */
export const ISTIO_STATS_MODULE = [fileURLToPath(new URL("./filters/istio-stats.wasm", import.meta.url)), join(PROJECT_ROOT, "build", "filters", "istio-stats.wasm")].find((path) => existsSync(path));

/** One translation, shared by every proxy with the same translationKey. */
interface Translation {
  resources: ProxyResources;
  /** translationNotes: what the status view says about such a proxy. */
  notes: string[];
}

/** The Envoy cluster through which proxies fetch modules (translation emits it when a WasmPlugin applies). */
const MODULE_CLUSTER = "skiff-modules";

/** Where a proxy's snapshot is kept: its node id and everything translation reads, so that two streams sharing a
 * node id but not an identity never share (or overwrite) a snapshot. */
export function snapshotKey(proxy: ProxyIdentity): string {
  return `${proxy.nodeId} ${translationKey(proxy)}`;
}

/** Where each server may listen. The HTTP server (modules, /status, /metrics, /debug/config_dump) answers anyone who
 * connects, without TLS, and so does xDS in plain-text mode: they listen only on a closed network (loopback or a mesh
 * bridge). Secured xDS (TLS, and a workload certificate required before anything is sent) may listen anywhere, e.g.
 * on a Kubernetes pod's IP. Returns the HTTP server's address. */
export function checkListenHosts(host: string, plaintext: boolean, httpHost?: string): string {
  if (plaintext && !closedNetwork(host)) {
    throw new Error(
      `cannot listen on ${host}: xDS with --plaintext answers without authentication, so it listens only on 127.0.0.1 or a ` +
        `mesh bridge address in ${MESH_RANGE} (\`skiff mesh create\` prints it); without --plaintext (TLS and workload ` +
        "certificates) it may listen on any address",
    );
  }
  const http = httpHost ?? (closedNetwork(host) ? host : "127.0.0.1");
  if (!closedNetwork(http)) {
    throw new Error(
      `cannot serve HTTP on ${http}: the HTTP server (modules, /status, /metrics, /debug) answers without authentication, ` +
        `so it listens only on 127.0.0.1 or a mesh bridge address in ${MESH_RANGE}`,
    );
  }
  return http;
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  if ((options.configDir === undefined) === (options.kubernetes === undefined)) throw new Error("startControlPlane needs exactly one source: configDir or kubernetes");
  if (options.admissionWebhook && !(options.kubernetes && "dataDir" in options.security)) {
    throw new Error("the admission webhook needs --kubernetes (the API server calls it) and the CA for its certificate (not --plaintext)");
  }
  const log = options.log ?? (() => {});
  const host = options.host ?? "127.0.0.1";
  const httpHost = checkListenHosts(host, !("dataDir" in options.security), options.httpHost);
  const cache = new SnapshotCache();
  // Connected proxies by snapshot key.
  const proxies = new Map<string, ProxyIdentity>();
  let mesh: MeshConfig | undefined;
  let xds: XdsServer | undefined;
  const secured = "dataDir" in options.security ? await startSecurity(options.security, log, options.kubernetes?.config) : undefined;
  const metrics = new ControlPlaneMetrics();
  if (!ISTIO_STATS_MODULE) log("the istio-stats module is not built (npm run build): proxies get no Istio standard metrics");
  const modules = await ModuleServer.start({
    host: httpHost,
    port: options.httpPort,
    pages: {
      "/status": () => jsonPage(xds?.status() ?? []),
      "/metrics": () => metrics.text(),
      // Snapshots are keyed by snapshotKey (node id and identity): the page names a proxy by its node id.
      "/debug/config_dump": (query) => configDump(cache, query.get("proxy"), [...proxies].find(([, proxy]) => proxy.nodeId === query.get("proxy"))?.[0]),
      // What the EnvoyFilters and extensions applying to a connected proxy change (`skiff proxy-config diff`).
      "/debug/config_diff": (query) => {
        const nodeId = query.get("proxy");
        if (!nodeId) return jsonPage({ error: "name a proxy: /debug/config_diff?proxy=<node id>" }, 400);
        const proxy = [...proxies.values()].find((candidate) => candidate.nodeId === nodeId);
        if (!proxy || !mesh) return jsonPage({ error: `no connected proxy ${nodeId}` }, 404);
        return jsonPage({ proxy: nodeId, changes: configDiff(mesh, contextFor(mesh, proxy)) });
      },
    },
    onModuleFetch: (found) => metrics.moduleFetched(found),
  });

  // oci:// modules are pulled in the background; each pull that succeeds translates again for every proxy.
  const remote = new RemoteModules({
    log,
    onChange: () => {
      translations = new Map();
      for (const [key, proxy] of proxies) update(key, proxy);
    },
  });

  // Translation depends on the proxy's identity but not its node id (translationKey), so proxies alike share one
  // translation per config version, and the snapshot cache encodes that shared result once (istiod's push context
  // does the same). Cleared whenever the config changes.
  let translations = new Map<string, Translation>();
  // A key set fetched for a RequestAuthentication changes the translation of the proxies it applies to.
  const jwks = new JwksCache(() => {
    translations = new Map();
    for (const [key, proxy] of proxies) update(key, proxy);
  }, log);
  const contextFor = (current: MeshConfig, proxy: ProxyIdentity): TranslationContext => ({
    proxy,
    moduleCluster: { name: MODULE_CLUSTER, host: modules.host, port: modules.port },
    module: (url, owner) => {
      if (!url.startsWith("oci://")) return modules.addFile(wasmModulePath(current.dir, url));
      const pulled = owner ? remote.module(owner) : undefined;
      return pulled && modules.add(pulled.bytes);
    },
    jwks: (uri) => jwks.get(uri),
    trustDomain: secured?.ca.trustDomain,
    // Proxies of a secured control plane come through their agent, which serves them their certificate by SDS.
    workloadCertificates: secured !== undefined,
    statsModule: ISTIO_STATS_MODULE === undefined ? undefined : modules.addFile(ISTIO_STATS_MODULE),
  });
  const translationFor = (current: MeshConfig, proxy: ProxyIdentity): Translation => {
    const kind = translationKey(proxy);
    let translation = translations.get(kind);
    if (!translation) {
      const start = process.hrtime.bigint();
      const resources = inlineServedModules(translate(current, contextFor(current, proxy)), modules, MODULE_CLUSTER);
      translation = { resources, notes: translationNotes(current, proxy, { workloadCertificates: secured !== undefined }) };
      translations.set(kind, translation);
      metrics.translated(proxy.role, Number(process.hrtime.bigint() - start) / 1e9);
    }
    return translation;
  };

  /** `changedAt`: when the change began (the config burst's first event, or now for a proxy that just connected). */
  const update = (key: string, proxy: ProxyIdentity, changedAt?: number) => {
    if (!mesh) return;
    try {
      const before = cache.get(key)?.version;
      const { resources, notes } = translationFor(mesh, proxy);
      const snapshot = cache.set(key, resources, { changedAt, notes });
      if (snapshot.version !== before) {
        log(`${proxy.nodeId}: snapshot ${snapshot.version} (content ${snapshot.contentVersion})`);
        for (const note of snapshot.notes) log(`${proxy.nodeId}: ${note}`);
      }
    } catch (error) {
      // An Envoy resource that does not encode: the proxy keeps its last good snapshot.
      metrics.translationFailed(proxy.role);
      log(error instanceof SnapshotError ? error.message : `${proxy.nodeId}: translation failed, the previous snapshot stays: ${(error as Error).stack}`);
    }
  };

  // What Istio accepts but may surprise (merged resources, routes to nowhere): logged once each time the list changes.
  let lastWarnings = "";
  const logWarnings = (current: MeshConfig) => {
    const warnings = meshWarnings(current).map(formatConfigError);
    if (warnings.join("\n") === lastWarnings) return;
    lastWarnings = warnings.join("\n");
    for (const warning of warnings) log(`config warning: ${warning}`);
  };

  // The folder's errors and Envoy's (EnvoyFilter results it refuses), reported together.
  let folderErrors: ConfigError[] = [];
  let envoyErrors: ConfigError[] = [];
  const reportErrors = (changed: ConfigError[]) => {
    const errors = [...folderErrors, ...envoyErrors];
    metrics.configErrorsNow(errors);
    if (errors.length === 0) log(`config: no errors`);
    for (const error of changed) log(`config error (the last good version keeps serving): ${formatConfigError(error)}`);
  };
  const envoyPath = options.envoyPath ?? foundEnvoy(log);
  const gate = new EnvoyFilterGate(envoyPath ? (resources, fold) => validateWithEnvoy(envoyPath, resources, fold) : undefined);

  const applyMesh = (next: MeshConfig, firstChangeAt: number) =>
    gate.submit(next, (checked, errors) => {
      if (JSON.stringify(errors) !== JSON.stringify(envoyErrors)) {
        envoyErrors = errors;
        reportErrors(errors);
      }
      mesh = checked;
      remote.want(checked.wasmPlugins.flatMap(({ kind, namespace, name, module }) => ("image" in module ? [{ owner: `${kind}/${namespace}/${name}`, module }] : [])));
      logWarnings(checked);
      metrics.configChanged((Date.now() - firstChangeAt) / 1000, new Set(checked.serviceEntries.flatMap((entry) => entry.spec.hosts)).size);
      // Module files may have changed with the YAML: translate afresh (modules are re-read when their file changed).
      translations = new Map();
      for (const [key, proxy] of proxies) update(key, proxy, firstChangeAt);
    });
  const sourceErrors = (errors: ConfigError[]) => {
    folderErrors = errors;
    reportErrors(errors);
  };
  // The namespaces of connected gateways, where their Gateways' Kubernetes credentials are read.
  const gatewaysChanged = () => kubernetes?.setGatewayNamespaces(new Set([...proxies.values()].filter((proxy) => proxy.role === "gateway").map((proxy) => proxy.namespace)));

  let watcher: { close(): Promise<void> } | undefined;
  // Loaded only for a cluster: the Kubernetes client takes a while to load, and the folder mode does not need it.
  const kubernetes = options.kubernetes
    ? (await import("./sources/kubernetes/index.js")).watchKubernetes({ ...options.kubernetes, check: checkTranslation, log }, applyMesh, sourceErrors)
    : undefined;
  try {
    if (kubernetes) {
      watcher = kubernetes;
      log(`kubernetes: watching ${options.kubernetes!.config.getCurrentCluster()?.server}; serving once every informer has listed`);
      await kubernetes.synced;
      log("kubernetes: synced");
    } else {
      watcher = watchConfigDir(options.configDir!, applyMesh, sourceErrors, { check: checkTranslation, namespace: options.namespace });
    }
    xds = await XdsServer.start({
      cache,
      address: `${host}:${options.xdsPort ?? 0}`,
      log,
      observer: metrics,
      security: secured?.xds,
      services: secured?.services,
      snapshotKey,
      onProxyConnected: (proxy, key) => {
        proxies.set(key, proxy);
        if (proxy.role === "gateway") gatewaysChanged();
        update(key, proxy);
      },
      // Nothing is kept for a proxy that went away: it is no longer translated for, and a reconnect (perhaps with
      // other labels) starts from a fresh snapshot.
      onProxyDisconnected: (key, proxy) => {
        proxies.delete(key);
        cache.delete(key);
        if (proxy.role === "gateway") gatewaysChanged();
      },
    });
  } catch (error) {
    // An unreadable config folder or a taken port: release what was started.
    await (watcher ?? kubernetes)?.close();
    remote.stop();
    await modules.stop();
    secured?.credentials.stop();
    jwks.stop();
    throw error;
  }
  log(
    `xDS (ADS) on ${host}:${xds.port} ${secured ? `over TLS, with the CA (${secured.ca.origin}, trust domain ${secured.ca.trustDomain}; a first CSR authenticated by a ${secured.tokens.kind})` : "in PLAIN TEXT, unauthenticated (development mode)"}, ` +
      `modules, /status and /metrics on http://${modules.host}:${modules.port}`,
  );
  // Loaded only when asked for, as the kubernetes source is.
  let webhook: { stop(): Promise<void>; host: string; port: number } | undefined;
  if (options.admissionWebhook) {
    const { AdmissionWebhook, ADMISSION_WEBHOOK_PATH, ADMISSION_WEBHOOK_PORT } = await import("./sources/kubernetes/admission.js");
    const address = { host: options.admissionWebhook.host ?? host, port: options.admissionWebhook.port ?? ADMISSION_WEBHOOK_PORT };
    try {
      const started = await AdmissionWebhook.start({
        ca: secured!.ca,
        ...address,
        certificateTtlSeconds: (options.security as SecurityOptions).workloadTtlSeconds ?? 24 * 3600,
        moduleDir: options.kubernetes?.moduleDir ?? process.cwd(),
        log,
      });
      webhook = { stop: () => started.stop(), host: address.host, port: started.port };
    } catch (error) {
      await Promise.all([watcher!.close(), xds.stop(), modules.stop()]);
      remote.stop();
      secured?.credentials.stop();
      jwks.stop();
      throw error;
    }
    log(`admission webhook on https://${address.host}:${webhook.port}${ADMISSION_WEBHOOK_PATH} (AdmissionReview v1, certificate of this CA)`);
  }
  const [server, folderWatcher] = [xds, watcher];
  return {
    xds: server,
    ca: secured?.ca,
    tokens: secured?.tokens instanceof BootstrapTokens ? secured.tokens : undefined,
    ...(webhook ? { admissionWebhook: { host: webhook.host, port: webhook.port } } : {}),
    modules,
    cache,
    metrics,
    stop: async () => {
      await webhook?.stop();
      await folderWatcher.close();
      remote.stop();
      await server.stop();
      await modules.stop();
      secured?.credentials.stop();
      jwks.stop();
    },
  };
}

function foundEnvoy(log: (line: string) => void): string | undefined {
  try {
    return locateEnvoy().path;
  } catch (error) {
    if (!(error instanceof EnvoyNotFoundError)) throw error;
    log("no Envoy found: EnvoyFilter results are not checked with envoy --mode validate before proxies get them");
    return undefined;
  }
}

/** The control plane's view of one proxy: what its snapshot holds, by type, as proto3 JSON (`skiff proxy-config`). */
function configDump(cache: SnapshotCache, nodeId: string | null, key: string | undefined) {
  if (!nodeId) return jsonPage({ error: "name a proxy: /debug/config_dump?proxy=<node id>" }, 400);
  const snapshot = key === undefined ? undefined : cache.get(key);
  if (!snapshot) return jsonPage({ error: `no connected proxy ${nodeId}` }, 404);
  const types = Object.fromEntries(
    Object.values(TypeUrl).map((typeUrl) => [
      typeUrl,
      [...(snapshot.resources.get(typeUrl)?.values() ?? [])].map((resource) => ({ name: resource.name, version: resource.version, body: typeUrl === TypeUrl.Secret ? redacted(resource.body) : resource.body })),
    ]),
  );
  return jsonPage({ proxy: nodeId, snapshotVersion: snapshot.version, contentVersion: snapshot.contentVersion, types });
}

/** A secret without its private key (a gateway's Kubernetes credential travels inline), as Envoy's and istiod's config
 * dumps show one: the key is never served by the debug page. */
function redacted(body: Record<string, unknown>): Record<string, unknown> {
  const certificate = body.tls_certificate as Record<string, unknown> | undefined;
  if (!certificate?.private_key) return body;
  return { ...body, tls_certificate: { ...certificate, private_key: { inline_string: "[redacted]" } } };
}

/** The CA, the control plane's TLS identity, and the rule by which a stream is served: its caller must present a
 * workload certificate of this trust domain, and the node it claims must be that identity's, as istiod's
 * checkConnectionIdentity (pilot/pkg/xds/ads.go): namespace equal, service account equal when the node names one.
 * A first CSR is authenticated by a bootstrap token of this control plane, or, in a cluster, by the workload's
 * Kubernetes service account token, which the API server reviews: instead of bootstrap tokens, not beside them, since
 * a bootstrap token's key is one replica's (its data folder) and a second kind of credential would be a second way in. */
async function startSecurity(options: SecurityOptions, log: (line: string) => void, cluster?: KubeConfig) {
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const ca = await CertificateAuthority.open({ dataDir: options.dataDir, cacertsDir: options.cacertsDir, trustDomain, workloadTtlSeconds: options.workloadTtlSeconds });
  if (options.tokenAudiences && !cluster) throw new Error("tokenAudiences are for Kubernetes service account tokens: they need the kubernetes source");
  let tokens: TokenAuthenticator;
  if (cluster) {
    const reviewed = new (await import("./ca/token-review.js")).KubernetesTokens(cluster, options.tokenAudiences);
    await reviewed.reportMissingAccess(log);
    tokens = reviewed;
  } else {
    tokens = BootstrapTokens.open(options.dataDir);
  }
  const credentials = await ServingCredentials.start(ca, { ttlSeconds: options.workloadTtlSeconds ?? 24 * 3600, log });
  const xds: XdsSecurity = {
    credentials,
    authorize: (call, claimed) => {
      const peer = certificateIdentity(call, trustDomain);
      if (!peer) throw new StreamRefused(grpcStatus.UNAUTHENTICATED, "xDS needs a workload certificate of this mesh (none, or one that does not verify)");
      if (!claimed) return undefined;
      if (claimed.namespace !== peer.namespace || (claimed.serviceAccount !== undefined && claimed.serviceAccount !== peer.serviceAccount)) {
        throw new StreamRefused(
          grpcStatus.PERMISSION_DENIED,
          `the certificate is ${peer.namespace}/${peer.serviceAccount}, the node claims ${claimed.namespace}/${claimed.serviceAccount ?? "(any)"}`,
        );
      }
      return { ...claimed, serviceAccount: peer.serviceAccount };
    },
  };
  return { ca, tokens, credentials, xds, services: [{ definition: certificateService, implementation: certificateServiceHandlers(ca, tokens, log) }] };
}
