// Which EnvoyFilter patches apply to a proxy, in which order, with their values decoded: istiod's
// PushContext.EnvoyFilters and convertToEnvoyFilterWrapper (pilot/pkg/model/push_context.go, envoyfilter.go) and its
// policy attachment (pilot/pkg/model/policyattachment.go).
import { normalizeJson } from "../../protos/merge.js";
import { attaches } from "../attachment.js";
import type { ProxyIdentity } from "../../resources.js";
import type { MeshConfig } from "../../sources/index.js";
import type { EnvoyFilter } from "../../sources/model.js";
import { type ApplyTo, type EnvoyFilterPatch, PATCH_MESSAGE, type PatchOperation } from "../../sources/schema/index.js";

export type PatchContext = "SIDECAR_INBOUND" | "SIDECAR_OUTBOUND" | "GATEWAY";

/** One patch of one EnvoyFilter, ready to apply. */
export interface Patch {
  filter: EnvoyFilter;
  /** Its position in `spec.configPatches`. */
  index: number;
  applyTo: Exclude<ApplyTo, "BOOTSTRAP">;
  /** INSERT_BEFORE/AFTER/FIRST on anything but filters and routes is ADD, as istiod makes it. */
  operation: PatchOperation;
  context: "ANY" | PatchContext;
  match: NonNullable<EnvoyFilterPatch["match"]>;
  /** The value as proto3 JSON in snake_case (decoded as the applyTo's message, so either spelling works). */
  value?: Json;
}

const ORDERED = new Set<ApplyTo>(["HTTP_FILTER", "NETWORK_FILTER", "HTTP_ROUTE", "LISTENER_FILTER"]);

/** The patches that apply to `proxy`, grouped by applyTo, each group in istiod's order. */
export function selectPatches(mesh: MeshConfig, proxy: ProxyIdentity): Map<ApplyTo, Patch[]> {
  const out = new Map<ApplyTo, Patch[]>();
  for (const filter of selectFilters(mesh, proxy)) {
    for (const patch of decodedPatches(filter)) out.set(patch.applyTo, [...(out.get(patch.applyTo) ?? []), patch]);
  }
  return out;
}

/** The EnvoyFilters that apply to `proxy`, in the order istiod applies them. */
export function selectFilters(mesh: MeshConfig, proxy: ProxyIdentity): EnvoyFilter[] {
  return mesh.envoyFilters.filter((filter) => filterAttaches(filter, proxy, mesh.rootNamespace)).sort((a, b) => compareFilters(a, b, mesh.rootNamespace));
}

/** As istiod attaches policies (../attachment.ts), by `workloadSelector` or `targetRefs`. */
export function filterAttaches(filter: EnvoyFilter, proxy: ProxyIdentity, rootNamespace: string): boolean {
  return attaches({ namespace: filter.namespace, selector: filter.spec.workloadSelector?.labels, targetRefs: filter.spec.targetRefs }, proxy, rootNamespace);
}

/** istiod's order (PushContext.EnvoyFilters): priority, then root namespace first, then creation time, then
 * `name.namespace`. Files carry no creation time: the resources of a folder count as created together, as with one
 * `kubectl apply`, where Istio also falls through to the name. */
function compareFilters(a: EnvoyFilter, b: EnvoyFilter, rootNamespace: string): number {
  const priority = (a.spec.priority ?? 0) - (b.spec.priority ?? 0);
  if (priority !== 0) return priority;
  if (a.namespace !== b.namespace && (a.namespace === rootNamespace || b.namespace === rootNamespace)) return a.namespace === rootNamespace ? -1 : 1;
  const left = `${a.name}.${a.namespace}`;
  const right = `${b.name}.${b.namespace}`;
  return left < right ? -1 : left > right ? 1 : 0;
}

// Decoding a value costs more than applying it, and every proxy of a config version shares the same EnvoyFilter
// objects: decode each once.
const decoded = new WeakMap<EnvoyFilter, Patch[]>();

function decodedPatches(filter: EnvoyFilter): Patch[] {
  let patches = decoded.get(filter);
  if (!patches) {
    patches = filter.spec.configPatches.flatMap((patch, index): Patch[] => {
      if (patch.applyTo === "BOOTSTRAP") return []; // refused by validation
      const operation = patch.patch.operation.startsWith("INSERT_") && !ORDERED.has(patch.applyTo) ? "ADD" : patch.patch.operation;
      return [
        {
          filter,
          index,
          applyTo: patch.applyTo,
          operation,
          context: patch.match?.context ?? "ANY",
          match: patch.match ?? {},
          value: patch.patch.value === undefined ? undefined : normalizeJson(PATCH_MESSAGE[patch.applyTo], patch.patch.value),
        },
      ];
    });
    decoded.set(filter, patches);
  }
  return patches;
}

export function contextMatches(patch: Patch, context: PatchContext): boolean {
  return patch.context === "ANY" || patch.context === context;
}

/** `EnvoyFilter ns/name patch 2`, as errors and proxy-config diff name a patch. */
export function patchLabel(patch: Pick<Patch, "filter" | "index">): string {
  return `EnvoyFilter ${patch.filter.namespace}/${patch.filter.name} patch ${patch.index}`;
}

/** Where patches say what they did: `applied` for each resource a patch changed (or added or removed), `problem`
 * for a patch that could not be applied (the resource is left as it was, as istiod does). */
export interface PatchReport {
  applied(patch: Patch, kind: ResourceKind, name: string): void;
  problem(patch: Patch, kind: ResourceKind, name: string, message: string): void;
}

export type ResourceKind = "listener" | "route" | "cluster" | "extension config";

export type Json = Record<string, any>; // Envoy proto3 JSON, patched in place: typing it field by field would only restate it.
