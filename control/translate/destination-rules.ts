// Which DestinationRule applies to a service for a proxy, as istiod decides (pilot/pkg/model/push_context.go
// setDestinationRules / destinationRule, destination_rule.go mergeDestinationRule, sidecar.go DestinationRule):
//
// - Rules are indexed per namespace: those visible in their own namespace, and those exported beyond it (`exportTo`
//   unset or naming other namespaces; a rule with a workloadSelector is private to its namespace).
// - For a proxy in namespace P and a service in namespace S: P's own rules first, then the rules S exports to P, then
//   those the root namespace exports to P; in each, the most specific host (exact, then the longest wildcard).
// - Several rules for one host in one namespace, with the same exportTo and no (or the same) workloadSelector, are
//   merged into the first (by file order, rules with a selector first): subsets are concatenated (a repeated
//   subset name is dropped), and the first traffic policy (and Skiff annotation) wins. `merges` says what was merged, for warnings.
// - Among the rules found, one whose workloadSelector the proxy's labels match (in the proxy's own namespace) wins
//   over one without a selector.
import type { MeshConfig } from "../sources/index.js";
import type { DestinationRule } from "../sources/model.js";
import type { ProxyIdentity } from "../resources.js";
import { hostSubsetOf } from "./hosts.js";
import type { Registry, Service } from "./registry.js";

interface Consolidated {
  /** The first rule of those merged. */
  first: DestinationRule;
  /** The merged rule: the first rule with the subsets (and, if it had none, the traffic policy) of the others. */
  rule: DestinationRule;
  exportTo: Set<string>;
  selector?: Record<string, string>;
}

/** One rule merged into another, as a warning can say it. */
export interface RuleMerge {
  into: DestinationRule;
  rule: DestinationRule;
  host: string;
  addedSubsets: string[];
  droppedSubsets: string[];
  trafficPolicyIgnored: boolean;
}

type HostIndex = Map<string, Consolidated[]>;

export class DestinationRuleIndex {
  private readonly namespaceLocal = new Map<string, HostIndex>();
  private readonly exported = new Map<string, HostIndex>();
  private readonly rootLocal: HostIndex = new Map();
  private readonly rootNamespace: string;
  readonly merges: RuleMerge[] = [];

  constructor(mesh: MeshConfig, registry: Registry) {
    this.rootNamespace = mesh.rootNamespace;
    // Rules with a workloadSelector first, then in file order (Istio: creation time), as sortConfigBySelectorAndCreationTime.
    const rules = [...mesh.destinationRules].sort((a, b) => Number(!a.spec.workloadSelector) - Number(!b.spec.workloadSelector));
    for (const rule of rules) {
      const host = registry.canonicalHost(rule.spec.host, rule.namespace);
      const exportTo = new Set(rule.spec.workloadSelector ? ["."] : (rule.spec.exportTo ?? []));
      const visibleInOwn = exportTo.size === 0 || exportTo.has("*") || exportTo.has(".") || exportTo.has(rule.namespace);
      if (visibleInOwn) this.merge(indexFor(this.namespaceLocal, rule.namespace), host, rule, exportTo);
      const privateOnly = exportTo.size === 1 && (exportTo.has(".") || exportTo.has(rule.namespace));
      if (!privateOnly) this.merge(indexFor(this.exported, rule.namespace), host, rule, exportTo);
      else if (rule.namespace === this.rootNamespace) this.merge(this.rootLocal, host, rule, exportTo);
    }
  }

  /** The rule for `service` as a proxy in `viewer`'s namespace with its labels sees it (a proxy in the service's
   * namespace without labels when there is no viewer). */
  forService(service: Service, viewer?: ProxyIdentity): DestinationRule | undefined {
    const namespace = viewer?.namespace ?? service.namespace;
    const labels = viewer?.labels ?? {};
    const found =
      (namespace !== this.rootNamespace ? match(this.namespaceLocal.get(namespace), service.host) : match(this.rootLocal, service.host)) ??
      exportedTo(match(this.exported.get(service.namespace), service.host), namespace) ??
      exportedTo(match(this.exported.get(this.rootNamespace), service.host), namespace);
    if (!found) return undefined;
    const selected = found.find(
      (candidate) => candidate.selector && candidate.rule.namespace === namespace && Object.entries(candidate.selector).every(([k, v]) => labels[k] === v),
    );
    return (selected ?? found.findLast((candidate) => !candidate.selector))?.rule;
  }

  private merge(index: HostIndex, host: string, rule: DestinationRule, exportTo: Set<string>): void {
    const list = index.get(host);
    const incoming: Consolidated = { first: rule, rule, exportTo, selector: rule.spec.workloadSelector?.matchLabels };
    if (!list) {
      index.set(host, [incoming]);
      return;
    }
    let separate = true;
    for (const existing of list) {
      if (sameSet(exportTo, existing.exportTo)) separate = false;
      else if (!(existing.exportTo.size > 0 && [...existing.exportTo].every((entry) => exportTo.has(entry)))) {
        separate = true;
        continue;
      }
      const bothWithout = !incoming.selector && !existing.selector;
      const bothWith = incoming.selector !== undefined && existing.selector !== undefined;
      const selectorsMatch = bothWith && sameLabels(incoming.selector!, existing.selector!);
      if (bothWith && !selectorsMatch) {
        separate = true;
        continue;
      }
      if (bothWithout || selectorsMatch) separate = false;
      this.mergeInto(existing, rule, host);
    }
    if (separate) list.push(incoming);
  }

  private mergeInto(existing: Consolidated, rule: DestinationRule, host: string): void {
    const into = existing.rule;
    const subsets = [...(into.spec.subsets ?? [])];
    const added: string[] = [];
    const dropped: string[] = [];
    for (const subset of rule.spec.subsets ?? []) {
      if (subsets.some((existing) => existing.name === subset.name)) dropped.push(subset.name);
      else {
        subsets.push(subset);
        added.push(subset.name);
      }
    }
    const trafficPolicy = into.spec.trafficPolicy ?? rule.spec.trafficPolicy;
    // The same merge happens in each index the rules share (own namespace, exported): report it once.
    if (!this.merges.some((m) => m.rule === rule && m.into === existing.first)) {
      this.merges.push({
        into: existing.first,
        rule,
        host,
        addedSubsets: added,
        droppedSubsets: dropped,
        trafficPolicyIgnored: into.spec.trafficPolicy !== undefined && rule.spec.trafficPolicy !== undefined,
      });
    }
    // Skiff's annotations (the load-balancing policy: skiff.dev/override-host) go with the traffic policy: the first wins.
    const annotations = into.annotations ?? rule.annotations;
    existing.rule = { ...into, spec: { ...into.spec, subsets, ...(trafficPolicy ? { trafficPolicy } : {}) }, ...(annotations ? { annotations } : {}) };
  }
}

function indexFor(indexes: Map<string, HostIndex>, namespace: string): HostIndex {
  let index = indexes.get(namespace);
  if (!index) indexes.set(namespace, (index = new Map()));
  return index;
}

/** The rules for the most specific host that covers `host`: the exact host, else the longest wildcard. */
function match(index: HostIndex | undefined, host: string): Consolidated[] | undefined {
  if (!index) return undefined;
  const exact = index.get(host);
  if (exact) return exact;
  let best: string | undefined;
  for (const candidate of index.keys()) {
    if (candidate.startsWith("*") && hostSubsetOf(host, candidate) && (!best || candidate.length > best.length)) best = candidate;
  }
  return best === undefined ? undefined : index.get(best);
}

/** The rules exported to `namespace` (an empty exportTo is the default: everywhere). */
function exportedTo(found: Consolidated[] | undefined, namespace: string): Consolidated[] | undefined {
  const visible = found?.filter(({ exportTo }) => exportTo.size === 0 || exportTo.has("*") || exportTo.has(namespace));
  return visible?.length ? visible : undefined;
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((entry) => b.has(entry));
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  return Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v);
}
