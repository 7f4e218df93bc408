// Which DestinationRule traffic policy applies to a port and subset (Istio's util.GetPortLevelTrafficPolicy,
// MergeSubsetTrafficPolicy and model.MergeTrafficPolicy), and which consistent hash a route destination uses
// (route.HashForHTTPDestination).
import type { DestinationRule } from "../sources/model.js";
import type { ConsistentHash, TrafficPolicy } from "../sources/schema/index.js";

type Rule = DestinationRule["spec"];

/** A port's settings replace the service-level loadBalancer, connectionPool, outlierDetection and tls whole, without
 * inheriting what they leave out; a subset's policy (itself resolved for the port) then replaces each component it
 * sets (all of them when it has settings for this port). */
export function policyForPort(service: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): TrafficPolicy | undefined {
  const [base] = portLevel(service, port);
  if (!subset) return base;
  const [own, hasPortLevel] = portLevel(subset, port);
  if (!base) return own;
  const merged: TrafficPolicy = { ...base };
  for (const key of ["connectionPool", "outlierDetection", "loadBalancer", "tls"] as const) {
    if (own?.[key] !== undefined || hasPortLevel) merged[key] = own?.[key] as never;
  }
  if (own?.retryBudget) merged.retryBudget = own.retryBudget;
  delete merged.portLevelSettings;
  return merged;
}

function portLevel(policy: TrafficPolicy | undefined, port: number): [TrafficPolicy | undefined, boolean] {
  const settings = policy?.portLevelSettings?.find((setting) => setting.port.number === port);
  if (!settings) return [policy, false];
  return [{ loadBalancer: settings.loadBalancer, connectionPool: settings.connectionPool, outlierDetection: settings.outlierDetection, tls: settings.tls }, true];
}

/** The consistent hash for a destination: its subset's port-level one, its subset's, the rule's port-level one (for
 * a destination that names its port), the rule's. */
export function consistentHashFor(rule: Rule | undefined, subset: string | undefined, port: number | undefined): ConsistentHash | undefined {
  if (!rule) return undefined;
  const hashOf = (policy: TrafficPolicy | undefined, byPort: boolean) =>
    byPort ? policy?.portLevelSettings?.find((s) => port !== undefined && s.port.number === port)?.loadBalancer?.consistentHash : policy?.loadBalancer?.consistentHash;
  const subsetPolicy = rule.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  return hashOf(subsetPolicy, true) ?? hashOf(subsetPolicy, false) ?? hashOf(rule.trafficPolicy, true) ?? hashOf(rule.trafficPolicy, false);
}
