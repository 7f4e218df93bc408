// DestinationRule annotation `skiff.dev/override-host: <header>` -> the clusters of the rule's host (and of its
// subsets) use Envoy's override-host load-balancing policy (`envoy.load_balancing_policies.override_host`, Envoy
// 1.35+): a request whose header names hosts of the cluster (`ip:port,ip:port`) goes to the first of them that is in
// the cluster (the next one on a retry), any other request is balanced as the rule's loadBalancer says, which becomes
// the policy's `fallback_policy` (envoy source/extensions/load_balancing_policies/override_host/load_balancer.cc:
// getSelectedHosts splits the header on commas, findHost looks each up by `ip:port` in the cluster's hosts). This is
// how a filter steers traffic away from hosts it judged bad: filters/outlier-detector sets that header (its README).
// Istio has no field for it; the annotation keeps the rule valid Istio YAML (schema/annotations.ts).
import { typed } from "./envoy.js";

export const OVERRIDE_HOST_ANNOTATION = "skiff.dev/override-host";

/** The extension load-balancing policy for each legacy `lb_policy`, with the legacy `*_lb_config` field whose
 * fields the extension's message has under the same names (envoy/extensions/load_balancing_policies/<name>/v3). */
const POLICIES: Record<string, { name: string; type: string; config?: string }> = {
  ROUND_ROBIN: { name: "round_robin", type: "round_robin.v3.RoundRobin", config: "round_robin_lb_config" },
  LEAST_REQUEST: { name: "least_request", type: "least_request.v3.LeastRequest", config: "least_request_lb_config" },
  RANDOM: { name: "random", type: "random.v3.Random" },
  RING_HASH: { name: "ring_hash", type: "ring_hash.v3.RingHash", config: "ring_hash_lb_config" },
  MAGLEV: { name: "maglev", type: "maglev.v3.Maglev", config: "maglev_lb_config" },
};

/** Cluster fields that choose a legacy policy: replaced by `load_balancing_policy`. (`common_lb_config`, e.g. the
 * panic threshold, stays: it applies to every policy.) */
export type LegacyLoadBalancing = { lb_policy: string } & Record<string, unknown>;

/** `legacy` (lb_policy and its config) as the fallback of an override-host policy that reads `header`.
 * `localityWeighted`: the cluster balances by locality weight (locality.ts), which the extension policies take in
 * their own `locality_lb_config` rather than from `common_lb_config` (envoy source/extensions/load_balancing_policies/
 * common/load_balancer_impl.cc: the typed config's LocalityLbConfig). */
export function overrideHostPolicy(legacy: LegacyLoadBalancing, header: string, localityWeighted = false): Record<string, unknown> {
  const policy = POLICIES[legacy.lb_policy];
  if (!policy) throw new Error(`no load-balancing extension for lb_policy ${legacy.lb_policy}`);
  const config = (policy.config ? (legacy[policy.config] as Record<string, unknown> | undefined) : undefined) ?? {};
  const fallback = typed(`envoy.extensions.load_balancing_policies.${policy.type}`, localityWeighted ? { ...config, locality_lb_config: { locality_weighted_lb_config: {} } } : config);
  return {
    load_balancing_policy: {
      policies: [
        {
          typed_extension_config: {
            name: "envoy.load_balancing_policies.override_host",
            typed_config: typed("envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost", {
              override_host_sources: [{ header }],
              fallback_policy: { policies: [{ typed_extension_config: { name: `envoy.load_balancing_policies.${policy.name}`, typed_config: fallback } }] },
            }),
          },
        },
      ],
    },
  };
}
