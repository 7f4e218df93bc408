// Istio resources -> the Envoy resources of one proxy. Pure: the same mesh and context give the same resources,
// which is what the golden tests in test/translate/ rely on.
import type { MeshConfig } from "../sources/index.js";
import { emptyResources, type ProxyIdentity, type ProxyResources, type TranslationContext, TypeUrl } from "../resources.js";
import { buildClusters } from "./clusters.js";
import { applyEnvoyFilters, type PatchEffect } from "./envoyfilter/index.js";
import { buildGatewayListeners, selectedGateways } from "./gateway.js";
import { buildSidecarListeners } from "./listeners.js";
import { Registry } from "./registry.js";
import { buildWasmPlugins } from "./wasm.js";
import { workloadHttpFilters } from "./http-filters.js";
import { workloadPolicies } from "./authz.js";

export type { PatchEffect } from "./envoyfilter/index.js";

export function translate(mesh: MeshConfig, context: TranslationContext): ProxyResources {
  return translateWithEffects(mesh, context).resources;
}

/** translate(), and what each EnvoyFilter patch did (for validation and `skiff proxy-config diff`). */
export function translateWithEffects(mesh: MeshConfig, context: TranslationContext): { resources: ProxyResources; effects: PatchEffect[] } {
  const registry = new Registry(mesh, context.proxy);
  const wasm = buildWasmPlugins(mesh, context);
  const { clusters, endpoints } = buildClusters(registry);
  const { listeners, routes, secrets } =
    context.proxy.role === "gateway"
      ? buildGatewayListeners(mesh, registry, context.proxy, workloadHttpFilters(mesh, context, wasm))
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

/** What a user should know about a proxy's translation that the resources do not say: the control plane logs these
 * and the status view (`skiff proxy-status`) shows them beside the proxy. */
export function translationNotes(mesh: MeshConfig, proxy: ProxyIdentity): string[] {
  const notes: string[] = [];
  if (proxy.role === "gateway" && selectedGateways(mesh, proxy).length === 0) {
    const selectors = mesh.gateways.map((gateway) => `${gateway.namespace}/${gateway.name} selects ${labelText(gateway.spec.selector)}`);
    notes.push(
      `no Gateway selects labels ${labelText(proxy.labels)}, so this gateway gets no listeners` +
        (selectors.length > 0 ? ` (${selectors.join("; ")})` : " (the config has no Gateway)"),
    );
  }
  if (proxy.role === "sidecar" && proxy.ips.length === 0) {
    const policies = [...workloadPolicies(mesh.authorizationPolicies, mesh, proxy), ...workloadPolicies(mesh.requestAuthentications, mesh, proxy)];
    for (const policy of policies) {
      notes.push(
        `${policy.kind} ${policy.namespace}/${policy.name} applies to this workload's inbound traffic; this sidecar is on loopback ` +
          "(no traffic capture), so it has no inbound listener and the policy has no effect here",
      );
    }
    for (const service of new Registry(mesh, proxy).services()) {
      if (service.entry.spec.resolution !== "NONE") continue;
      notes.push(
        `${service.host} (ServiceEntry ${service.entry.namespace}/${service.entry.name}) has resolution NONE: traffic goes on to the address the application dialed, ` +
          "which only a sidecar that captures traffic knows; this sidecar is on loopback, so it gets no listener for it",
      );
    }
  }
  return notes;
}

function labelText(labels: Record<string, string>): string {
  return `{${Object.entries(labels).map(([key, value]) => `${key}=${value}`).join(",")}}`;
}
