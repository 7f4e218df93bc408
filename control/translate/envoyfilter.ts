// EnvoyFilter patches, the part the seed uses: applyTo CLUSTER with operation MERGE
// (pilot/pkg/networking/core/envoyfilter/cluster_patch.go). MERGE is protobuf merge, as Istio's pkg/proto/merge:
// messages merge field by field, repeated fields are appended, scalars (and durations) are replaced; except
// circuit breaker thresholds, which merge by priority (see mergeThresholds).
import type { MeshConfig } from "../sources/index.js";
import type { ProxyIdentity, XdsResource } from "../resources.js";

export function applyClusterPatches(mesh: MeshConfig, proxy: ProxyIdentity, clusters: XdsResource[]): XdsResource[] {
  const filters = mesh.envoyFilters
    .filter((filter) => Object.entries(filter.spec.workloadSelector?.labels ?? {}).every(([k, v]) => proxy.labels[k] === v))
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const patches = filters.flatMap((filter) => filter.spec.configPatches).filter((patch) => contextMatches(patch.match?.context, proxy));
  if (patches.length === 0) return clusters;
  return clusters.map((cluster) => {
    let body = cluster.body;
    for (const patch of patches) {
      if (clusterMatches(cluster.name, patch.match?.cluster)) body = protoMerge(body, patch.patch.value);
    }
    return body === cluster.body ? cluster : { name: cluster.name, body };
  });
}

function contextMatches(context: string | undefined, proxy: ProxyIdentity): boolean {
  if (context === undefined || context === "ANY") return true;
  return context === (proxy.role === "gateway" ? "GATEWAY" : "SIDECAR_OUTBOUND");
}

function clusterMatches(name: string, match: { portNumber?: number; service?: string; subset?: string; name?: string } | undefined): boolean {
  if (!match) return true;
  if (match.name) return match.name === name;
  const [direction, port, subset, host] = name.split("|");
  if (direction !== "outbound") return false;
  if (match.subset && match.subset !== subset) return false;
  if (match.service && match.service !== host) return false;
  if (match.portNumber && match.portNumber !== Number(port)) return false;
  return true;
}

function protoMerge(target: Record<string, unknown>, patch: Record<string, unknown>, path = ""): Record<string, unknown> {
  const out: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    const existing = out[key];
    const here = path ? `${path}.${key}` : key;
    if (here === "circuit_breakers.thresholds" && Array.isArray(value)) out[key] = mergeThresholds(Array.isArray(existing) ? existing : [], value);
    else if (Array.isArray(value)) out[key] = [...(Array.isArray(existing) ? existing : []), ...structuredClone(value)];
    else if (isObject(value) && isObject(existing)) out[key] = protoMerge(existing, value, here);
    else out[key] = structuredClone(value);
  }
  return out;
}

/** The one deliberate difference from Istio: a threshold merges into the cluster's threshold of the same priority
 * instead of being appended. Envoy uses only the first threshold of each priority (ClusterInfoImpl's find_if in
 * upstream_impl.cc), and every cluster already has Istio's default one, so an appended threshold, such as the seed's
 * retry_budget, would have no effect (test/scenarios/retry-budget-envoyfilter.test.ts shows both). */
function mergeThresholds(existing: unknown[], patch: unknown[]): unknown[] {
  const out = [...existing];
  for (const threshold of patch) {
    if (!isObject(threshold)) continue;
    const priority = threshold.priority ?? "DEFAULT";
    const index = out.findIndex((candidate) => isObject(candidate) && (candidate.priority ?? "DEFAULT") === priority);
    if (index >= 0) out[index] = protoMerge(out[index] as Record<string, unknown>, threshold, "circuit_breakers.thresholds[]");
    else out.push(structuredClone(threshold));
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
