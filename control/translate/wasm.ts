// WasmPlugins -> HTTP filters whose configuration arrives by ECDS, as Istio does
// (pilot/pkg/networking/core/extension/wasmplugin.go): the listener names the filter
// `extensions.istio.io/wasmplugin/<namespace>.<name>` and a TypedExtensionConfig of the same name carries the Wasm
// filter, whose module Envoy fetches from the control plane's module server, pinned by sha256.
import type { MeshConfig } from "../sources/index.js";
import type { WasmPlugin } from "../sources/model.js";
import { WASM_PHASES } from "../sources/schema/index.js";
import type { TranslationContext, XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, socketAddress, typed } from "./envoy.js";

const WASM_FILTER_TYPE = "envoy.extensions.filters.http.wasm.v3.Wasm";

/** WasmPlugin failStrategy -> envoy.extensions.wasm.v3.FailurePolicy, as istiod maps it for proxies 1.25+
 * (pilot/pkg/model/extensions.go; `fail_open` is deprecated). FAIL_RELOAD: Envoy creates a new plugin instance for
 * the next request after a runtime error (a trap), with a 1 s base backoff; other failures fail closed
 * (envoy/extensions/wasm/v3/wasm.proto). */
const FAILURE_POLICY = { FAIL_CLOSE: "FAIL_CLOSED", FAIL_OPEN: "FAIL_OPEN", FAIL_RELOAD: "FAIL_RELOAD" } as const;
const RBAC_FILTER_TYPE = "envoy.extensions.filters.http.rbac.v3.RBAC";

/** What a plugin's ECDS resource holds while its module is not there (an image not pulled yet, or not pullable), as
 * istio-agent does when its fetch fails (istio/istio pkg/wasm/convert.go): an RBAC filter that lets every request
 * through for FAIL_OPEN, and one that denies every request (403) otherwise. Envoy gets an answer either way, so a
 * listener never waits for a module; the listener's filter accepts both types, so the module later replaces the
 * stand-in by ECDS alone. */
function standIn(failStrategy: WasmPlugin["spec"]["failStrategy"]): Record<string, unknown> {
  return failStrategy === "FAIL_OPEN"
    ? typed(RBAC_FILTER_TYPE, { rules_stat_prefix: "wasm-default-allow" })
    : typed(RBAC_FILTER_TYPE, { rules: {}, rules_stat_prefix: "wasm-default-deny" });
}

export interface WasmOutput {
  /** Entries for the HTTP connection manager's http_filters, in order, before the router. */
  httpFilters: Record<string, unknown>[];
  /** The phase of each entry of httpFilters (AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE), where Istio puts the
   * authentication and authorization filters between them (http-filters.ts). */
  phases: string[];
  extensionConfigs: XdsResource[];
  /** The cluster for the module server, when any plugin applies. */
  moduleCluster?: XdsResource;
}

export function filterName(plugin: WasmPlugin): string {
  return `extensions.istio.io/wasmplugin/${plugin.namespace}.${plugin.name}`;
}

export function buildWasmPlugins(mesh: MeshConfig, context: TranslationContext): WasmOutput {
  const plugins = mesh.wasmPlugins
    .filter((plugin) => Object.entries(plugin.spec.selector?.matchLabels ?? {}).every(([k, v]) => context.proxy.labels[k] === v))
    .map((plugin) => ({ plugin, module: context.module(plugin.spec.url, `WasmPlugin/${plugin.namespace}/${plugin.name}`) }))
    .sort((a, b) => order(a.plugin, b.plugin));

  const out: WasmOutput = { httpFilters: [], phases: [], extensionConfigs: [] };
  for (const { plugin, module } of plugins) {
    const name = filterName(plugin);
    out.httpFilters.push({ name, config_discovery: { config_source: ADS_CONFIG_SOURCE, type_urls: [WASM_FILTER_TYPE, RBAC_FILTER_TYPE].map((type) => `type.googleapis.com/${type}`) } });
    out.phases.push(plugin.spec.phase ?? "UNSPECIFIED_PHASE");
    if (!module) {
      out.extensionConfigs.push({ name, body: { name, typed_config: standIn(plugin.spec.failStrategy) } });
      continue;
    }
    const config: Record<string, unknown> = {
      name: `${plugin.namespace}.${plugin.name}`,
      ...(plugin.spec.pluginName ? { root_id: plugin.spec.pluginName } : {}),
      vm_config: {
        // One VM per plugin: with remote code, Envoy 1.40 otherwise let plugins of different modules share the VM
        // of whichever module loaded first (seen in the demo: cohort-router's config reached b3-propagation).
        vm_id: `${plugin.namespace}.${plugin.name}`,
        runtime: "envoy.wasm.runtime.v8",
        code: {
          remote: {
            http_uri: { uri: module.uri, cluster: context.moduleCluster.name, timeout: "10s" },
            sha256: module.sha256,
            retry_policy: { num_retries: 3 },
          },
        },
      },
      failure_policy: FAILURE_POLICY[plugin.spec.failStrategy ?? "FAIL_CLOSE"],
    };
    if (plugin.spec.pluginConfig) {
      config.configuration = typed("google.protobuf.StringValue", { value: JSON.stringify(plugin.spec.pluginConfig) });
    }
    out.extensionConfigs.push({ name, body: { name, typed_config: typed(WASM_FILTER_TYPE, { config }) } });
  }
  if (plugins.some(({ module }) => module)) {
    const { name, host, port } = context.moduleCluster;
    out.moduleCluster = {
      name,
      body: {
        name,
        type: "STATIC",
        connect_timeout: "5s",
        load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(host, port) } }] }] },
      },
    };
  }
  return out;
}

/** Istio's order: by phase (AUTHN, AUTHZ, STATS, then unspecified, just before the router), then higher priority
 * first, then namespace and name (Istio breaks ties by creation time, which files do not have). */
function order(a: WasmPlugin, b: WasmPlugin): number {
  const phase = (p: WasmPlugin) => WASM_PHASES.indexOf(p.spec.phase ?? "UNSPECIFIED_PHASE");
  return (
    phase(a) - phase(b) ||
    (b.spec.priority ?? 0) - (a.spec.priority ?? 0) ||
    `${a.namespace}.${a.name}`.localeCompare(`${b.namespace}.${b.name}`)
  );
}
