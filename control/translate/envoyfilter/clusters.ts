// EnvoyFilter patches of clusters (CLUSTER), as istiod's pilot/pkg/networking/core/envoyfilter/cluster_patch.go:
// REMOVE and MERGE per cluster in patch order, then the ADDs. One deliberate difference: circuit breaker thresholds
// merge by priority (see mergeThresholds).
import { mergeAnyJson, mergeJson } from "../../protos/merge.js";
import { type ApplyTo, PATCH_MESSAGE } from "../../sources/schema/index.js";
import { contextMatches, type Json, type Patch, type PatchContext, type PatchReport } from "./select.js";

export function patchClusters(
  clusters: Json[],
  contextOf: (cluster: Json) => PatchContext,
  /** The contexts whose ADDs this proxy takes: GATEWAY, or SIDECAR_OUTBOUND and SIDECAR_INBOUND. */
  addContexts: PatchContext[],
  patches: Map<ApplyTo, Patch[]>,
  report: PatchReport,
): Json[] {
  const clusterPatches = patches.get("CLUSTER") ?? [];
  const out: Json[] = [];
  for (const cluster of clusters) {
    const context = contextOf(cluster);
    let removed = false;
    for (const patch of clusterPatches) {
      if (!contextMatches(patch, context) || !clusterMatches(cluster, patch)) continue;
      if (patch.operation === "REMOVE") {
        report.applied(patch, "cluster", cluster.name);
        removed = true;
        break;
      }
      if (patch.operation === "MERGE" || patch.operation === "MERGE_AND_REPLACE_LIST") {
        let problem: string | undefined;
        try {
          mergeCluster(cluster, patch, (message) => (problem = message));
        } catch (error) {
          problem = (error as Error).message;
        }
        if (problem) report.problem(patch, "cluster", cluster.name, problem);
        else report.applied(patch, "cluster", cluster.name);
      }
    }
    if (!removed) out.push(cluster);
  }
  for (const context of addContexts) {
    for (const patch of clusterPatches) {
      if (patch.operation !== "ADD" || !contextMatches(patch, context)) continue;
      // An ADD in context ANY lands once: with the outbound clusters of a sidecar, or a gateway's (InsertedClusters).
      if (patch.context === "ANY" && context === "SIDECAR_INBOUND") continue;
      out.push(structuredClone(patch.value!));
      report.applied(patch, "cluster", String(patch.value!.name ?? ""));
    }
  }
  return out;
}

/** istiod's clusterMatch: the exact `name`, or the port, subset and service parsed from
 * `<direction>|<port>|<subset>|<host>` (model.ParseSubsetKey). */
function clusterMatches(cluster: Json, patch: Patch): boolean {
  const match = patch.match.cluster;
  if (!match) return true;
  if (match.name) return match.name === cluster.name;
  const [, port = "", subset = "", host = ""] = String(cluster.name).split("|");
  if (match.subset && match.subset !== subset) return false;
  if (match.service && match.service !== host) return false;
  return !match.portNumber || match.portNumber === (Number(port) || 0);
}

function mergeCluster(cluster: Json, patch: Patch, report: (message: string) => void): void {
  const replaceLists = patch.operation === "MERGE_AND_REPLACE_LIST";
  let value: Json = patch.value!;
  if (value.transport_socket) return mergeTransportSocket(cluster, value.transport_socket, report);
  const thresholds: Json[] | undefined = replaceLists ? undefined : value.circuit_breakers?.thresholds;
  if (thresholds) {
    const { thresholds: _, ...breakers } = value.circuit_breakers;
    value = { ...value, circuit_breakers: breakers };
  }
  const merged = mergeJson(PATCH_MESSAGE.CLUSTER, cluster, value, { replaceLists });
  if (thresholds) mergeThresholds(merged, thresholds);
  for (const key of Object.keys(cluster)) delete cluster[key];
  Object.assign(cluster, merged);
}

/** istiod's mergeTransportSocketCluster: a patch with a transport socket changes only the socket (validation refuses
 * other fields beside it, which istiod would drop): it merges into the typed_config of the cluster's socket of that
 * name (or of that name among transport_socket_matches), and otherwise replaces the cluster's socket; beside
 * transport_socket_matches of other names it cannot go (Envoy takes one or the other), so it is not applied. */
function mergeTransportSocket(cluster: Json, socket: Json, report: (message: string) => void): void {
  const matches: Json[] = cluster.transport_socket_matches ?? [];
  const target = matches.length > 0 ? matches.map((candidate) => candidate.transport_socket).find((candidate) => candidate?.name === socket.name) : cluster.transport_socket;
  if (matches.length > 0 && !target) return report(`the cluster has transport_socket_matches but none named ${socket.name}, so the transport socket was not applied`);
  if (target?.name !== socket.name) cluster.transport_socket = structuredClone(socket);
  else if (target.typed_config && socket.typed_config) target.typed_config = mergeAnyJson(target.typed_config, socket.typed_config);
}

/** The one deliberate difference from Istio: a threshold merges into the cluster's threshold of the same priority
 * instead of being appended. Envoy uses only the first threshold of each priority (ClusterInfoImpl's find_if in
 * upstream_impl.cc), and every cluster already has Istio's default one, so an appended threshold, such as the seed's
 * retry_budget, would have no effect (test/scenarios/retry-budget-envoyfilter.test.ts shows both). */
function mergeThresholds(cluster: Json, patch: Json[]): void {
  const thresholds: Json[] = ((cluster.circuit_breakers ??= {}).thresholds ??= []);
  for (const threshold of patch) {
    const priority = threshold.priority ?? "DEFAULT";
    const index = thresholds.findIndex((candidate) => (candidate.priority ?? "DEFAULT") === priority);
    if (index >= 0) thresholds[index] = mergeJson("envoy.config.cluster.v3.CircuitBreakers.Thresholds", thresholds[index], threshold);
    else thresholds.push(structuredClone(threshold));
  }
}
