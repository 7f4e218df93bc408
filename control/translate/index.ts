// Istio resources -> the Envoy resources of one proxy. Pure: the same mesh and context give the same resources,
// which is what the golden tests in test/translate/ rely on.
import type { MeshConfig } from "../sources/index.js";
import { emptyResources, type ProxyResources, type TranslationContext, TypeUrl } from "../resources.js";
import { buildClusters } from "./clusters.js";
import { applyEnvoyFilters, type PatchEffect } from "./envoyfilter/index.js";
import { buildGatewayListeners } from "./gateway.js";
import { buildSidecarListeners } from "./listeners.js";
import { Registry } from "./registry.js";
import { buildWasmPlugins } from "./wasm.js";

export type { PatchEffect } from "./envoyfilter/index.js";

export function translate(mesh: MeshConfig, context: TranslationContext): ProxyResources {
  return translateWithEffects(mesh, context).resources;
}

/** translate(), and what each EnvoyFilter patch did (for validation and `skiff proxy-config diff`). */
export function translateWithEffects(mesh: MeshConfig, context: TranslationContext): { resources: ProxyResources; effects: PatchEffect[] } {
  const registry = new Registry(mesh);
  const wasm = buildWasmPlugins(mesh, context);
  const { clusters, endpoints } = buildClusters(registry);
  const { listeners, routes, secrets } =
    context.proxy.role === "gateway"
      ? buildGatewayListeners(mesh, registry, context.proxy, wasm.httpFilters)
      : { ...buildSidecarListeners(mesh, registry, wasm.httpFilters), secrets: [] };

  const resources = emptyResources();
  resources[TypeUrl.Cluster] = wasm.moduleCluster ? [...clusters, wasm.moduleCluster] : clusters;
  resources[TypeUrl.ClusterLoadAssignment] = endpoints;
  resources[TypeUrl.ExtensionConfig] = wasm.extensionConfigs;
  resources[TypeUrl.Secret] = secrets;
  resources[TypeUrl.Listener] = listeners;
  resources[TypeUrl.RouteConfiguration] = routes;
  return applyEnvoyFilters(mesh, context.proxy, resources);
}
