// WasmPlugins and TrafficExtensions -> HTTP filters, as istiod makes them (pilot/pkg/networking/core/extension/,
// pilot/pkg/model/extensions.go):
// - Wasm: the listener names the filter `extensions.istio.io/wasmplugin/<ns>.<name>` (or `.../trafficextension/...`)
//   and a TypedExtensionConfig of that name, sent by ECDS, carries the Wasm filter, whose module Envoy fetches from
//   the control plane's module server, pinned by sha256;
// - Lua (TrafficExtension): the filter is configured in place (istiod inlines Lua; nothing to fetch).
// Both kinds share one order: phase (AUTHN, AUTHZ, STATS, then unspecified, just before the router), then higher
// priority first (unset after every set one: istiod's sortByPriority), then name and namespace (istiod first sorts
// by creation time, which files do not have; Istio translates each WasmPlugin into a TrafficExtension).
import type { MeshConfig } from "../sources/index.js";
import type { TrafficExtension, WasmPlugin } from "../sources/model.js";
import { TRAFFIC_EXTENSION_PHASES, WASM_PHASES, type wasmModuleFields } from "../sources/schema/index.js";
import type { ProxyIdentity, ServedModule, TranslationContext, XdsResource } from "../resources.js";
import type { z } from "zod";
import { attaches } from "./attachment.js";
import { ADS_CONFIG_SOURCE, inboundListener, socketAddress, typed } from "./envoy.js";

const WASM_FILTER_TYPE = "envoy.extensions.filters.http.wasm.v3.Wasm";
const WASM_NETWORK_FILTER_TYPE = "envoy.extensions.filters.network.wasm.v3.Wasm";
const LUA_FILTER_TYPE = "envoy.extensions.filters.http.lua.v3.Lua";
const RBAC_FILTER_TYPE = "envoy.extensions.filters.http.rbac.v3.RBAC";

/** failStrategy -> envoy.extensions.wasm.v3.FailurePolicy, as istiod maps it for proxies 1.25+
 * (pilot/pkg/model/extensions.go; `fail_open` is deprecated). FAIL_RELOAD: Envoy creates a new plugin instance for
 * the next request after a runtime error (a trap), with a 1 s base backoff; other failures fail closed
 * (envoy/extensions/wasm/v3/wasm.proto). */
const FAILURE_POLICY = { FAIL_CLOSE: "FAIL_CLOSED", FAIL_OPEN: "FAIL_OPEN", FAIL_RELOAD: "FAIL_RELOAD" } as const;

type WasmModuleSpec = z.infer<z.ZodObject<typeof wasmModuleFields>>;

/** What a Wasm extension's ECDS resource holds while its module is not there (an image not pulled yet, or not
 * pullable), as istio-agent does when its fetch fails (istio/istio pkg/wasm/convert.go): an RBAC filter that lets
 * every request through for FAIL_OPEN, and one that denies every request (403) otherwise. Envoy gets an answer either
 * way, so a listener never waits for a module; the listener's filter accepts both types, so the module later replaces
 * the stand-in by ECDS alone. */
function standIn(failStrategy: WasmModuleSpec["failStrategy"]): Record<string, unknown> {
  return failStrategy === "FAIL_OPEN"
    ? typed(RBAC_FILTER_TYPE, { rules_stat_prefix: "wasm-default-allow" })
    : typed(RBAC_FILTER_TYPE, { rules: {}, rules_stat_prefix: "wasm-default-deny" });
}
type TrafficSelector = NonNullable<TrafficExtension["spec"]["match"]>[number];

export interface ExtensionOutput {
  /** Entries for the HTTP connection manager's http_filters, in order, before the router. */
  httpFilters: Record<string, unknown>[];
  /** The phase of each entry of httpFilters (AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE), where Istio puts the
   * authentication and authorization filters between them (http-filters.ts). */
  phases: string[];
  extensionConfigs: XdsResource[];
  /** The cluster for the module server, when a Wasm extension's module is served. */
  moduleCluster?: XdsResource;
  /** Drops from each listener the filters of extensions whose `match` (traffic selectors) it does not meet. */
  restrict(listeners: XdsResource[]): XdsResource[];
}

/** One extension that applies to the proxy, either kind. */
interface Extension {
  filterName: string;
  /** `<namespace>.<name>`: the plugin and VM name in Envoy. */
  id: string;
  /** `<Kind>/<namespace>/<name>`, for the module server's log of who asked for a module. */
  owner: string;
  name: string;
  namespace: string;
  phase: number;
  priority?: number;
  /** `module` undefined: not there (yet); the extension's failStrategy stand-in goes by ECDS instead. */
  wasm?: { spec: WasmModuleSpec; module?: ServedModule };
  lua?: string;
  match?: TrafficSelector[];
}

/** An extension before its module is known. */
type Candidate = Omit<Extension, "wasm"> & { wasm?: { spec: WasmModuleSpec } };

export function buildExtensions(mesh: MeshConfig, context: TranslationContext): ExtensionOutput {
  const extensions = [...wasmPlugins(mesh, context.proxy), ...trafficExtensions(mesh, context.proxy)]
    .map((extension): Extension => (extension.wasm ? { ...extension, wasm: { ...extension.wasm, module: context.module(extension.wasm.spec.url, extension.owner) } } : { ...extension, wasm: undefined }))
    .sort(order);

  const out: ExtensionOutput = { httpFilters: [], phases: [], extensionConfigs: [], restrict: (listeners) => restrict(listeners, extensions, context.proxy) };
  for (const extension of extensions) {
    const name = extension.filterName;
    out.phases.push(WASM_PHASES[extension.phase]!);
    if (extension.lua !== undefined) {
      out.httpFilters.push({ name, typed_config: typed(LUA_FILTER_TYPE, { default_source_code: { inline_string: extension.lua } }) });
      continue;
    }
    const wasm = extension.wasm!;
    out.httpFilters.push(discoveredFilter(name, [WASM_FILTER_TYPE, RBAC_FILTER_TYPE]));
    const typedConfig = wasm.module ? typed(WASM_FILTER_TYPE, { config: wasmConfig(extension, wasm.module, context) }) : standIn(wasm.spec.failStrategy);
    out.extensionConfigs.push({ name, body: { name, typed_config: typedConfig } });
  }
  if (extensions.some((extension) => extension.wasm?.module)) out.moduleCluster = moduleCluster(context);
  return out;
}

/** The cluster through which proxies fetch modules from the control plane's module server. */
export function moduleCluster(context: TranslationContext): XdsResource {
  const { name, host, port } = context.moduleCluster;
  return {
    name,
    body: {
      name,
      type: "STATIC",
      connect_timeout: "5s",
      load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(host, port) } }] }] },
    },
  };
}

function discoveredFilter(name: string, types: string[]): Record<string, unknown> {
  return { name, config_discovery: { config_source: ADS_CONFIG_SOURCE, type_urls: types.map((type) => `type.googleapis.com/${type}`) } };
}

/** A Wasm filter of the control plane's own (not a user's extension, e.g. istio-stats), HTTP or network: filter
 * `name` whose configuration (a TypedExtensionConfig of the same name) comes by ECDS, the module served and pinned by
 * sha256. Filters of one module with the same `vmId` share a VM in Envoy (same vm_id, code and vm configuration). */
export function wasmFilter(
  name: string,
  context: TranslationContext,
  options: { module: ServedModule; failurePolicy: (typeof FAILURE_POLICY)[keyof typeof FAILURE_POLICY]; configuration?: unknown; network?: boolean; vmId?: string },
): { filter: Record<string, unknown>; extensionConfig: XdsResource } {
  const type = options.network ? WASM_NETWORK_FILTER_TYPE : WASM_FILTER_TYPE;
  const config = {
    name,
    vm_config: { vm_id: options.vmId ?? name, runtime: "envoy.wasm.runtime.v8", code: remoteCode(options.module, context) },
    failure_policy: options.failurePolicy,
    ...(options.configuration !== undefined ? { configuration: typed("google.protobuf.StringValue", { value: JSON.stringify(options.configuration) }) } : {}),
  };
  return { filter: discoveredFilter(name, [type]), extensionConfig: { name, body: { name, typed_config: typed(type, { config }) } } };
}

function remoteCode(module: ServedModule, context: TranslationContext): Record<string, unknown> {
  return {
    remote: {
      http_uri: { uri: module.uri, cluster: context.moduleCluster.name, timeout: "10s" },
      sha256: module.sha256,
      retry_policy: { num_retries: 3 },
    },
  };
}

/** WasmPlugins whose `selector.matchLabels` the proxy has; namespaces do not scope them (a documented difference
 * from Istio, which the demo's WasmPlugins rely on: control/translate/README.md). */
function wasmPlugins(mesh: MeshConfig, proxy: ProxyIdentity): Candidate[] {
  return mesh.wasmPlugins
    .filter((plugin: WasmPlugin) => Object.entries(plugin.spec.selector?.matchLabels ?? {}).every(([k, v]) => proxy.labels[k] === v))
    .map((plugin) => ({
      ...identity(plugin),
      phase: TRAFFIC_EXTENSION_PHASES.indexOf(plugin.spec.phase === "UNSPECIFIED_PHASE" || !plugin.spec.phase ? "UNSPECIFIED" : plugin.spec.phase),
      priority: plugin.spec.priority,
      wasm: { spec: plugin.spec },
    }));
}

/** TrafficExtensions of the proxy's namespace or the root namespace, by selector or targetRefs (istiod's
 * TrafficExtensionsByListenerInfo). */
function trafficExtensions(mesh: MeshConfig, proxy: ProxyIdentity): Candidate[] {
  return mesh.trafficExtensions
    .filter((extension) => attaches({ namespace: extension.namespace, selector: extension.spec.selector?.matchLabels, targetRefs: extension.spec.targetRefs }, proxy, mesh.rootNamespace))
    .map((extension) => ({
      ...identity(extension),
      phase: TRAFFIC_EXTENSION_PHASES.indexOf(extension.spec.phase ?? "UNSPECIFIED"),
      priority: extension.spec.priority,
      ...(extension.spec.wasm ? { wasm: { spec: extension.spec.wasm } } : { lua: extension.spec.lua!.inlineCode }),
      match: extension.spec.match,
    }));
}

function identity(resource: { kind: string; name: string; namespace: string }) {
  return {
    filterName: `extensions.istio.io/${resource.kind.toLowerCase()}/${resource.namespace}.${resource.name}`,
    id: `${resource.namespace}.${resource.name}`,
    owner: `${resource.kind}/${resource.namespace}/${resource.name}`,
    name: resource.name,
    namespace: resource.namespace,
  };
}

function order(a: Extension, b: Extension): number {
  const priority = (extension: Extension) => extension.priority ?? -Infinity;
  return a.phase - b.phase || priority(b) - priority(a) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0);
}

/** envoy.extensions.wasm.v3.PluginConfig (istiod's buildWasmConfig and buildVMConfig). */
function wasmConfig(extension: Extension, module: ServedModule, context: TranslationContext): Record<string, unknown> {
  const { spec } = extension.wasm!;
  const env = spec.vmConfig?.env ?? [];
  const inline = env.filter((variable) => (variable.valueFrom ?? "INLINE") === "INLINE");
  const host = env.filter((variable) => variable.valueFrom === "HOST");
  return {
    name: extension.id,
    ...(spec.pluginName ? { root_id: spec.pluginName } : {}),
    vm_config: {
      // One VM per plugin: with remote code, Envoy 1.40 otherwise let plugins of different modules share the VM
      // of whichever module loaded first (seen in the demo: cohort-router's config reached b3-propagation).
      vm_id: extension.id,
      runtime: "envoy.wasm.runtime.v8",
      code: remoteCode(module, context),
      ...(env.length > 0
        ? {
            environment_variables: {
              ...(inline.length > 0 ? { key_values: Object.fromEntries(inline.map((variable) => [variable.name, variable.value ?? ""])) } : {}),
              ...(host.length > 0 ? { host_env_keys: host.map((variable) => variable.name) } : {}),
            },
          }
        : {}),
    },
    failure_policy: FAILURE_POLICY[spec.failStrategy ?? "FAIL_CLOSE"],
    ...(spec.pluginConfig ? { configuration: typed("google.protobuf.StringValue", { value: JSON.stringify(spec.pluginConfig) }) } : {}),
  };
}

/** istiod's matchTrafficExtensionSelectors: a listener (or, for the sidecar's virtual listeners, a filter chain) is
 * CLIENT traffic on a gateway and a sidecar's outbound side, SERVER on its inbound side, and has the port it listens
 * on (or its chain's destination_port); an extension runs there when one of its selectors allows both. */
function restrict(listeners: XdsResource[], extensions: Extension[], proxy: ProxyIdentity): XdsResource[] {
  const selective = extensions.filter((extension) => extension.match && extension.match.length > 0);
  if (selective.length === 0) return listeners;
  return listeners.map((listener) => {
    const body = structuredClone(listener.body) as Record<string, any>; // Envoy JSON, edited in place
    const mode = proxy.role === "sidecar" && inboundListener(body) ? "SERVER" : "CLIENT";
    for (const chain of [...(body.filter_chains ?? []), ...(body.default_filter_chain ? [body.default_filter_chain] : [])]) {
      const port: number = chain.filter_chain_match?.destination_port ?? body.address?.socket_address?.port_value ?? 0;
      const excluded = new Set(selective.filter((extension) => !extension.match!.some((selector) => selects(selector, mode, port))).map((extension) => extension.filterName));
      for (const filter of chain.filters ?? []) {
        const manager = filter.typed_config;
        if (manager?.http_filters) manager.http_filters = manager.http_filters.filter((httpFilter: { name: string }) => !excluded.has(httpFilter.name));
      }
    }
    return { name: listener.name, body };
  });
}

function selects(selector: TrafficSelector, mode: "CLIENT" | "SERVER", port: number): boolean {
  const modeMatches = !selector.mode || selector.mode === "UNDEFINED" || selector.mode === "CLIENT_AND_SERVER" || selector.mode === mode;
  const ports = selector.ports ?? [];
  return modeMatches && (ports.length === 0 || ports.some((selected) => selected.number === port));
}
