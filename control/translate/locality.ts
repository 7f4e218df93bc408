// Locality-aware load balancing as istiod computes it for each proxy (pilot/pkg/networking/core/loadbalancer/
// loadbalancer.go: GetLocalityLbSetting, ApplyLocalityLoadBalancer, applyLocalityWeights, applyLocalityFailover,
// applyFailoverPriorities; pilot/pkg/networking/util: LbPriority, LocalityMatch).
//
// A cluster's endpoints are grouped by locality (Envoy's LocalityLbEndpoints). Relative to the proxy's own locality:
// - `distribute`: the first rule whose `from` matches the proxy gives each matching locality its share of the traffic
//   (locality weights; Envoy's locality weighted load balancing), and localities no `to` names get none;
// - failover (when the policy has outlier detection, without which Envoy never leaves a priority): endpoints get
//   Envoy priorities, 0 for the proxy's own region/zone/subzone, 1 same zone, 2 same region, 3 elsewhere, 4 for
//   regions a `failover` rule of the proxy's region does not name; with `failoverPriority`, first by how many of the
//   listed labels an endpoint shares with the proxy (in order), then by locality if `failover` is set too.
// Priorities are then renumbered 0..N without gaps, as Envoy requires.
import type { MeshConfig } from "../sources/index.js";
import { type LocalityLbSetting, TOPOLOGY_LABELS, type TrafficPolicy } from "../sources/schema/index.js";
import type { Locality, ProxyIdentity } from "../resources.js";

/** The label Istio reads a workload's locality from when it has no `locality` field (model.LocalityLabel); Kubernetes
 * labels cannot hold `/`, so `region.zone.subzone` is accepted too (model.GetLocalityLabel). */
export const LOCALITY_LABEL = "istio-locality";

/** One endpoint of a cluster, with what locality load balancing looks at. */
export interface LocalityEndpoint {
  /** An Envoy LbEndpoint. */
  lbEndpoint: Record<string, unknown>;
  locality?: Locality;
  /** The workload's labels with its topology labels added (Istio's AugmentLabels). */
  labels: Record<string, string>;
}

export function parseLocality(text: string | undefined): Locality | undefined {
  if (!text) return undefined;
  const [region, zone, subZone] = (text.includes("/") ? text : text.replaceAll(".", "/")).split("/");
  return { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) };
}

/** A workload's locality: its `locality` field, else its `istio-locality` label (Istio's convertWorkloadEntry). */
export function workloadLocality(workload: { locality?: string; labels?: Record<string, string> }): Locality | undefined {
  return parseLocality(workload.locality ?? workload.labels?.[LOCALITY_LABEL]);
}

/** A proxy's locality: its node's (`skiff bootstrap --locality`), else its `istio-locality` label, else its topology
 * labels (Istio takes these from the pod's node; here a proxy's labels carry them). */
export function proxyLocality(proxy: ProxyIdentity): Locality {
  const node = proxy.locality;
  if (node && (node.region || node.zone || node.subZone)) return node;
  const labelled = parseLocality(proxy.labels[LOCALITY_LABEL]);
  if (labelled) return labelled;
  const { region, zone, subZone } = TOPOLOGY_LABELS;
  return parseLocality([proxy.labels[region], proxy.labels[zone], proxy.labels[subZone]].filter(Boolean).join("/")) ?? {};
}

/** Labels with the locality's topology labels set (Istio's labelutil.AugmentLabels), as failoverPriority compares them. */
export function withTopologyLabels(labels: Record<string, string> | undefined, locality: Locality | undefined): Record<string, string> {
  return {
    ...labels,
    ...(locality?.region ? { [TOPOLOGY_LABELS.region]: locality.region } : {}),
    ...(locality?.zone ? { [TOPOLOGY_LABELS.zone]: locality.zone } : {}),
    ...(locality?.subZone ? { [TOPOLOGY_LABELS.subZone]: locality.subZone } : {}),
  };
}

/** How a cluster balances across localities for one proxy: the setting in force (the DestinationRule's, else the
 * mesh's, Istio's default being enabled), and whether failover applies (outlier detection on). */
export interface LocalityPolicy {
  setting: LocalityLbSetting;
  failover: boolean;
}

/** Istio's GetLocalityLbSetting: a rule's own setting wins (unless `enabled: false`), then the mesh's. */
export function localityPolicy(mesh: MeshConfig, policy: TrafficPolicy | undefined): LocalityPolicy | undefined {
  const own = policy?.loadBalancer?.localityLbSetting;
  const setting = own ?? mesh.localityLbSetting ?? { enabled: true };
  if (setting.enabled === false) return undefined;
  return { setting, failover: policy?.outlierDetection !== undefined };
}

/** Whether Envoy must weigh localities (common_lb_config.locality_weighted_lb_config): Istio sets it when locality
 * load balancing does something and the policy is round robin or least request (applyLocalityLoadBalancer). */
export function localityWeighted(locality: LocalityPolicy | undefined, lbPolicy: unknown): boolean {
  if (!locality || !(locality.failover || locality.setting.distribute?.length)) return false;
  return lbPolicy === "ROUND_ROBIN" || lbPolicy === "LEAST_REQUEST";
}

/** Envoy LocalityLbEndpoints for `endpoints` as `proxy` should use them. Without a locality policy (or when it
 * changes nothing), one group per locality at priority 0. `weighted`: give each group its load_balancing_weight. */
export function localityLbEndpoints(
  endpoints: LocalityEndpoint[],
  proxy: ProxyIdentity | undefined,
  locality: LocalityPolicy | undefined,
  weighted: boolean,
): Record<string, unknown>[] {
  let groups = groupByLocality(endpoints);
  if (locality && proxy) {
    const own = proxyLocality(proxy);
    const { setting } = locality;
    if (setting.distribute?.length) {
      groups = distribute(own, groups, setting.distribute);
    } else if (locality.failover) {
      if (setting.failoverPriority?.length) {
        groups = failoverByLabels(withTopologyLabels(proxy.labels, own), groups, setting.failoverPriority);
        if (setting.failover?.length) failoverByLocality(own, groups, setting.failover);
      } else {
        failoverByLocality(own, groups, setting.failover ?? []);
      }
    }
  }
  return groups.map((group) => ({
    ...(group.locality && Object.keys(group.locality).length > 0 ? { locality: envoyLocality(group.locality) } : {}),
    lb_endpoints: group.endpoints.map((endpoint) => endpoint.lbEndpoint),
    ...(weighted ? { load_balancing_weight: group.weight ?? sumWeights(group.endpoints) } : {}),
    ...(group.priority ? { priority: group.priority } : {}),
  }));
}

interface Group {
  locality?: Locality;
  endpoints: LocalityEndpoint[];
  priority: number;
  weight?: number;
}

function groupByLocality(endpoints: LocalityEndpoint[]): Group[] {
  const groups = new Map<string, Group>();
  for (const endpoint of endpoints) {
    const key = localityString(endpoint.locality);
    const group = groups.get(key) ?? { locality: endpoint.locality, endpoints: [], priority: 0 };
    group.endpoints.push(endpoint);
    groups.set(key, group);
  }
  return [...groups.values()];
}

function sumWeights(endpoints: LocalityEndpoint[]): number {
  return endpoints.reduce((sum, endpoint) => sum + ((endpoint.lbEndpoint.load_balancing_weight as number | undefined) ?? 1), 0);
}

/** applyLocalityWeights: the first rule whose `from` matches the proxy; each `to` entry (in the order written) takes
 * the groups it matches that no earlier entry took and shares its weight among them by their own weights; groups no
 * entry takes get no traffic (Istio empties them; Skiff leaves them out). */
function distribute(own: Locality, groups: Group[], rules: NonNullable<LocalityLbSetting["distribute"]>): Group[] {
  const rule = rules.find((candidate) => localityMatch(own, candidate.from));
  if (!rule) return groups;
  const taken = new Set<Group>();
  for (const [target, weight] of Object.entries(rule.to)) {
    const matching = groups.filter((group) => !taken.has(group) && localityMatch(group.locality ?? {}, target));
    const total = matching.reduce((sum, group) => sum + sumWeights(group.endpoints), 0);
    for (const group of matching) {
      taken.add(group);
      group.weight = Math.ceil((sumWeights(group.endpoints) * weight) / total);
    }
  }
  return groups.filter((group) => taken.has(group));
}

/** applyLocalityFailover: priority by how much of the proxy's locality a group shares (util.LbPriority), 4 for a
 * region the proxy region's failover rule does not name; on top of priorities failoverPriority gave (times 5). */
function failoverByLocality(own: Locality, groups: Group[], failover: NonNullable<LocalityLbSetting["failover"]>): void {
  for (const group of groups) {
    let priority = lbPriority(own, group.locality ?? {});
    if (priority === 3) {
      const rule = failover.find((candidate) => candidate.from === (own.region ?? ""));
      if (rule && group.locality?.region !== rule.to) priority = 4;
    }
    group.priority = group.priority * 5 + priority;
  }
  renumber(groups);
}

/** applyFailoverPriorities: each locality group splits by how many of the listed labels (in order) its endpoints
 * share with the proxy; `label=value` compares with that value instead of the proxy's. Istio skips this for a proxy
 * without labels. */
function failoverByLabels(proxyLabels: Record<string, string>, groups: Group[], priorities: string[]): Group[] {
  if (Object.keys(proxyLabels).length === 0) return groups;
  const wanted = priorities.map((entry) => {
    const [label, value] = entry.split("=", 2) as [string, string?];
    return { label, value: value ?? proxyLabels[label] };
  });
  const out: Group[] = [];
  for (const group of groups) {
    const byPriority = new Map<number, LocalityEndpoint[]>();
    for (const endpoint of group.endpoints) {
      const mismatch = wanted.findIndex(({ label, value }) => value !== endpoint.labels[label]);
      const priority = mismatch === -1 ? 0 : wanted.length - mismatch;
      byPriority.set(priority, [...(byPriority.get(priority) ?? []), endpoint]);
    }
    for (const [priority, endpoints] of [...byPriority].sort(([a], [b]) => a - b)) out.push({ locality: group.locality, endpoints, priority });
  }
  renumber(out);
  return out;
}

/** Envoy wants priorities 0..N without gaps. */
function renumber(groups: Group[]): void {
  const used = [...new Set(groups.map((group) => group.priority))].sort((a, b) => a - b);
  for (const group of groups) group.priority = used.indexOf(group.priority);
}

/** util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 otherwise (empty parts compare equal). */
function lbPriority(proxy: Locality, endpoint: Locality): number {
  if ((proxy.region ?? "") !== (endpoint.region ?? "")) return 3;
  if ((proxy.zone ?? "") !== (endpoint.zone ?? "")) return 2;
  if ((proxy.subZone ?? "") !== (endpoint.subZone ?? "")) return 1;
  return 0;
}

/** util.LocalityMatch: whether a locality falls under a rule's `region[/zone[/subzone]]`, `*` matching any part. */
function localityMatch(locality: Locality, rule: string): boolean {
  const [region, zone, subZone] = rule.split("/");
  return (
    (region === "*" || (locality.region ?? "") === region) &&
    (zone === undefined || zone === "*" || (locality.zone ?? "") === zone) &&
    (subZone === undefined || subZone === "*" || (locality.subZone ?? "") === subZone)
  );
}

function localityString(locality: Locality | undefined): string {
  return [locality?.region ?? "", locality?.zone ?? "", locality?.subZone ?? ""].join("/");
}

function envoyLocality(locality: Locality): Record<string, string> {
  return {
    ...(locality.region ? { region: locality.region } : {}),
    ...(locality.zone ? { zone: locality.zone } : {}),
    ...(locality.subZone ? { sub_zone: locality.subZone } : {}),
  };
}
