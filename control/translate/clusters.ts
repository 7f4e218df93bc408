// ServiceEntries and DestinationRules -> clusters and their endpoints, as Istio's cluster builder makes them
// (pilot/pkg/networking/core/cluster_builder.go, cluster_traffic_policy.go): one cluster per service port, plus one
// per DestinationRule subset, named `outbound|<port>|<subset>|<host>`, each with the traffic policy for that port and
// subset (policy.ts).
import type { MeshConfig } from "../sources/index.js";
import type { TrafficPolicy } from "../sources/schema/index.js";
import type { XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, BLACKHOLE_CLUSTER, clusterName, duration, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, typed } from "./envoy.js";
import { type LocalityEndpoint, type LocalityPolicy, localityLbEndpoints, localityPolicy, localityWeighted } from "./locality.js";
import { policyForPort } from "./policy.js";
import type { Registry, Service, ServicePort } from "./registry.js";
import { upstreamTls } from "./upstream-tls.js";
import { type LegacyLoadBalancing, OVERRIDE_HOST_ANNOTATION, overrideHostPolicy } from "./override-host.js";

const MAX_UINT32 = 4_294_967_295;
const HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

export interface ClusterOutput {
  clusters: XdsResource[];
  endpoints: XdsResource[];
  /** File secrets the clusters' TLS names (DestinationRule SIMPLE, MUTUAL). */
  secrets: XdsResource[];
  /** Clusters that refuse their traffic, and why (ISTIO_MUTUAL without workload certificates). */
  refused: Array<{ cluster: string; why: string }>;
}

/** What the clusters' TLS depends on beyond the mesh and the registry (upstream-tls.ts). */
export interface ClusterSecurity {
  trustDomain: string;
  /** False without workload certificates (--plaintext). */
  certificates: boolean;
}

type Port = ServicePort & { protocol: string };
type Json = Record<string, unknown>;

/** The clusters of `services` (those the proxy's scope gives it), and BlackHoleCluster. */
export function buildClusters(mesh: MeshConfig, registry: Registry, services: Service[], security: ClusterSecurity): ClusterOutput {
  const out: ClusterOutput = { clusters: [], endpoints: [], secrets: [], refused: [] };
  for (const service of services) {
    const rule = registry.destinationRule(service);
    const overrideHeader = rule?.annotations?.[OVERRIDE_HOST_ANNOTATION];
    const context = { mesh, registry, security, service, ruleHasWorkloadSelector: rule?.spec.workloadSelector !== undefined };
    for (const port of service.entry.spec.ports) {
      addCluster(out, context, port, undefined, {}, policyForPort(rule?.spec.trafficPolicy, undefined, port.number), overrideHeader);
      for (const subset of rule?.spec.subsets ?? []) {
        addCluster(out, context, port, subset.name, subset.labels, policyForPort(rule?.spec.trafficPolicy, subset.trafficPolicy, port.number), overrideHeader);
      }
    }
  }
  // Istio's cluster for traffic it refuses; it has no endpoints, so requests routed to it fail.
  out.clusters.push({ name: BLACKHOLE_CLUSTER, body: { name: BLACKHOLE_CLUSTER, type: "STATIC", connect_timeout: "10s" } });
  return out;
}

/** The source address of the sidecar's connections to its own workload (Istio's InboundPassthroughBindIpv4), which
 * istio-init's rules let through on loopback instead of capturing them again. */
export const INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6";

/** Istio's clusters to a connection's original destination, speaking HTTP as the downstream does:
 * PassthroughCluster (outbound, ALLOW_ANY) and, bound to 127.0.0.6, InboundPassthroughCluster (inbound, ports no
 * service declares) (buildDefaultPassthroughCluster and buildInboundPassthroughCluster in cluster_builder.go). */
export function passthroughCluster(name: typeof PASSTHROUGH_CLUSTER | typeof INBOUND_PASSTHROUGH_CLUSTER): XdsResource {
  return {
    name,
    body: {
      name,
      type: "ORIGINAL_DST",
      connect_timeout: "10s",
      lb_policy: "CLUSTER_PROVIDED",
      circuit_breakers: { thresholds: [circuitBreakerThreshold(undefined)] },
      typed_extension_protocol_options: {
        [HTTP_PROTOCOL_OPTIONS]: typed(HTTP_PROTOCOL_OPTIONS, { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} } }),
      },
      ...(name === INBOUND_PASSTHROUGH_CLUSTER ? { upstream_bind_config: { source_address: { address: INBOUND_PASSTHROUGH_SOURCE, port_value: 0 } } } : {}),
    },
  };
}

/** A subset's policy replaces the service-level one field by field (Istio's MergeTrafficPolicy). */
export function mergePolicies(base: TrafficPolicy | undefined, subset: TrafficPolicy | undefined): TrafficPolicy | undefined {
  if (!subset) return base;
  return { ...base, ...Object.fromEntries(Object.entries(subset).filter(([, value]) => value !== undefined)) };
}

interface ClusterContext {
  mesh: MeshConfig;
  registry: Registry;
  security: ClusterSecurity;
  service: Service;
  ruleHasWorkloadSelector: boolean;
}

function addCluster(
  out: ClusterOutput,
  { mesh, registry, security, service, ruleHasWorkloadSelector }: ClusterContext,
  port: Port,
  subset: string | undefined,
  labels: Record<string, string>,
  policy: TrafficPolicy | undefined,
  overrideHeader: string | undefined,
): void {
  const name = clusterName(port.number, subset, service.host);
  // An original-destination cluster balances by the address itself (Istio's applyLoadBalancer).
  const originalDestination = service.entry.spec.resolution === "NONE" && registry.viewer?.role !== "gateway";
  const balancing: Partial<ReturnType<typeof loadBalancing>> = originalDestination ? {} : loadBalancing(policy);
  const locality = localityPolicy(mesh, policy);
  const weighted = localityWeighted(locality, balancing.lb_policy);
  const cluster: Json = { name, ...discovery(out, registry, service, port, name, labels, locality, weighted) };
  const tcp = policy?.connectionPool?.tcp;
  cluster.connect_timeout = tcp?.connectTimeout ? duration(tcp.connectTimeout) : "10s";
  // The override-host policy wraps the balancing as its fallback (an original-destination cluster has no hosts to
  // override: warnings.ts says so).
  const overridden = Boolean(overrideHeader && balancing.lb_policy);
  Object.assign(cluster, overridden ? overrideHostPolicy(balancing as LegacyLoadBalancing, overrideHeader!, weighted) : balancing);
  cluster.circuit_breakers = { thresholds: [circuitBreakerThreshold(policy)] };
  if (tcp?.tcpKeepalive) cluster.upstream_connection_options = { tcp_keepalive: tcpKeepalive(tcp.tcpKeepalive) };
  const outlier = outlierDetection(policy);
  const common: Record<string, unknown> = {};
  if (outlier) {
    cluster.outlier_detection = outlier;
    // Istio turns Envoy's panic threshold off when outlier detection is on (minHealthPercent, default 0).
    common.healthy_panic_threshold = { value: policy?.outlierDetection?.minHealthPercent ?? 0 };
  }
  // With load_balancing_policy Envoy refuses it here ("cannot be combined with partial fields ... of
  // common_lb_config"): the override-host fallback carries it instead.
  if (weighted && !overridden) common.locality_weighted_lb_config = {};
  if (Object.keys(common).length > 0) cluster.common_lb_config = common;
  const http2 = port.protocol === "HTTP2" || port.protocol === "GRPC";
  const tls = upstreamTls({
    mesh,
    registry,
    service,
    clusterName: name,
    originalDestination: cluster.type === "ORIGINAL_DST",
    http2,
    tls: policy?.tls,
    ruleHasWorkloadSelector,
    sidecar: registry.viewer?.role !== "gateway",
    proxyNamespace: registry.viewer?.namespace,
    trustDomain: security.trustDomain,
    certificates: security.certificates,
  });
  if (tls.refused) {
    // Fail closed: no endpoints, so every request to it fails (503), rather than plain text where mTLS was asked for.
    out.refused.push({ cluster: name, why: tls.refused });
    out.endpoints = out.endpoints.filter((endpoint) => endpoint.name !== name);
    out.clusters.push({ name, body: { name, type: "STATIC", connect_timeout: cluster.connect_timeout } });
    return;
  }
  Object.assign(cluster, tls.cluster);
  out.secrets.push(...tls.secrets.filter((secret) => !out.secrets.some((known) => known.name === secret.name)));
  const isHttp = port.protocol === "HTTP" || http2;
  const protocolOptions = httpProtocolOptions(port.protocol, policy, isHttp ? tls.httpOptions : undefined);
  if (protocolOptions) cluster.typed_extension_protocol_options = { [HTTP_PROTOCOL_OPTIONS]: protocolOptions };
  out.clusters.push({ name, body: cluster });
}

/** How the cluster finds its endpoints, by the entry's resolution (Istio's convertResolution, cluster_builder.go):
 * STATIC -> EDS; DNS -> strict DNS and DNS_ROUND_ROBIN -> logical DNS, resolving the endpoints' addresses (or the
 * host itself) with the DNS TTL; NONE -> ORIGINAL_DST on a sidecar, which connects to the address the application
 * dialed (on the entry's targetPort, if it names one), and EDS on a gateway, which has no such address. */
function discovery(
  out: ClusterOutput,
  registry: Registry,
  service: Service,
  port: Port,
  name: string,
  labels: Record<string, string>,
  locality: LocalityPolicy | undefined,
  weighted: boolean,
): Json {
  const resolution = service.entry.spec.resolution;
  if (resolution === "NONE" && registry.viewer?.role !== "gateway") {
    return {
      type: "ORIGINAL_DST",
      lb_policy: "CLUSTER_PROVIDED",
      ...(port.targetPort ? { original_dst_lb_config: { upstream_port_override: port.targetPort } } : {}),
    };
  }
  const endpoints = registry.endpoints(service, port, labels);
  // Grouped by locality, with priorities and locality weights for this proxy (locality.ts). Istio applies
  // failoverPriority to EDS clusters only (a TODO for STRICT_DNS there); Skiff applies it to DNS clusters too.
  const assignment = (list: LocalityEndpoint[]) => ({ cluster_name: name, endpoints: localityLbEndpoints(list, registry.viewer, locality, weighted) });
  if (resolution === "DNS" || resolution === "DNS_ROUND_ROBIN") {
    // A LOGICAL_DNS cluster takes exactly one endpoint (Istio keeps the first, mergeServicesInstancesByNamespaceHost).
    const logical = resolution === "DNS_ROUND_ROBIN";
    return {
      // Envoy's DNS cluster extension: STRICT_DNS, or LOGICAL_DNS as all addresses in one endpoint. Istio still
      // writes the deprecated type STRICT_DNS/LOGICAL_DNS with Cluster.respect_dns_ttl and dns_refresh_rate (60 s,
      // the mesh default); this is the same configuration without the deprecation warnings.
      cluster_type: {
        name: "envoy.cluster.dns",
        typed_config: typed("envoy.extensions.clusters.dns.v3.DnsCluster", {
          respect_dns_ttl: true,
          dns_refresh_rate: "60s",
          dns_lookup_family: "V4_ONLY",
          ...(logical ? { all_addresses_in_single_endpoint: true } : {}),
        }),
      },
      load_assignment: assignment(logical ? endpoints.slice(0, 1) : endpoints),
    };
  }
  out.endpoints.push({ name, body: assignment(endpoints) });
  return { type: "EDS", eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: name } };
}

/** Istio's applyLoadBalancer: LEAST_REQUEST (the default, and LEAST_CONN, its deprecated alias) and ROUND_ROBIN with
 * their slow start (warmup), RANDOM, and for consistentHash RING_HASH (minimum ring size, 1024 unless set) or MAGLEV
 * (table size); the hash key itself goes on the routes (routes.ts). */
function loadBalancing(policy: TrafficPolicy | undefined): LegacyLoadBalancing {
  const lb = policy?.loadBalancer;
  const hash = lb?.consistentHash;
  if (hash?.maglev) return { lb_policy: "MAGLEV", ...(hash.maglev.tableSize ? { maglev_lb_config: { table_size: String(hash.maglev.tableSize) } } : {}) };
  if (hash?.ringHash) {
    const size = hash.ringHash.minimumRingSize;
    return { lb_policy: "RING_HASH", ...(size ? { ring_hash_lb_config: { minimum_ring_size: String(size) } } : {}) };
  }
  if (hash) return { lb_policy: "RING_HASH", ring_hash_lb_config: { minimum_ring_size: String(hash.minimumRingSize ?? 1024) } };
  if (lb?.simple === "RANDOM") return { lb_policy: "RANDOM" };
  const slowStart = slowStartConfig(lb);
  if (lb?.simple === "ROUND_ROBIN") return { lb_policy: "ROUND_ROBIN", ...(slowStart ? { round_robin_lb_config: { slow_start_config: slowStart } } : {}) };
  return { lb_policy: "LEAST_REQUEST", ...(slowStart ? { least_request_lb_config: { slow_start_config: slowStart } } : {}) };
}

/** Istio's setWarmup (aggression 1 and 10% minimum weight unless set) and, for the deprecated warmupDurationSecs,
 * setSlowStartConfig (the window only). */
function slowStartConfig(lb: TrafficPolicy["loadBalancer"]): Json | undefined {
  if (lb?.warmup) {
    return {
      slow_start_window: duration(lb.warmup.duration),
      aggression: { default_value: lb.warmup.aggression ?? 1, runtime_key: "(" },
      min_weight_percent: { value: lb.warmup.minimumPercent ?? 10 },
    };
  }
  return lb?.warmupDurationSecs ? { slow_start_window: duration(lb.warmupDurationSecs) } : undefined;
}

/** Istio starts from "no limits" (max uint32) and lowers what connectionPool sets; a retryBudget goes here too. */
export function circuitBreakerThreshold(policy: TrafficPolicy | undefined): Json {
  const tcp = policy?.connectionPool?.tcp;
  const http = policy?.connectionPool?.http;
  const budget = policy?.retryBudget;
  return {
    max_connections: tcp?.maxConnections ?? MAX_UINT32,
    max_pending_requests: http?.http1MaxPendingRequests ?? MAX_UINT32,
    max_requests: http?.http2MaxRequests ?? MAX_UINT32,
    max_retries: http?.maxRetries || MAX_UINT32,
    track_remaining: true,
    // Istio's applyRetryBudget: 20% and a concurrency of 3 unless set.
    ...(budget
      ? {
          retry_budget: {
            budget_percent: { value: budget.percent ?? 20 },
            min_retry_concurrency: budget.minRetryConcurrency ?? 3,
            ...(budget.budgetInterval ? { budget_interval: duration(budget.budgetInterval) } : {}),
          },
        }
      : {}),
  };
}

/** Istio's setKeepAliveSettings: SO_KEEPALIVE, with the probes, idle time and interval set (in whole seconds). */
function tcpKeepalive(keepalive: NonNullable<NonNullable<NonNullable<TrafficPolicy["connectionPool"]>["tcp"]>["tcpKeepalive"]>): Json {
  const seconds = (value: string) => Math.floor(Number(duration(value).slice(0, -1)));
  return {
    ...(keepalive.probes ? { keepalive_probes: keepalive.probes } : {}),
    ...(keepalive.time ? { keepalive_time: seconds(keepalive.time) } : {}),
    ...(keepalive.interval ? { keepalive_interval: seconds(keepalive.interval) } : {}),
  };
}

function outlierDetection(policy: TrafficPolicy | undefined): Json | undefined {
  const od = policy?.outlierDetection;
  if (!od) return undefined;
  const out: Json = { enforcing_success_rate: 0 };
  if (od.consecutive5xxErrors !== undefined) {
    out.consecutive_5xx = od.consecutive5xxErrors;
    out.enforcing_consecutive_5xx = od.consecutive5xxErrors > 0 ? 100 : 0;
  }
  if (od.consecutiveGatewayErrors !== undefined) {
    out.consecutive_gateway_failure = od.consecutiveGatewayErrors;
    out.enforcing_consecutive_gateway_failure = od.consecutiveGatewayErrors > 0 ? 100 : 0;
  }
  if (od.interval) out.interval = duration(od.interval);
  if (od.baseEjectionTime) out.base_ejection_time = duration(od.baseEjectionTime);
  if (od.maxEjectionPercent) out.max_ejection_percent = od.maxEjectionPercent;
  if (od.splitExternalLocalOriginErrors) {
    // Connection failures and timeouts count apart from the upstream's own 5xx (Istio's applyOutlierDetection).
    out.split_external_local_origin_errors = true;
    if (od.consecutiveLocalOriginFailures) {
      out.consecutive_local_origin_failure = od.consecutiveLocalOriginFailures;
      out.enforcing_consecutive_local_origin_failure = 100;
    }
    out.enforcing_local_origin_success_rate = 0;
  }
  return out;
}

/** Istio's applyConnectionPool and applyH2Upgrade: HTTP/2 for HTTP2 and GRPC ports and for `h2UpgradePolicy: UPGRADE`
 * (not with useClientProtocol, which speaks the client's protocol upstream), idle timeout (the tcp one if http sets
 * none), requests per connection, connection lifetime, and on HTTP/2 the concurrent streams and keepalive pings.
 * `upstreamOptions`: upstream_http_protocol_options (TLS origination's auto_sni). */
function httpProtocolOptions(protocol: string, policy: TrafficPolicy | undefined, upstreamOptions?: Json): Json | undefined {
  const http = policy?.connectionPool?.http;
  const tcp = policy?.connectionPool?.tcp;
  const common: Json = {};
  const idleTimeout = http?.idleTimeout ?? tcp?.idleTimeout;
  if (idleTimeout) common.idle_timeout = duration(idleTimeout);
  if (http?.maxRequestsPerConnection) common.max_requests_per_connection = http.maxRequestsPerConnection;
  if (tcp?.maxConnectionDuration) common.max_connection_duration = duration(tcp.maxConnectionDuration);
  // An HTTP2/GRPC port always speaks HTTP/2 upstream; DO_NOT_UPGRADE (like DEFAULT, as the mesh default is not to
  // upgrade) keeps HTTP/1.1 ports as they are.
  const upgrade = protocol === "HTTP2" || protocol === "GRPC" || http?.h2UpgradePolicy === "UPGRADE";
  const http2: Json = {};
  if (http?.maxConcurrentStreams) http2.max_concurrent_streams = http.maxConcurrentStreams;
  if (http?.http2KeepAlive) {
    http2.connection_keepalive = {
      ...(http.http2KeepAlive.interval ? { interval: duration(http.http2KeepAlive.interval) } : {}),
      ...(http.http2KeepAlive.timeout ? { timeout: duration(http.http2KeepAlive.timeout) } : {}),
    };
  }
  let upstream: Json;
  if (http?.useClientProtocol) upstream = { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: http2 } };
  else if (upgrade) upstream = { explicit_http_config: { http2_protocol_options: http2 } };
  else if (Object.keys(common).length > 0 || upstreamOptions) upstream = { explicit_http_config: { http_protocol_options: {} } };
  else return undefined;
  return typed(HTTP_PROTOCOL_OPTIONS, {
    ...(Object.keys(common).length > 0 ? { common_http_protocol_options: common } : {}),
    ...(upstreamOptions ? { upstream_http_protocol_options: upstreamOptions } : {}),
    ...upstream,
  });
}
