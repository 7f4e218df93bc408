// What one proxy should receive of one type: its subscription applied to its snapshot, with make-before-break so
// an update never leaves a route pointing at a cluster the proxy no longer has (or has not warmed yet).
import { createHash } from "node:crypto";
import type { EncodedResource, Snapshot } from "../snapshots/cache.js";
import { PUSH_ORDER, TypeUrl } from "../resources.js";

/** Types referenced by listeners and routes: removed ones stay until listeners and routes no longer need them. */
const REFERENCED = new Set<TypeUrl>([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.ExtensionConfig, TypeUrl.Secret]);
/** Envoy's wildcard types: an empty subscription (or "*") means "everything". */
export const WILDCARD_TYPES = new Set<string>([TypeUrl.Cluster, TypeUrl.Listener]);

export interface Subscription {
  wildcard: boolean;
  names: Set<string>;
}

export function knownType(typeUrl: string): typeUrl is TypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(typeUrl);
}

/** The resources of `typeUrl` that a subscription selects from a snapshot. */
export function selected(snapshot: Snapshot, typeUrl: TypeUrl, subscription: Subscription): Map<string, EncodedResource> {
  const all = snapshot.resources.get(typeUrl) ?? new Map<string, EncodedResource>();
  if (subscription.wildcard) return all;
  const view = new Map<string, EncodedResource>();
  for (const name of subscription.names) {
    const resource = all.get(name);
    if (resource) view.set(name, resource);
  }
  return view;
}

/**
 * What to send now: the selected resources, plus (for clusters, endpoints, extension configs and secrets) those
 * sent before and now removed, kept while listeners or routes still have changes to receive. Once those are
 * acknowledged, the next pass drops them.
 */
export function toSend(
  snapshot: Snapshot,
  typeUrl: TypeUrl,
  subscription: Subscription,
  previouslySent: Map<string, EncodedResource> | undefined,
  referencesPending: boolean,
): Map<string, EncodedResource> {
  const view = selected(snapshot, typeUrl, subscription);
  if (!REFERENCED.has(typeUrl) || !referencesPending || !previouslySent) return view;
  const kept = new Map(view);
  for (const [name, resource] of previouslySent) {
    if (!kept.has(name) && (subscription.wildcard || subscription.names.has(name))) kept.set(name, resource);
  }
  return kept;
}

/** Version of a set of resources: equal when the same names have the same contents. */
export function versionOf(resources: Map<string, EncodedResource>): string {
  const parts = [...resources.values()].map((resource) => `${resource.name}=${resource.version}`).sort();
  return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 12);
}

/** Names of the EDS resources the clusters take their endpoints from (`type: EDS`). */
export function edsNames(clusters: Iterable<EncodedResource>): string[] {
  const names: string[] = [];
  for (const cluster of clusters) {
    const body = cluster.body as { type?: string; eds_cluster_config?: { service_name?: string }; edsClusterConfig?: { serviceName?: string } };
    if (body.type !== "EDS") continue;
    names.push(body.eds_cluster_config?.service_name || body.edsClusterConfig?.serviceName || cluster.name);
  }
  return names;
}
