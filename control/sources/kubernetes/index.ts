// Kubernetes as the source of configuration and services (`skiff control-plane --kubernetes`), beside the folder
// source: informers for every Istio kind Skiff reads (schema/index.ts KINDS, so a new kind comes along) and for
// Services, EndpointSlices, Pods and Nodes; each Istio object is validated exactly as a YAML document of a file is
// (parse.ts), each Service becomes a service of the registry (services.ts); the units are assembled with the folder's
// rules (assemble.ts: an object that turns invalid keeps its last good version), debounced as istiod debounces
// (debounce.ts), and each invalid object gets an Istio-style status and an Event (status.ts).
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Node,
  type V1Pod,
  type V1Service,
} from "@kubernetes/client-node";
import { LastGoodMesh, type MeshCheck } from "../assemble.js";
import { Debouncer } from "../debounce.js";
import { type ConfigError, credentialReference, type MeshConfig } from "../model.js";
import { type ParsedFile, parseObject } from "../parse.js";
import { reportMissingAccess } from "./access.js";
import { CredentialWatcher } from "./credentials.js";
import { Informer } from "./informer.js";
import { istioKinds, REGISTRY_KINDS, resourceName, type WatchedKind, watchedKinds, watchPath } from "./kinds.js";
import { kubernetesRegistry } from "./services.js";
import { type IstioObject, StatusWriter } from "./status.js";

/** How long the start waits for the Secrets the configuration names (a refused one would hold it up forever). */
const CREDENTIALS_SYNC_WAIT_MS = 5_000;

/** Where a pod finds its service account (Kubernetes mounts it there). */
const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/** The cluster to watch: `file` (--kubeconfig), else $KUBECONFIG, else the pod's service account when running in a
 * cluster, else ~/.kube/config (client-go's order for a controller). */
export function loadKubeConfig(file?: string): KubeConfig {
  const config = new KubeConfig();
  const home = join(homedir(), ".kube", "config");
  if (file) config.loadFromFile(file);
  else if (process.env.KUBECONFIG) config.loadFromDefault();
  else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) config.loadFromCluster();
  else if (existsSync(home)) config.loadFromFile(home);
  else throw new Error("no Kubernetes cluster to watch: give --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account");
  if (!config.getCurrentCluster()) throw new Error("the kubeconfig has no current cluster (set its current-context)");
  return config;
}

export interface KubernetesSourceOptions {
  config: KubeConfig;
  /** Checks of the assembled mesh that need more than one object (as for the folder: translate/check.ts). */
  check?: MeshCheck;
  log?: (line: string) => void;
  /** The folder that relative WasmPlugin `file://` urls are taken against (default: the working directory). */
  moduleDir?: string;
  /** The cluster's DNS domain (default cluster.local): Services are `<name>.<namespace>.svc.<domain>`. */
  domainSuffix?: string;
  /** Write status and Events for invalid objects (default true). */
  writeStatus?: boolean;
}

export interface KubernetesSource {
  /** Resolves when every informer has listed once (as istiod waits for its caches to sync before it serves). */
  readonly synced: Promise<void>;
  /** The namespaces of the connected gateways: their Gateways' `credentialName` Secrets are read there. */
  setGatewayNamespaces(namespaces: Iterable<string>): void;
  close(): Promise<void>;
}

/** Watches the cluster and calls `onChange` with the mesh after each debounced burst of changes that changes it,
 * `onErrors` whenever the list of invalid objects changes; both first once every informer has synced. */
export function watchKubernetes(
  options: KubernetesSourceOptions,
  onChange: (mesh: MeshConfig, firstChangeAt: number) => void,
  onErrors: (errors: ConfigError[]) => void,
): KubernetesSource {
  const log = options.log ?? (() => {});
  const moduleDir = options.moduleDir ?? process.cwd();
  const { config } = options;
  const core = config.makeApiClient(CoreV1Api);
  const discovery = config.makeApiClient(DiscoveryV1Api);
  const custom = config.makeApiClient(CustomObjectsApi);
  const status = options.writeStatus === false ? undefined : new StatusWriter(custom, core, log);
  const assembler = new LastGoodMesh(moduleDir, options.check);
  let synced = false;
  const debouncer = new Debouncer((firstChangeAt) => synced && reload(firstChangeAt));
  const changed = () => debouncer.changed();

  // Only kinds of kinds.ts are watched: they are what the access check and the RBAC tests know about.
  void reportMissingAccess(config, watchedKinds(), log);
  const watch = <T extends KubernetesObject>(kind: WatchedKind, list: () => Promise<KubernetesListObject<T>>) =>
    new Informer<T>(config, { description: resourceName(kind), kind: kind.kind, path: watchPath(kind), list, onChange: changed, log }).start();
  const istio = istioKinds().map((kind) => {
    const { group, version, plural } = kind;
    const informer = watch<IstioObject & KubernetesObject>(kind, () => custom.listClusterCustomObject({ group, version, plural }));
    return { kind: kind.kind, group, plural, informer };
  });
  const services = watch<V1Service>(REGISTRY_KINDS.services, () => core.listServiceForAllNamespaces());
  const slices = watch<V1EndpointSlice>(REGISTRY_KINDS.endpointslices, () => discovery.listEndpointSliceForAllNamespaces());
  const pods = watch<V1Pod>(REGISTRY_KINDS.pods, () => core.listPodForAllNamespaces());
  const nodes = watch<V1Node>(REGISTRY_KINDS.nodes, () => core.listNode());
  const credentials = new CredentialWatcher(config, core, changed, log);
  let gatewayNamespaces = new Set<string>();
  let meshSecrets: MeshConfig | undefined;
  let watchedSecrets = "";
  // Only the Secrets the mesh names, where the proxies that use them look (usedSecrets); re-chosen when the mesh or
  // the connected gateways change.
  const watchSecrets = () => {
    const secrets = meshSecrets ? usedSecrets(meshSecrets, gatewayNamespaces) : [];
    if (secrets.join() === watchedSecrets) return;
    watchedSecrets = secrets.join();
    credentials.watch(secrets);
  };

  let lastMesh = "";
  let lastErrors = "";
  let lastWarnings = "";
  const reload = (firstChangeAt: number) => {
    const units = new Map<string, ParsedFile>();
    const objects = new Map<string, { object: IstioObject; plural: string }>();
    const registry = kubernetesRegistry(
      { services: [...services.objects()], endpointSlices: [...slices.objects()], pods: [...pods.objects()], nodes: [...nodes.objects()] },
      options.domainSuffix,
    );
    // Services first, as istiod's aggregate registry lists the Kubernetes registry first.
    for (const [unit, entry] of registry.entries) units.set(unit, { resources: [entry], errors: [] });
    for (const { group, plural, informer } of istio) {
      for (const object of [...informer.objects()].sort(byCreation)) {
        const unit = `${plural}.${group}/${object.metadata.namespace}/${object.metadata.name}`;
        objects.set(unit, { object, plural });
        const parsed = parseObject(object, { dir: moduleDir, file: unit, document: unit, defaultNamespace: "default", credentials: "secrets" });
        units.set(unit, { resources: parsed.resource ? [parsed.resource] : [], installation: parsed.installation ? [parsed.installation] : [], errors: parsed.errors });
      }
    }
    const { mesh, errors } = assembler.update(units);

    meshSecrets = mesh;
    watchSecrets();
    mesh.credentials = credentials.credentials();

    const warningsText = registry.warnings.join("\n");
    if (warningsText !== lastWarnings) {
      lastWarnings = warningsText;
      for (const warning of registry.warnings) log(`config warning: ${warning}`);
    }
    const errorsText = JSON.stringify(errors);
    if (errorsText !== lastErrors) {
      lastErrors = errorsText;
      onErrors(errors);
    }
    if (status) {
      for (const [unit, { object, plural }] of objects) void status.report(object, plural, errors.filter((error) => error.file === unit));
    }
    const meshText = JSON.stringify(mesh);
    if (meshText !== lastMesh) {
      lastMesh = meshText;
      onChange(mesh, firstChangeAt);
    }
  };

  const all = [...istio.map(({ informer }) => informer), services, slices, pods, nodes];
  const ready = Promise.all(all.map((informer) => informer.synced)).then(async () => {
    synced = true;
    const missing = istio.filter(({ informer }) => !informer.listed).map(({ group, plural }) => `${plural}.${group}`);
    if (missing.length > 0) log(`kubernetes: not served by this API server (CRD not installed?), watched until it is: ${missing.join(", ")}`);
    debouncer.cancel();
    reload(Date.now());
    // The Secrets the first mesh names (DestinationRules' credentials) are listed before anything is served, so a
    // sidecar's first configuration has them; one the rules refuse (403, retried) holds the start up only so long.
    const waited = new AbortController();
    await Promise.race([credentials.synced(), sleep(CREDENTIALS_SYNC_WAIT_MS, undefined, { signal: waited.signal }).catch(() => {})]);
    waited.abort();
    reload(Date.now());
  });
  return {
    synced: ready,
    setGatewayNamespaces: (namespaces) => {
      const next = new Set(namespaces);
      if ([...next].sort().join() === [...gatewayNamespaces].sort().join()) return;
      gatewayNamespaces = next;
      watchSecrets();
    },
    close: async () => {
      debouncer.cancel();
      await Promise.all([...all.map((informer) => informer.stop()), credentials.stop()]);
    },
  };
}

/** The Secrets (`<namespace>/<name>`, sorted) the mesh's `credentialName`s name, each in the namespace where a proxy
 * that uses it looks, as istiod's SDS resolves `kubernetes://<name>` in the proxy's namespace: a Gateway server's in
 * the namespace of each connected gateway; a DestinationRule's SIMPLE or MUTUAL one, with a workloadSelector, in the
 * rule's own namespace (it selects workloads of that namespace only), else in each connected gateway's namespace
 * (sidecars ignore it: cluster_tls.go). A name for another namespace (`kubernetes://ns/name`) is never read: no proxy outside `ns` may
 * use it (pilot/pkg/xds/sds.go), and the control plane reads nothing it would not serve. */
export function usedSecrets(mesh: Pick<MeshConfig, "gateways" | "destinationRules">, gatewayNamespaces: Iterable<string>): string[] {
  const gateways = [...gatewayNamespaces];
  const secrets = new Set<string>();
  const add = (credentialName: string, namespaces: string[]) => {
    const reference = credentialReference(credentialName);
    for (const namespace of namespaces) if (reference.namespace === undefined || reference.namespace === namespace) secrets.add(`${namespace}/${reference.name}`);
  };
  for (const gateway of mesh.gateways) for (const server of gateway.spec.servers) if (server.tls?.credentialName) add(server.tls.credentialName, gateways);
  for (const rule of mesh.destinationRules) {
    const policies = [rule.spec.trafficPolicy, ...(rule.spec.trafficPolicy?.portLevelSettings ?? []), ...(rule.spec.subsets ?? []).flatMap((subset) => [subset.trafficPolicy, ...(subset.trafficPolicy?.portLevelSettings ?? [])])];
    for (const tls of policies.map((policy) => policy?.tls)) {
      if (!tls?.credentialName || (tls.mode !== "SIMPLE" && tls.mode !== "MUTUAL")) continue;
      add(tls.credentialName, rule.spec.workloadSelector ? [rule.namespace] : gateways);
    }
  }
  return [...secrets].sort();
}

/** Istio orders configuration by creation time, then namespace and name (the older of two conflicting objects wins):
 * every replica sees the same order. */
function byCreation(a: IstioObject & KubernetesObject, b: IstioObject & KubernetesObject): number {
  const time = (object: KubernetesObject) => new Date(object.metadata?.creationTimestamp ?? 0).getTime();
  const key = (object: IstioObject) => `${object.metadata.namespace}/${object.metadata.name}`;
  return time(a) - time(b) || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}
