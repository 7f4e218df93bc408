// Istio resources -> the Envoy resources of one proxy. Pure: the same mesh and context give the same resources,
// which is what the golden tests in test/translate/ rely on.
import type { MeshConfig } from "../sources/index.js";
import { emptyResources, type ProxyResources, type TranslationContext, TypeUrl } from "../resources.js";
import { buildClusters } from "./clusters.js";
import { applyClusterPatches } from "./envoyfilter.js";
import { buildGatewayListeners } from "./gateway.js";
import { buildSidecarListeners } from "./listeners.js";
import { Registry } from "./registry.js";
import { buildWasmPlugins } from "./wasm.js";

export function translate(mesh: MeshConfig, context: TranslationContext): ProxyResources {
  const registry = new Registry(mesh);
  const wasm = buildWasmPlugins(mesh, context);
  const { clusters, endpoints } = buildClusters(registry);
  const { listeners, routes, secrets } =
    context.proxy.role === "gateway"
      ? buildGatewayListeners(mesh, registry, context.proxy, wasm.httpFilters)
      : { ...buildSidecarListeners(mesh, registry, wasm.httpFilters), secrets: [] };

  const resources = emptyResources();
  resources[TypeUrl.Cluster] = applyClusterPatches(mesh, context.proxy, wasm.moduleCluster ? [...clusters, wasm.moduleCluster] : clusters);
  resources[TypeUrl.ClusterLoadAssignment] = endpoints;
  resources[TypeUrl.ExtensionConfig] = wasm.extensionConfigs;
  resources[TypeUrl.Secret] = secrets;
  resources[TypeUrl.Listener] = listeners;
  resources[TypeUrl.RouteConfiguration] = routes;
  return resources;
}
