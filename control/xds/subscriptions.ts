// What one proxy should receive of one type: its subscription applied to its snapshot, with make-before-break so
// an update never leaves a route pointing at a cluster the proxy no longer has (or has not warmed yet).
import { createHash } from "node:crypto";
import type { EncodedResource, Snapshot } from "../snapshots/cache.js";
import { PUSH_ORDER, TypeUrl } from "../resources.js";

/** Types referenced by listeners and routes: removed ones stay until listeners and routes no longer need them. */
const REFERENCED = new Set<TypeUrl>([TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.ExtensionConfig, TypeUrl.Secret]);
/** Envoy's wildcard types: an empty subscription (or "*") means "everything". */
export const WILDCARD_TYPES = new Set<string>([TypeUrl.Cluster, TypeUrl.Listener]);

/** What a stream subscribes to of one type. Made only by subscriptionOf and never modified: proxies that subscribe
 * to the same names (a thousand sidecars alike) share one object, and with it what is computed from it. */
export interface Subscription {
  readonly wildcard: boolean;
  readonly names: ReadonlySet<string>;
  /** A hash of the content: equal subscriptions have equal keys. */
  readonly key: string;
}

const interned = new Map<string, WeakRef<Subscription>>();
const forget = new FinalizationRegistry<string>((key) => {
  if (!interned.get(key)?.deref()) interned.delete(key);
});

/** The subscription to `names` (or the wildcard), the same object for the same content while any stream holds it. */
export function subscriptionOf(wildcard: boolean, names: Iterable<string>): Subscription {
  const set = new Set<string>();
  for (const name of names) if (name !== "*") set.add(name);
  const key = wildcard && set.size === 0 ? "*" : createHash("sha256").update(`${wildcard}\n${[...set].sort().join("\n")}`).digest("hex");
  const known = interned.get(key)?.deref();
  if (known) return known;
  const subscription: Subscription = { wildcard, names: set, key };
  interned.set(key, new WeakRef(subscription));
  forget.register(subscription, key);
  return subscription;
}

export function knownType(typeUrl: string): typeUrl is TypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(typeUrl);
}

/** Resources with their version (versionOf), computed once: every pass of every stream compares versions, and
 * with a thousand proxies holding a thousand clusters each, sorting and hashing them again on each pass is what
 * the control plane would spend its time on. */
export interface Selection {
  resources: Map<string, EncodedResource>;
  version: string;
}

const NONE = new Map<string, EncodedResource>();
const EMPTY = selectionOf(NONE);
/** Selections from each of a snapshot's resource sets by subscription key, shared by every stream that holds that
 * snapshot (and goes with it). */
const selections = new WeakMap<Map<string, EncodedResource>, Map<string, Selection>>();

/** The resources of a type that a subscription selects from a snapshot, remembered for as long as neither changes:
 * a snapshot's resource maps and a stream's subscription are never modified, only replaced. */
export class SelectionMemo {
  private all?: Map<string, EncodedResource>;
  private subscription?: Subscription;
  private selection?: Selection;

  of(snapshot: Snapshot, typeUrl: TypeUrl, subscription: Subscription): Selection {
    const all = snapshot.resources.get(typeUrl) ?? NONE;
    if (this.selection && this.all === all && this.subscription === subscription) return this.selection;
    if (all === NONE) return EMPTY;
    this.all = all;
    this.subscription = subscription;
    const shared = selections.get(all) ?? new Map<string, Selection>();
    selections.set(all, shared);
    let selection = shared.get(subscription.key);
    if (!selection) shared.set(subscription.key, (selection = selectionOf(subscription.wildcard ? all : pick(all, subscription.names))));
    this.selection = selection;
    return selection;
  }
}

function pick(all: Map<string, EncodedResource>, names: ReadonlySet<string>): Map<string, EncodedResource> {
  const view = new Map<string, EncodedResource>();
  for (const name of names) {
    const resource = all.get(name);
    if (resource) view.set(name, resource);
  }
  return view;
}

export function selectionOf(resources: Map<string, EncodedResource>): Selection {
  return { resources, version: versionOf(resources) };
}

/** Whether a subscription request names what `subscription` already holds (then the stream keeps that object:
 * cheaper than subscriptionOf, for the state-of-the-world requests that repeat a thousand names with every ACK). */
export function sameSubscription(subscription: Subscription, wildcard: boolean, names: string[]): boolean {
  if (subscription.wildcard !== wildcard) return false;
  let count = 0;
  for (const name of names) {
    if (name === "*") continue;
    if (!subscription.names.has(name)) return false;
    count++;
  }
  return count === subscription.names.size;
}

/**
 * What to send now: the selected resources, plus (for clusters, endpoints, extension configs and secrets) those
 * sent before and now removed, kept while listeners or routes still have changes to receive. Once those are
 * acknowledged, the next pass drops them.
 */
export function toSend(
  view: Selection,
  typeUrl: TypeUrl,
  subscription: Subscription,
  previouslySent: Map<string, EncodedResource> | undefined,
  referencesPending: boolean,
): Selection {
  if (!REFERENCED.has(typeUrl) || !referencesPending || !previouslySent) return view;
  let kept: Map<string, EncodedResource> | undefined;
  for (const [name, resource] of previouslySent) {
    if (!view.resources.has(name) && (subscription.wildcard || subscription.names.has(name))) (kept ??= new Map(view.resources)).set(name, resource);
  }
  return kept ? selectionOf(kept) : view;
}

/** Version of a set of resources: equal when the same names have the same contents. */
export function versionOf(resources: Map<string, EncodedResource>): string {
  const parts = [...resources.values()].map((resource) => `${resource.name}=${resource.version}`).sort();
  return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 12);
}

const edsNamesOfSet = new WeakMap<Map<string, EncodedResource>, string[]>();

/** edsNames of a set of clusters that is never modified (a snapshot's, or what a stream sent), read once. */
export function edsNamesOf(clusters: Map<string, EncodedResource>): string[] {
  let names = edsNamesOfSet.get(clusters);
  if (!names) edsNamesOfSet.set(clusters, (names = edsNames(clusters.values())));
  return names;
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
