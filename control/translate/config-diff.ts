// What the EnvoyFilters and extensions (WasmPlugins, TrafficExtensions) that apply to a proxy change in its Envoy
// configuration, resource by resource (`skiff proxy-config diff`, beyond istioctl, which shows only the result): the
// proxy's resources translated without them and with them, and, for each resource that differs, what changed it.
import type { MeshConfig } from "../sources/index.js";
import { type ProxyResources, type TranslationContext, TypeUrl } from "../resources.js";
import { translateWithEffects } from "./index.js";

/** The resource type each kind of EnvoyFilter effect (envoyfilter/select.ts ResourceKind) names a resource of. */
const KIND_TYPES: Record<string, TypeUrl> = {
  listener: TypeUrl.Listener,
  route: TypeUrl.RouteConfiguration,
  cluster: TypeUrl.Cluster,
  "extension config": TypeUrl.ExtensionConfig,
};

export interface ResourceChange {
  type: TypeUrl;
  name: string;
  change: "added" | "removed" | "changed";
  /** The resource without the EnvoyFilters and extensions (absent when they added it). */
  before?: unknown;
  /** The resource the proxy gets (absent when they removed it). */
  after?: unknown;
  /** What changed it: `EnvoyFilter <ns>/<name> spec.configPatches[<i>] (<applyTo> <operation>)`, `WasmPlugin <ns>/<name>`,
   * `TrafficExtension <ns>/<name>`. */
  by: string[];
}

export function configDiff(mesh: MeshConfig, context: TranslationContext): ResourceChange[] {
  const plain = translateWithEffects({ ...mesh, envoyFilters: [], wasmPlugins: [], trafficExtensions: [] }, context).resources;
  const { resources, effects } = translateWithEffects(mesh, context);
  const patchesOf = (type: TypeUrl, name: string) =>
    effects
      .filter((effect) => !effect.problem && KIND_TYPES[effect.kind] === type && effect.name === name)
      .map(({ patch }) => `EnvoyFilter ${patch.filter.namespace}/${patch.filter.name} spec.configPatches[${patch.index}] (${patch.applyTo} ${patch.operation})`);
  const mentions = (body: unknown) => JSON.stringify(body ?? null);
  const everything = mentions(resources);
  // The extensions that apply to this proxy: those whose filter (named as translate/extensions.ts names it, which is
  // also the name of its ECDS resource) is in its resources.
  const extensions = [...mesh.wasmPlugins, ...mesh.trafficExtensions]
    .map((resource) => ({
      label: `${resource.kind} ${resource.namespace}/${resource.name}`,
      filterName: `"extensions.istio.io/${resource.kind.toLowerCase()}/${resource.namespace}.${resource.name}"`,
      wasm: resource.kind === "WasmPlugin" || "wasm" in (resource.spec as object),
    }))
    .filter(({ filterName }) => everything.includes(filterName));
  const changes: ResourceChange[] = [];
  for (const type of Object.values(TypeUrl)) {
    const before = byName(plain, type);
    const after = byName(resources, type);
    for (const name of new Set([...before.keys(), ...after.keys()])) {
      const [old, now] = [before.get(name), after.get(name)];
      if (old !== undefined && now !== undefined && JSON.stringify(old) === JSON.stringify(now)) continue;
      const by = [
        ...extensions
          .filter(({ filterName, wasm }) => mentions(now).includes(filterName) !== mentions(old).includes(filterName) || (wasm && type === TypeUrl.Cluster && name === context.moduleCluster?.name))
          .map(({ label }) => label),
        ...patchesOf(type, name),
      ];
      changes.push({ type, name, change: old === undefined ? "added" : now === undefined ? "removed" : "changed", ...(old !== undefined ? { before: old } : {}), ...(now !== undefined ? { after: now } : {}), by });
    }
  }
  return changes;
}

function byName(resources: ProxyResources, type: TypeUrl): Map<string, unknown> {
  return new Map(resources[type].map((resource) => [resource.name, resource.body]));
}
