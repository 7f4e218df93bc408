// ServiceEntries and DestinationRules -> clusters and their endpoints, as Istio's cluster builder makes them
// (pilot/pkg/networking/core/cluster_traffic_policy.go): one cluster per service port, plus one per DestinationRule
// subset, named `outbound|<port>|<subset>|<host>`.
import type { MeshConfig } from "../sources/index.js";
import type { TrafficPolicy } from "../sources/schema/index.js";
import type { XdsResource } from "../resources.js";
import { ADS_CONFIG_SOURCE, BLACKHOLE_CLUSTER, clusterName, duration, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, typed } from "./envoy.js";
import { type LocalityEndpoint, type LocalityPolicy, localityLbEndpoints, localityPolicy, localityWeighted } from "./locality.js";
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

/** The clusters of `services` (those the proxy's scope gives it), and BlackHoleCluster. */
export function buildClusters(mesh: MeshConfig, registry: Registry, services: Service[], security: ClusterSecurity): ClusterOutput {
  const out: ClusterOutput = { clusters: [], endpoints: [], secrets: [], refused: [] };
  for (const service of services) {
    const rule = registry.destinationRule(service);
    const overrideHeader = rule?.annotations?.[OVERRIDE_HOST_ANNOTATION];
    const context = { mesh, registry, security, service, ruleHasWorkloadSelector: rule?.spec.workloadSelector !== undefined };
    for (const port of service.entry.spec.ports) {
      addCluster(out, context, port, undefined, {}, rule?.spec.trafficPolicy, overrideHeader);
      for (const subset of rule?.spec.subsets ?? []) {
        addCluster(out, context, port, subset.name, subset.labels, mergePolicies(rule?.spec.trafficPolicy, subset.trafficPolicy), overrideHeader);
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
  port: ServicePort & { protocol: string },
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
  const cluster: Record<string, unknown> = { name, ...discovery(out, registry, service, port, name, labels, locality, weighted) };
  cluster.connect_timeout = policy?.connectionPool?.tcp?.connectTimeout ? duration(policy.connectionPool.tcp.connectTimeout) : "10s";
  // The override-host policy wraps the balancing as its fallback (an original-destination cluster has no hosts to
  // override: warnings.ts says so).
  const overridden = Boolean(overrideHeader && balancing.lb_policy);
  Object.assign(cluster, overridden ? overrideHostPolicy(balancing as LegacyLoadBalancing, overrideHeader!, weighted) : balancing);
  cluster.circuit_breakers = { thresholds: [circuitBreakerThreshold(policy)] };
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
 * STATIC -> EDS; DNS -> STRICT_DNS and DNS_ROUND_ROBIN -> LOGICAL_DNS, resolving the endpoints' addresses (or the
 * host itself) with the DNS TTL; NONE -> ORIGINAL_DST on a sidecar, which connects to the address the application
 * dialed (on the entry's targetPort, if it names one), and EDS on a gateway, which has no such address. */
function discovery(
  out: ClusterOutput,
  registry: Registry,
  service: Service,
  port: ServicePort,
  name: string,
  labels: Record<string, string>,
  locality: LocalityPolicy | undefined,
  weighted: boolean,
): Record<string, unknown> {
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
    return {
      type: resolution === "DNS" ? "STRICT_DNS" : "LOGICAL_DNS",
      dns_lookup_family: "V4_ONLY",
      respect_dns_ttl: true,
      dns_refresh_rate: "60s",
      // A LOGICAL_DNS cluster takes exactly one endpoint (Istio keeps the first, mergeServicesInstancesByNamespaceHost).
      load_assignment: assignment(resolution === "DNS_ROUND_ROBIN" ? endpoints.slice(0, 1) : endpoints),
    };
  }
  out.endpoints.push({ name, body: assignment(endpoints) });
  return { type: "EDS", eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: name } };
}

function loadBalancing(policy: TrafficPolicy | undefined): LegacyLoadBalancing {
  const lb = policy?.loadBalancer;
  if (lb?.consistentHash) {
    return { lb_policy: "RING_HASH", ring_hash_lb_config: { minimum_ring_size: String(lb.consistentHash.minimumRingSize ?? 1024) } };
  }
  switch (lb?.simple) {
    case "ROUND_ROBIN":
      return { lb_policy: "ROUND_ROBIN" };
    case "RANDOM":
      return { lb_policy: "RANDOM" };
    default:
      // LEAST_REQUEST, LEAST_CONN (its deprecated alias) and unset: Istio's default since 1.14 is LEAST_REQUEST.
      return { lb_policy: "LEAST_REQUEST" };
  }
}

/** Istio starts from "no limits" (max uint32) and lowers what connectionPool sets. */
export function circuitBreakerThreshold(policy: TrafficPolicy | undefined): Record<string, unknown> {
  const tcp = policy?.connectionPool?.tcp;
  const http = policy?.connectionPool?.http;
  return {
    max_connections: tcp?.maxConnections ?? MAX_UINT32,
    max_pending_requests: http?.http1MaxPendingRequests ?? MAX_UINT32,
    max_requests: http?.http2MaxRequests ?? MAX_UINT32,
    max_retries: http?.maxRetries || MAX_UINT32,
    track_remaining: true,
  };
}

function outlierDetection(policy: TrafficPolicy | undefined): Record<string, unknown> | undefined {
  const od = policy?.outlierDetection;
  if (!od) return undefined;
  const out: Record<string, unknown> = { enforcing_success_rate: 0 };
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
  return out;
}

/** `upstream`: upstream_http_protocol_options (TLS origination's auto_sni). */
function httpProtocolOptions(protocol: string, policy: TrafficPolicy | undefined, upstream?: Record<string, unknown>): Record<string, unknown> | undefined {
  const http = policy?.connectionPool?.http;
  const common: Record<string, unknown> = {};
  if (http?.idleTimeout) common.idle_timeout = duration(http.idleTimeout);
  if (http?.maxRequestsPerConnection) common.max_requests_per_connection = http.maxRequestsPerConnection;
  const http2 = protocol === "HTTP2" || protocol === "GRPC";
  if (!http2 && Object.keys(common).length === 0 && !upstream) return undefined;
  return typed(HTTP_PROTOCOL_OPTIONS, {
    ...(Object.keys(common).length > 0 ? { common_http_protocol_options: common } : {}),
    ...(upstream ? { upstream_http_protocol_options: upstream } : {}),
    explicit_http_config: http2 ? { http2_protocol_options: {} } : { http_protocol_options: {} },
  });
}
