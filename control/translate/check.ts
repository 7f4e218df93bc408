// Checks of the config folder that need translation: each EnvoyFilter is applied to the proxies it selects, as far
// as the folder describes them, and what it produces must encode as Envoy's messages. `skiff validate` and the
// control plane's config load both run it (through the `check` of control/sources), so a patch that cannot work is
// refused there, naming the EnvoyFilter and the patch, and never reaches a proxy.
//
// The proxies: an EnvoyFilter's namespace (any namespace, for one in the root namespace), its workloadSelector
// labels (or the Gateway API label its targetRefs name); as a sidecar (with and without traffic capture) when a
// patch's context is SIDECAR_* or ANY, and as a gateway when it is GATEWAY or ANY, once per Gateway whose selector
// those labels do not contradict (a gateway proxy has listeners only for the Gateways that select it).
import { encodeResource, ResourceEncodingError } from "../protos/encode.js";
import { type ProxyIdentity, type ProxyResources, type TranslationContext, translationKey, TypeUrl } from "../resources.js";
import { type ConfigError, type MeshConfig, moduleSha256, wasmModules } from "../sources/index.js";
import type { EnvoyFilter } from "../sources/model.js";
import { GATEWAY_NAME_LABEL } from "./attachment.js";
import { filterAttaches, type PatchEffect } from "./envoyfilter/index.js";
import { translateWithEffects } from "./index.js";

export interface TranslationCheck {
  errors: ConfigError[];
  /** Patches that change nothing in any proxy they select (Istio applies them silently to nothing). */
  warnings: ConfigError[];
}

/** The `check` for control/sources: errors only. */
export function checkTranslation(mesh: MeshConfig): ConfigError[] {
  return checkEnvoyFilters(mesh).errors;
}

/** The proxies the EnvoyFilters of `mesh` select, as far as the folder describes them (see the top of this file). */
export function checkedProxies(mesh: MeshConfig): ProxyIdentity[] {
  const proxies = new Map<string, ProxyIdentity>();
  for (const filter of mesh.envoyFilters) {
    for (const proxy of proxiesSelectedBy(filter, mesh)) proxies.set(translationKey(proxy), proxy);
  }
  return [...proxies.values()];
}

export function checkEnvoyFilters(mesh: MeshConfig): TranslationCheck {
  const out: TranslationCheck = { errors: [], warnings: [] };
  if (mesh.envoyFilters.length === 0) return out;
  const applied = new Set<string>();
  const reported = new Set<string>();
  // One error per patch: the first proxy it fails on says why (a sidecar fails alike with and without capture).
  const error = (filter: EnvoyFilter, index: number, message: string) => {
    const key = `${filter.namespace}/${filter.name}/${index}`;
    if (reported.has(key)) return;
    reported.add(key);
    out.errors.push({ file: filter.file, resource: `EnvoyFilter ${filter.namespace}/${filter.name}`, field: `spec.configPatches[${index}]`, message });
  };
  for (const proxy of checkedProxies(mesh)) {
    const { resources, effects } = translateWithEffects(mesh, checkContext(mesh, proxy));
    for (const effect of effects) {
      const key = `${effect.patch.filter.namespace}/${effect.patch.filter.name}/${effect.patch.index}`;
      if (effect.problem) error(effect.patch.filter, effect.patch.index, `on the ${effect.kind} ${effect.name} of ${describe(proxy)}: ${effect.problem}`);
      else applied.add(key);
    }
    for (const failure of encodingFailures(resources, effects)) {
      error(failure.effect.patch.filter, failure.effect.patch.index, `makes the ${failure.effect.kind} ${failure.effect.name} of ${describe(proxy)} invalid: ${failure.message}`);
    }
  }
  for (const filter of mesh.envoyFilters) {
    filter.spec.configPatches.forEach((_patch, index) => {
      if (applied.has(`${filter.namespace}/${filter.name}/${index}`) || reported.has(`${filter.namespace}/${filter.name}/${index}`)) return;
      out.warnings.push({
        file: filter.file,
        resource: `EnvoyFilter ${filter.namespace}/${filter.name}`,
        field: `spec.configPatches[${index}]`,
        message: "matches nothing in the configuration Skiff generates for the proxies this EnvoyFilter selects",
      });
    });
  }
  return out;
}

function proxiesSelectedBy(filter: EnvoyFilter, mesh: MeshConfig): ProxyIdentity[] {
  const labels = { ...(filter.spec.workloadSelector?.labels ?? {}) };
  const gatewayRef = filter.spec.targetRefs?.[0]?.name;
  if (gatewayRef) labels[GATEWAY_NAME_LABEL] = gatewayRef;
  const contexts = new Set(filter.spec.configPatches.map((patch) => (patch.applyTo === "EXTENSION_CONFIG" ? "ANY" : (patch.match?.context ?? "ANY"))));
  const base = { nodeId: "skiff-validate", labels, namespace: filter.namespace, ips: [] };
  const proxies: ProxyIdentity[] = [];
  // A sidecar's listeners depend on its interception mode, which the folder does not say: check both layouts.
  if (!gatewayRef && (contexts.has("ANY") || contexts.has("SIDECAR_INBOUND") || contexts.has("SIDECAR_OUTBOUND"))) {
    proxies.push({ ...base, role: "sidecar", interceptionMode: "NONE" }, { ...base, role: "sidecar", interceptionMode: "REDIRECT" });
  }
  if (contexts.has("ANY") || contexts.has("GATEWAY")) {
    const gateways = mesh.gateways.filter((gateway) => Object.entries(gateway.spec.selector).every(([key, value]) => labels[key] === undefined || labels[key] === value));
    for (const gateway of gateways) proxies.push({ ...base, role: "gateway", labels: { ...gateway.spec.selector, ...labels } });
    if (gateways.length === 0) proxies.push({ ...base, role: "gateway" });
  }
  return proxies.filter((proxy) => filterAttaches(filter, proxy, mesh.rootNamespace));
}

/** Modules as the control plane would serve them (translation needs their sha256, which the folder's load computed). */
export function checkContext(mesh: MeshConfig, proxy: ProxyIdentity): TranslationContext {
  return {
    proxy,
    moduleCluster: { name: "skiff-modules", host: "127.0.0.1", port: 1 },
    module: (url) => {
      const module = wasmModules(mesh).find((candidate) => candidate.url === url);
      return module && { uri: `http://127.0.0.1:1/modules/${moduleSha256(module)}.wasm`, sha256: moduleSha256(module), size: 0 };
    },
  };
}

const KIND_TYPE: Record<PatchEffect["kind"], TypeUrl> = {
  listener: TypeUrl.Listener,
  route: TypeUrl.RouteConfiguration,
  cluster: TypeUrl.Cluster,
  "extension config": TypeUrl.ExtensionConfig,
};

/** Each patched resource that does not encode, blamed on the last patch that changed it. */
function encodingFailures(resources: ProxyResources, effects: PatchEffect[]): Array<{ effect: PatchEffect; message: string }> {
  const last = new Map<string, PatchEffect>();
  for (const effect of effects) if (!effect.problem) last.set(`${effect.kind}\n${effect.name}`, effect);
  const failures: Array<{ effect: PatchEffect; message: string }> = [];
  for (const effect of last.values()) {
    const type = KIND_TYPE[effect.kind];
    const resource = resources[type].find((candidate) => candidate.name === effect.name);
    if (!resource) continue; // removed
    try {
      encodeResource(type, resource);
    } catch (error) {
      failures.push({ effect, message: error instanceof ResourceEncodingError ? `${error.field ? `${error.field}: ` : ""}${error.detail}` : (error as Error).message });
    }
  }
  return failures;
}

export function describe(proxy: ProxyIdentity): string {
  const labels = Object.entries(proxy.labels).map(([key, value]) => `${key}=${value}`).join(",");
  return `a ${proxy.role} in namespace ${proxy.namespace}${labels ? ` labelled ${labels}` : ""}`;
}
