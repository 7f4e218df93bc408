// The VirtualServices a proxy sees (Istio's SidecarScope / VirtualServicesForGateway, virtualservice_controller.go
// mergeVirtualServices): those with hosts exported to the proxy's namespace (`exportTo` unset or "*", "." for their
// own namespace, or the namespace named), with their `delegate` routes replaced by the delegate's routes merged under
// them. A delegate is a VirtualService without hosts, found by name in the namespace the route names (else the
// root's), and used only if it is exported to the root's namespace.
import type { MeshConfig } from "../sources/index.js";
import type { VirtualService } from "../sources/model.js";
import type { HttpMatch, HttpRoute, StringMatch } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { visibleIn } from "./hosts.js";
import type { Registry } from "./registry.js";

/** Without a proxy (mesh-wide checks), every VirtualService with hosts. */
export function visibleVirtualServices(mesh: MeshConfig, registry: Registry, proxy: ProxyIdentity | undefined): VirtualService[] {
  return mesh.virtualServices
    .filter((vs) => vs.spec.hosts.length > 0 && (!proxy || visibleIn(vs.spec.exportTo, vs.namespace, proxy.namespace)))
    .map((vs) => (vs.spec.http.some((http) => http.delegate) ? withDelegates(mesh, registry, vs) : vs));
}

function withDelegates(mesh: MeshConfig, registry: Registry, root: VirtualService): VirtualService {
  const http = root.spec.http.flatMap((route) => {
    if (!route.delegate) return [route];
    const delegate = findDelegate(mesh, root, route.delegate);
    if (!delegate) return [];
    // The delegate's destinations name hosts from its own namespace.
    return delegate.spec.http.map((leaf) => mergeRoute(route, resolveHosts(leaf, delegate.namespace, registry))).filter((merged) => merged !== undefined);
  });
  return { ...root, spec: { ...root.spec, http } };
}

/** The delegate a route names, if it exists, has no hosts and is exported to the root's namespace. */
export function findDelegate(mesh: MeshConfig, root: VirtualService, reference: { name: string; namespace?: string }): VirtualService | undefined {
  const namespace = reference.namespace ?? root.namespace;
  return mesh.virtualServices.find(
    (vs) => vs.name === reference.name && vs.namespace === namespace && vs.spec.hosts.length === 0 && visibleIn(vs.spec.exportTo, vs.namespace, root.namespace),
  );
}

function resolveHosts(route: HttpRoute, namespace: string, registry: Registry): HttpRoute {
  const resolve = <T extends { host: string }>(destination: T): T => ({ ...destination, host: registry.canonicalHost(destination.host, namespace) });
  return {
    ...route,
    ...(route.route ? { route: route.route.map((r) => ({ ...r, destination: resolve(r.destination) })) } : {}),
    ...(route.mirror ? { mirror: resolve(route.mirror) } : {}),
    ...(route.mirrors ? { mirrors: route.mirrors.map((m) => ({ ...m, destination: resolve(m.destination) })) } : {}),
  };
}

/** Istio's mergeHTTPRoute: the delegate's route under the root's matches (each pair that does not conflict), with
 * the root's settings where the delegate has none; a delegate route that conflicts with every root match is dropped. */
function mergeRoute(root: HttpRoute, leaf: HttpRoute): HttpRoute | undefined {
  const match = mergeMatches(root.match ?? [], leaf.match ?? []);
  if (match === undefined) return undefined;
  const merged: HttpRoute = { ...leaf, ...(match.length > 0 ? { match } : {}) };
  merged.name = leaf.name && root.name ? `${root.name}-${leaf.name}` : (leaf.name ?? root.name);
  for (const key of ["rewrite", "directResponse", "timeout", "retries", "fault", "mirror", "mirrorPercentage", "corsPolicy", "mirrors", "headers"] as const) {
    if (merged[key] === undefined && root[key] !== undefined) (merged as Record<string, unknown>)[key] = root[key];
  }
  if (merged.name === undefined) delete merged.name;
  return merged;
}

function mergeMatches(root: HttpMatch[], leaf: HttpMatch[]): HttpMatch[] | undefined {
  if (root.length === 0) return leaf;
  if (leaf.length === 0) return root;
  const out: HttpMatch[] = [];
  for (const sub of leaf) {
    const compatible = root.filter((parent) => !conflicts(parent, sub));
    if (compatible.length === 0) return undefined;
    out.push(...compatible.map((parent) => mergeMatch(parent, sub)));
  }
  return out;
}

function mergeMatch(root: HttpMatch, leaf: HttpMatch): HttpMatch {
  const out: HttpMatch = { ...leaf };
  out.name = leaf.name && root.name ? `${root.name}-${leaf.name}` : (leaf.name ?? root.name);
  if (out.name === undefined) delete out.name;
  for (const key of ["uri", "scheme", "method", "authority", "port", "sourceNamespace", "statPrefix"] as const) {
    if (out[key] === undefined && root[key] !== undefined) (out as Record<string, unknown>)[key] = root[key];
  }
  for (const key of ["headers", "withoutHeaders", "queryParams", "sourceLabels"] as const) {
    if (root[key] || leaf[key]) (out as Record<string, unknown>)[key] = { ...root[key], ...leaf[key] };
  }
  if (!out.gateways?.length && root.gateways) out.gateways = root.gateways;
  return out;
}

/** Istio's hasConflict: a delegate match that cannot hold within the root's. */
function conflicts(root: HttpMatch, leaf: HttpMatch): boolean {
  if ((["uri", "scheme", "method", "authority"] as const).some((key) => stringConflict(root[key], leaf[key]))) return true;
  for (const key of ["headers", "withoutHeaders", "queryParams"] as const) {
    if (Object.entries(leaf[key] ?? {}).some(([name, value]) => stringConflict(root[key]?.[name], value))) return true;
  }
  if ((root.ignoreUriCase ?? false) !== (leaf.ignoreUriCase ?? false)) return true;
  if (root.port !== undefined && leaf.port !== undefined && root.port !== leaf.port) return true;
  if (root.sourceNamespace !== undefined && leaf.sourceNamespace !== root.sourceNamespace) return true;
  if (Object.entries(leaf.sourceLabels ?? {}).some(([key, value]) => root.sourceLabels?.[key] !== undefined && root.sourceLabels[key] !== value)) return true;
  if (root.gateways?.length && leaf.gateways?.length && !leaf.gateways.every((gateway) => root.gateways!.includes(gateway))) return true;
  return false;
}

/** Istio's stringMatchConflict: only an exact or prefix leaf within a root prefix (or the same exact) fits. */
function stringConflict(root: StringMatch | undefined, leaf: StringMatch | undefined): boolean {
  if (!root || !leaf) return false;
  if (root.regex !== undefined || leaf.regex !== undefined) return true;
  if (root.exact !== undefined) return leaf.exact !== root.exact;
  if (leaf.prefix !== undefined) return !leaf.prefix.startsWith(root.prefix!);
  return !leaf.exact!.startsWith(root.prefix!);
}
