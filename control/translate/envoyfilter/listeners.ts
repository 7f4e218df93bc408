// EnvoyFilter patches of listeners: LISTENER, LISTENER_FILTER, FILTER_CHAIN, NETWORK_FILTER and HTTP_FILTER, as
// istiod's pilot/pkg/networking/core/envoyfilter/listener_patch.go applies them: per listener, its own patches
// (REMOVE, MERGE), then its listener filters, then per filter chain the chain's patches, its network filters (ADD,
// INSERT_*, REPLACE, REMOVE, then MERGE per filter) and the HTTP filters of each HTTP connection manager; then the
// FILTER_CHAIN ADDs of the listener; then the LISTENER ADDs. The structure is walked as proto3 JSON; MERGE decodes
// both sides into the Envoy message and merges messages (control/protos/merge.ts).
import { mergeAnyJson, mergeJson } from "../../protos/merge.js";
import { type ApplyTo, HTTP_CONNECTION_MANAGER, PATCH_MESSAGE } from "../../sources/schema/index.js";
import { contextMatches, type Json, type Patch, type PatchContext, type PatchReport } from "./select.js";

/** Sidecar listeners whose filter chains stand for ports (`destination_port`), as Istio names them. */
const VIRTUAL_LISTENERS = new Set(["virtualInbound", "virtualOutbound"]);

export function patchListeners(
  listeners: Json[],
  contextOf: (listener: Json) => PatchContext,
  /** The contexts whose LISTENER ADDs this proxy takes: GATEWAY, or SIDECAR_OUTBOUND and SIDECAR_INBOUND. */
  addContexts: PatchContext[],
  patches: Map<ApplyTo, Patch[]>,
  report: PatchReport,
): Json[] {
  const out: Json[] = [];
  for (const listener of listeners) {
    const patcher = new ListenerPatcher(listener, contextOf(listener), patches, report);
    if (patcher.patch()) out.push(listener);
  }
  for (const context of addContexts) {
    for (const patch of patches.get("LISTENER") ?? []) {
      if (patch.operation !== "ADD" || !contextMatches(patch, context)) continue;
      // An ADD in context ANY lands once: with the outbound listeners of a sidecar, or a gateway's (listener_patch.go).
      if (patch.context === "ANY" && context === "SIDECAR_INBOUND") continue;
      out.push(structuredClone(patch.value!));
      report.applied(patch, "listener", String(patch.value!.name ?? ""));
    }
  }
  return out;
}

class ListenerPatcher {
  constructor(
    private readonly listener: Json,
    private readonly context: PatchContext,
    private readonly patches: Map<ApplyTo, Patch[]>,
    private readonly report: PatchReport,
  ) {}

  /** Patches the listener in place; false when a patch removed it. */
  patch(): boolean {
    for (const patch of this.matching("LISTENER")) {
      if (patch.operation === "REMOVE") {
        this.applied(patch);
        return false;
      }
      if (isMerge(patch)) this.replace(this.listener, () => mergeJson(PATCH_MESSAGE.LISTENER, this.listener, patch.value, { replaceLists: patch.operation === "MERGE_AND_REPLACE_LIST" }), patch);
    }
    this.patchListenerFilters();
    const chains: Json[] = this.listener.filter_chains ?? [];
    this.listener.filter_chains = chains.filter((chain) => chain.filters === undefined || this.patchFilterChain(chain));
    const fallback = this.listener.default_filter_chain;
    if (fallback?.filters !== undefined && !this.patchFilterChain(fallback)) delete this.listener.default_filter_chain;
    for (const patch of this.matching("FILTER_CHAIN")) {
      if (patch.operation !== "ADD") continue;
      this.listener.filter_chains.push(structuredClone(patch.value!));
      this.applied(patch);
    }
    if (this.listener.filter_chains.length === 0) delete this.listener.filter_chains;
    return true;
  }

  private patchListenerFilters(): void {
    let filters: Json[] = this.listener.listener_filters ?? [];
    for (const patch of this.matching("LISTENER_FILTER")) {
      const named = patch.match.listener?.listenerFilter;
      const matches = (filter: Json) => named === undefined || filter.name === named;
      const result = applyListOperation(filters, patch, matches, (filter) => this.mergeTypedFilter(filter, patch));
      filters = result.list;
      if (result.applied) this.applied(patch);
    }
    if (filters.length > 0) this.listener.listener_filters = filters;
    else delete this.listener.listener_filters;
  }

  /** Patches one filter chain in place; false when a patch removed it. */
  private patchFilterChain(chain: Json): boolean {
    for (const patch of this.matching("FILTER_CHAIN")) {
      if (!this.chainMatches(chain, patch)) continue;
      if (patch.operation === "REMOVE") {
        this.applied(patch);
        return false;
      }
      if (isMerge(patch)) this.mergeFilterChain(chain, patch);
    }
    this.patchNetworkFilters(chain);
    return true;
  }

  /** A patch whose transport socket has the chain's socket name merges into that socket's typed_config, and the
   * rest of its value is not merged (istiod's mergeTransportSocketListener); any other value merges whole. */
  private mergeFilterChain(chain: Json, patch: Patch): void {
    const socket = patch.value!.transport_socket;
    if (socket && chain.transport_socket && socket.name === chain.transport_socket.name) {
      if (socket.typed_config && chain.transport_socket.typed_config) {
        this.replace(chain.transport_socket.typed_config, () => mergeAnyJson(chain.transport_socket.typed_config, socket.typed_config), patch);
      } else this.applied(patch);
      return;
    }
    this.replace(chain, () => mergeJson(PATCH_MESSAGE.FILTER_CHAIN, chain, patch.value, { replaceLists: patch.operation === "MERGE_AND_REPLACE_LIST" }), patch);
  }

  private patchNetworkFilters(chain: Json): void {
    let filters: Json[] = chain.filters;
    for (const patch of this.matching("NETWORK_FILTER")) {
      if (!this.chainMatches(chain, patch) || patch.operation === "MERGE") continue;
      const named = patch.match.listener?.filterChain?.filter?.name;
      const result = applyListOperation(filters, patch, (filter) => named === undefined || filter.name === named);
      filters = result.list;
      if (result.applied) this.applied(patch);
    }
    chain.filters = filters;
    for (const filter of filters) {
      for (const patch of this.matching("NETWORK_FILTER")) {
        if (patch.operation === "MERGE" && this.chainMatches(chain, patch) && this.networkFilterMatches(filter, patch)) this.mergeTypedFilter(filter, patch);
      }
      if (filter.name === HTTP_CONNECTION_MANAGER) this.patchHttpFilters(chain, filter);
    }
  }

  private patchHttpFilters(chain: Json, filter: Json): void {
    const manager = filter.typed_config;
    // Only a connection manager configured in place has HTTP filters to patch (istiod: UnmarshalTo fails otherwise).
    if (!manager || !String(manager["@type"]).endsWith(".HttpConnectionManager")) return;
    let httpFilters: Json[] = manager.http_filters ?? [];
    const patches = this.matching("HTTP_FILTER").filter((patch) => this.chainMatches(chain, patch) && this.networkFilterMatches(filter, patch));
    for (const patch of patches) {
      if (patch.operation === "MERGE") continue;
      const named = patch.match.listener?.filterChain?.filter?.subFilter?.name;
      const result = applyListOperation(httpFilters, patch, (httpFilter) => named === undefined || httpFilter.name === named);
      httpFilters = result.list;
      if (result.applied) this.applied(patch);
    }
    for (const httpFilter of httpFilters) {
      for (const patch of patches) {
        const named = patch.match.listener?.filterChain?.filter?.subFilter?.name;
        if (patch.operation === "MERGE" && (named === undefined || httpFilter.name === named)) this.mergeTypedFilter(httpFilter, patch);
      }
    }
    if (httpFilters.length > 0) manager.http_filters = httpFilters;
    else delete manager.http_filters;
  }

  /** MERGE of a network, HTTP or listener filter (istiod's patchNetworkFilter, mergeHTTPFilter, mergeListenerFilter):
   * the value's `name` renames the filter, its `typed_config` merges into the filter's (MergeAnyWithAny); other
   * fields of the value are not used, and a filter configured by ECDS (no typed_config) is left alone. */
  private mergeTypedFilter(filter: Json, patch: Patch): void {
    if (!filter.typed_config) return;
    const value = patch.value!;
    if (value.typed_config) {
      try {
        filter.typed_config = mergeAnyJson(filter.typed_config, value.typed_config);
      } catch (error) {
        this.report.problem(patch, "listener", this.listener.name, `${(error as Error).message}, so the filter ${filter.name} keeps its typed_config`);
        return;
      }
    }
    if (value.name) filter.name = value.name;
    this.applied(patch);
  }

  /** `mutate` computes the new content of `target`; on a merge error the target stays as it was. */
  private replace(target: Json, merged: () => Json, patch: Patch): void {
    let content: Json;
    try {
      content = merged();
    } catch (error) {
      this.report.problem(patch, "listener", this.listener.name, (error as Error).message);
      return;
    }
    for (const key of Object.keys(target)) delete target[key];
    Object.assign(target, content);
    this.applied(patch);
  }

  private matching(applyTo: ApplyTo): Patch[] {
    return (this.patches.get(applyTo) ?? []).filter((patch) => contextMatches(patch, this.context) && this.listenerMatches(patch));
  }

  private applied(patch: Patch): void {
    this.report.applied(patch, "listener", this.listener.name);
  }

  private listenerMatches(patch: Patch): boolean {
    const match = patch.match.listener;
    if (!match) return true;
    if (match.name && match.name !== this.listener.name) return false;
    // The virtual listeners carry ports in their filter chains: the port is matched there (chainMatches).
    if (patch.applyTo !== "LISTENER" && VIRTUAL_LISTENERS.has(this.listener.name)) return true;
    return !match.portNumber || this.listener.address?.socket_address?.port_value === match.portNumber;
  }

  private chainMatches(chain: Json, patch: Patch): boolean {
    const match = patch.match.listener;
    if (!match) return true;
    const chainMatch: Json = chain.filter_chain_match ?? {};
    if (VIRTUAL_LISTENERS.has(this.listener.name) && match.portNumber && chainMatch.destination_port !== match.portNumber) return false;
    const wanted = match.filterChain;
    if (!wanted) return true;
    if (wanted.name && wanted.name !== chain.name) return false;
    if (wanted.sni && !(chainMatch.server_names ?? []).includes(wanted.sni)) return false;
    if (wanted.transportProtocol && chainMatch.transport_protocol !== wanted.transportProtocol) return false;
    if (wanted.applicationProtocols && !wanted.applicationProtocols.split(",").every((protocol) => (chainMatch.application_protocols ?? []).includes(protocol))) return false;
    return !wanted.destinationPort || chainMatch.destination_port === wanted.destinationPort;
  }

  private networkFilterMatches(filter: Json, patch: Patch): boolean {
    const named = patch.match.listener?.filterChain?.filter?.name;
    return named === undefined || filter.name === named;
  }
}

function isMerge(patch: Patch): boolean {
  return patch.operation === "MERGE" || patch.operation === "MERGE_AND_REPLACE_LIST";
}

/** ADD, INSERT_FIRST, INSERT_BEFORE, INSERT_AFTER, REPLACE, REMOVE and (listener filters) MERGE on a list of named
 * filters, as istiod's insertBeforeFunc/insertAfterFunc/replaceFunc: the first element `matches` selects the place;
 * with no name to match, INSERT_BEFORE inserts first and INSERT_AFTER last. */
export function applyListOperation(list: Json[], patch: Patch, matches: (element: Json) => boolean, merge?: (element: Json) => void): { list: Json[]; applied: boolean } {
  const value = () => structuredClone(patch.value!);
  const index = list.findIndex(matches);
  const named = hasElementMatch(patch);
  switch (patch.operation) {
    case "ADD":
      return { list: [...list, value()], applied: true };
    case "INSERT_FIRST":
      return { list: [value(), ...list], applied: true };
    case "INSERT_BEFORE":
      if (!named) return { list: [value(), ...list], applied: true };
      return index < 0 ? { list, applied: false } : { list: [...list.slice(0, index), value(), ...list.slice(index)], applied: true };
    case "INSERT_AFTER":
      if (!named) return { list: [...list, value()], applied: true };
      return index < 0 ? { list, applied: false } : { list: [...list.slice(0, index + 1), value(), ...list.slice(index + 1)], applied: true };
    case "REPLACE":
      return index < 0 ? { list, applied: false } : { list: list.map((element, at) => (at === index ? value() : element)), applied: true };
    case "REMOVE": {
      const kept = list.filter((element) => !matches(element));
      return { list: kept, applied: kept.length !== list.length };
    }
    case "MERGE":
      if (index >= 0) merge?.(list[index]!);
      return { list, applied: false }; // merge reports itself
    default:
      return { list, applied: false };
  }
}

/** Whether a patch names the element it works on (istiod's hasListenerFilterMatch, hasNetworkFilterMatch,
 * hasHTTPFilterMatch, hasRouteMatch). */
function hasElementMatch(patch: Patch): boolean {
  switch (patch.applyTo) {
    case "LISTENER_FILTER":
      return patch.match.listener?.listenerFilter !== undefined;
    case "NETWORK_FILTER":
      return patch.match.listener?.filterChain?.filter !== undefined;
    case "HTTP_FILTER":
      return patch.match.listener?.filterChain?.filter?.subFilter !== undefined;
    case "HTTP_ROUTE":
      return patch.match.routeConfiguration?.vhost?.route !== undefined;
    default:
      return false;
  }
}
