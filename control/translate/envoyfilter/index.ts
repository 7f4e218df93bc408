// EnvoyFilters applied to the Envoy resources of one proxy, after translation, as istiod applies them while it
// generates (pilot/pkg/networking/core/envoyfilter/). Which patches apply and in what order: select.ts. Each resource
// is patched in the context istiod generates it in, which its name and direction tell: a gateway's resources are
// GATEWAY; a sidecar's inbound ones (`virtualInbound`, `traffic_direction: INBOUND`, `inbound|...` clusters and
// routes) SIDECAR_INBOUND, the rest SIDECAR_OUTBOUND.
import { type ProxyIdentity, type ProxyResources, TypeUrl, type XdsResource } from "../../resources.js";
import type { MeshConfig } from "../../sources/index.js";
import { inboundListener } from "../envoy.js";
import { patchClusters } from "./clusters.js";
import { patchListeners } from "./listeners.js";
import { patchRouteConfiguration } from "./routes.js";
import { type Json, type Patch, type PatchContext, type PatchReport, type ResourceKind, selectPatches } from "./select.js";

export { filterAttaches, patchLabel, type Patch, selectFilters } from "./select.js";

/** What one patch did to one resource. */
export interface PatchEffect {
  patch: Patch;
  kind: ResourceKind;
  /** The resource's name (for ADD, the added one's). */
  name: string;
  /** Set when the patch matched the resource but could not be applied to it (the resource is left as it was). */
  problem?: string;
}

/** Applies the EnvoyFilters that select `proxy` to its resources (the input is left untouched). */
export function applyEnvoyFilters(mesh: MeshConfig, proxy: ProxyIdentity, resources: ProxyResources): { resources: ProxyResources; effects: PatchEffect[] } {
  const patches = selectPatches(mesh, proxy);
  const effects: PatchEffect[] = [];
  if (patches.size === 0) return { resources, effects };
  const report: PatchReport = {
    applied: (patch, kind, name) => effects.push({ patch, kind, name }),
    problem: (patch, kind, name, problem) => effects.push({ patch, kind, name, problem }),
  };
  const gateway = proxy.role === "gateway";
  const addContexts: PatchContext[] = gateway ? ["GATEWAY"] : ["SIDECAR_OUTBOUND", "SIDECAR_INBOUND"];
  const contextOf = (inbound: boolean): PatchContext => (gateway ? "GATEWAY" : inbound ? "SIDECAR_INBOUND" : "SIDECAR_OUTBOUND");
  const bodies = (type: TypeUrl) => resources[type].map((resource) => structuredClone(resource.body) as Json);

  const out: ProxyResources = { ...resources };
  out[TypeUrl.Listener] = named(
    patchListeners(bodies(TypeUrl.Listener), (listener) => contextOf(inboundListener(listener)), addContexts, patches, report),
  );
  out[TypeUrl.RouteConfiguration] = named(
    bodies(TypeUrl.RouteConfiguration).map((route) => {
      patchRouteConfiguration(route, contextOf(String(route.name).startsWith("inbound|")), patches, report);
      return route;
    }),
  );
  out[TypeUrl.Cluster] = named(patchClusters(bodies(TypeUrl.Cluster), (cluster) => contextOf(String(cluster.name).startsWith("inbound|")), addContexts, patches, report));
  out[TypeUrl.ExtensionConfig] = [...resources[TypeUrl.ExtensionConfig], ...addedExtensionConfigs(out[TypeUrl.Listener], patches.get("EXTENSION_CONFIG") ?? [], report)];
  return { resources: out, effects };
}

function named(bodies: Json[]): XdsResource[] {
  return bodies.map((body) => ({ name: String(body.name ?? ""), body }));
}

/** EXTENSION_CONFIG ADDs land when a filter of the proxy's listeners asks for their name by ECDS (istiod's
 * InsertedExtensionConfigurations, for the names a proxy requests); context and match play no part. */
function addedExtensionConfigs(listeners: XdsResource[], patches: Patch[], report: PatchReport): XdsResource[] {
  if (patches.length === 0) return [];
  const requested = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === "object") {
      const object = node as Json;
      if (object.config_discovery && typeof object.name === "string") requested.add(object.name);
      Object.values(object).forEach(visit);
    }
  };
  listeners.forEach((listener) => visit(listener.body));
  return patches
    .filter((patch) => patch.operation === "ADD" && requested.has(String(patch.value!.name)))
    .map((patch) => {
      report.applied(patch, "extension config", String(patch.value!.name));
      return { name: String(patch.value!.name), body: structuredClone(patch.value!) };
    });
}
