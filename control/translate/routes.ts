// VirtualService http routes -> Envoy routes, following Istio's route translation
// (pilot/pkg/networking/core/route/route.go and route/retry/retry.go).
import type { VirtualService } from "../sources/model.js";
import type { Destination, HttpMatch, HttpRoute, StringMatch } from "../sources/schema/index.js";
import { clusterName, duration, typed } from "./envoy.js";
import type { Registry } from "./registry.js";

/** Istio's default retry policy, used when a route sets no `retries`. */
export function defaultRetryPolicy(withPreviousHosts = true): Record<string, unknown> {
  return {
    retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    num_retries: 2,
    ...(withPreviousHosts
      ? {
          retry_host_predicate: [
            { name: "envoy.retry_host_predicates.previous_hosts", typed_config: typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate") },
          ],
        }
      : {}),
    host_selection_retry_max_attempts: "5",
    retriable_status_codes: [503],
  };
}

/** The route Istio gives a service that no VirtualService routes: everything to its default cluster. */
export function defaultRoute(cluster: string): Record<string, unknown> {
  return { name: "default", match: { prefix: "/" }, route: { cluster, timeout: "0s", retry_policy: defaultRetryPolicy() } };
}

export function virtualServiceRoutes(vs: VirtualService, registry: Registry): Record<string, unknown>[] {
  return vs.spec.http.flatMap((http) => {
    const action = routeAction(http, vs.namespace, registry);
    const matches: (HttpMatch | undefined)[] = http.match?.length ? http.match : [undefined];
    return matches.map((match) => {
      const name = [http.name, match?.name].filter(Boolean).join(".");
      return { ...(name ? { name } : {}), match: routeMatch(match), route: action };
    });
  });
}

function destinationCluster(destination: Destination, namespace: string, registry: Registry): string {
  const host = registry.resolveHost(destination.host, namespace);
  const port = destination.port?.number ?? registry.defaultPort(destination.host, namespace);
  return clusterName(port, destination.subset, host);
}

function routeAction(http: HttpRoute, namespace: string, registry: Registry): Record<string, unknown> {
  const action: Record<string, unknown> = {};
  if (http.route.length === 1) {
    action.cluster = destinationCluster(http.route[0]!.destination, namespace, registry);
  } else {
    action.weighted_clusters = {
      clusters: http.route
        .filter((r) => (r.weight ?? 0) > 0)
        .map((r) => ({ name: destinationCluster(r.destination, namespace, registry), weight: r.weight })),
    };
  }
  // Istio turns Envoy's 15 s default off: no timeout unless the VirtualService sets one.
  action.timeout = http.timeout ? duration(http.timeout) : "0s";

  const hashPolicy = consistentHashPolicy(http, namespace, registry);
  if (hashPolicy) action.hash_policy = [hashPolicy];
  const retry = retryPolicy(http, hashPolicy === undefined);
  if (retry) action.retry_policy = retry;

  if (http.mirror) {
    const fraction = mirrorFraction(http);
    if (fraction) {
      action.request_mirror_policies = [{ cluster: destinationCluster(http.mirror, namespace, registry), runtime_fraction: { default_value: fraction } }];
    }
  }
  return action;
}

/** Istio's retry.ConvertPolicy: the default policy, overridden by what `retries` sets; attempts 0 disables it. */
function retryPolicy(http: HttpRoute, withPreviousHosts: boolean): Record<string, unknown> | undefined {
  const policy = defaultRetryPolicy(withPreviousHosts);
  const retries = http.retries;
  if (!retries) return policy;
  if (retries.attempts <= 0) return undefined;
  policy.num_retries = retries.attempts;
  if (retries.retryOn) {
    const parts = retries.retryOn.split(",").map((part) => part.trim()).filter(Boolean);
    const codes = parts.filter((part) => /^\d{3}$/.test(part)).map(Number);
    const conditions = parts.filter((part) => !/^\d{3}$/.test(part));
    if (codes.length > 0 && !conditions.includes("retriable-status-codes")) conditions.push("retriable-status-codes");
    policy.retry_on = conditions.join(",");
    if (codes.length > 0) policy.retriable_status_codes = codes;
    else delete policy.retriable_status_codes;
  }
  if (retries.perTryTimeout) policy.per_try_timeout = duration(retries.perTryTimeout);
  if (retries.retryRemoteLocalities) {
    policy.retry_priority = {
      name: "envoy.retry_priorities.previous_priorities",
      typed_config: typed("envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", { update_frequency: 2 }),
    };
  }
  return policy;
}

/** `mirror` alone mirrors everything; `mirrorPercentage` is a percentage with decimals, 0 turns mirroring off. */
function mirrorFraction(http: HttpRoute): Record<string, unknown> | undefined {
  if (!http.mirrorPercentage) return { numerator: 100, denominator: "HUNDRED" };
  if (http.mirrorPercentage.value <= 0) return undefined;
  return { numerator: Math.round(http.mirrorPercentage.value * 10_000), denominator: "MILLION" };
}

/** A consistentHash load balancer needs a hash policy on the route; Istio adds it when the route has one destination. */
function consistentHashPolicy(http: HttpRoute, namespace: string, registry: Registry): Record<string, unknown> | undefined {
  if (http.route.length !== 1) return undefined;
  const destination = http.route[0]!.destination;
  const service = registry.lookup(destination.host, namespace);
  if (!service) return undefined;
  const rule = registry.destinationRule(service);
  const subset = rule?.spec.subsets?.find((s) => s.name === destination.subset);
  const hash = (subset?.trafficPolicy?.loadBalancer ?? rule?.spec.trafficPolicy?.loadBalancer)?.consistentHash;
  if (!hash) return undefined;
  if (hash.httpHeaderName) return { header: { header_name: hash.httpHeaderName } };
  if (hash.httpCookie) {
    return { cookie: { name: hash.httpCookie.name, ...(hash.httpCookie.path ? { path: hash.httpCookie.path } : {}), ...(hash.httpCookie.ttl ? { ttl: duration(hash.httpCookie.ttl) } : {}) } };
  }
  if (hash.useSourceIp) return { connection_properties: { source_ip: true } };
  if (hash.httpQueryParameterName) return { query_parameter: { name: hash.httpQueryParameterName } };
  return undefined;
}

function routeMatch(match: HttpMatch | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const uri = match?.uri;
  if (uri?.exact !== undefined) out.path = uri.exact;
  else if (uri?.prefix !== undefined) out.prefix = uri.prefix;
  else if (uri?.regex !== undefined) out.safe_regex = { regex: uri.regex };
  else out.prefix = "/";
  if (match?.ignoreUriCase) out.case_sensitive = false;
  const headers = Object.entries(match?.headers ?? {}).map(([name, value]) => ({ name: name.toLowerCase(), string_match: stringMatch(value) }));
  if (match?.method) headers.push({ name: ":method", string_match: stringMatch(match.method) });
  if (headers.length > 0) out.headers = headers;
  return out;
}

function stringMatch(match: StringMatch): Record<string, unknown> {
  if (match.exact !== undefined) return { exact: match.exact };
  if (match.prefix !== undefined) return { prefix: match.prefix };
  return { safe_regex: { regex: match.regex } };
}
