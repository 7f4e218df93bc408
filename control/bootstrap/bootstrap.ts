// The Envoy bootstrap printed by `skiff bootstrap`: it names only the ADS server; listeners, routes, clusters,
// endpoints, secrets and filter configs all come from it.
import { stringify } from "yaml";
import { join } from "node:path";
import type { InterceptionMode, Locality } from "../resources.js";
import { workloadOf } from "../translate/workload.js";

export interface BootstrapOptions {
  nodeId: string;
  role: "gateway" | "sidecar";
  /** Workload labels (node.metadata.LABELS), which select WasmPlugins and the like. */
  labels?: Record<string, string>;
  /** The workload's namespace (node.metadata.NAMESPACE; the control plane assumes "default"). */
  namespace?: string;
  serviceAccount?: string;
  /** The workload's own addresses (node.metadata.INSTANCE_IPS). */
  ips?: string[];
  locality?: Locality;
  /** Sidecars: REDIRECT (default, as in Istio: the pod's traffic is captured by istio-init's rules) or NONE (no
   * capture: listeners bound on 127.0.0.1 per service port). node.metadata.INTERCEPTION_MODE. */
  interceptionMode?: InterceptionMode;
  /** The control plane's plain-text xDS port (development mode), on `xdsHost`, or else: */
  xdsPort?: number;
  /** The control plane's address (default 127.0.0.1): for a sidecar in a pod, the host's address on the mesh bridge. */
  xdsHost?: string;
  /** Several control plane replicas (plain-text xDS), instead of xdsHost/xdsPort: the xDS cluster gets one endpoint
   * each, so a proxy whose replica goes away reconnects to another while it keeps serving what it has. */
  xdsAddresses?: Array<{ host: string; port: number }>;
  /** The folder of the proxy's `skiff agent`: ADS through the agent's xds.sock (the agent holds the mTLS connection
   * to the control plane) and the workload certificate by SDS on its sds.sock, as istio-agent does. */
  agentDir?: string;
  adminPort: number;
  /** Incremental xDS (DELTA_GRPC) instead of state of the world. */
  delta?: boolean;
}

export const XDS_CLUSTER = "skiff-xds";
/** Istio's name for the cluster of the agent's SDS server, which translation names in `sds_config` for the
 * workload certificate (`default`) and the mesh root (`ROOTCA`). */
export const SDS_CLUSTER = "sds-grpc";
/** Istio's SDS resource names, which the agent serves and translation asks for: the workload certificate and the
 * root the mesh's peers are checked against. */
export const WORKLOAD_SECRET = "default";
export const ROOT_SECRET = "ROOTCA";
export const AGENT_XDS_SOCKET = "xds.sock";
export const AGENT_SDS_SOCKET = "sds.sock";

/** A gRPC cluster (HTTP/2) with one endpoint per address. */
function grpcCluster(name: string, ...addresses: Record<string, unknown>[]): Record<string, unknown> {
  return {
    name,
    type: "STATIC",
    connect_timeout: "1s",
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: addresses.map((address) => ({ endpoint: { address } })) }] },
  };
}

/** The labels of Istio's standard metrics, which the istio-stats filter writes into each metric's name as
 * `label=.=value;.;` (Istio's format). A bootstrap-only setting (stats_config) turns each back into a tag, so that
 * /stats/prometheus shows `istio_requests_total{reporter="source",...}` as Istio's proxies do: the regexes are those
 * of Istio's bootstrap (tools/packaging/common/envoy_bootstrap.json in istio/istio). */
export const ISTIO_METRIC_LABELS = [
  "reporter",
  "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
  "source_canonical_service", "source_canonical_revision", "source_cluster",
  "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
  "destination_service", "destination_service_name", "destination_service_namespace",
  "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
  "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
] as const;

/** The bootstrap's `stats_config` for Istio's metric names. */
export function istioStatsConfig(): { stats_tags: Array<{ tag_name: string; regex: string }> } {
  return { stats_tags: ISTIO_METRIC_LABELS.map((label) => ({
    tag_name: label,
    // response_code keeps Envoy's own default extraction (`_rq_200`), which a custom tag of that name replaces.
    regex: label === "response_code" ? "(response_code=\\.=(.+?);\\.;)|_rq(_(\\d{3}))$" : `(${label}=\\.=(.*?);\\.;)`,
  })) };
}

export function bootstrap(options: BootstrapOptions): Record<string, unknown> {
  const ads = { ads: {}, resource_api_version: "V3" };
  return {
    node: {
      id: options.nodeId,
      // Istio's service cluster, `<app>.<namespace>`: what Envoy's tracers report as the span's service (Jaeger's
      // service name), e.g. istio-ingressgateway.istio-system.
      cluster: `${workloadOf({ nodeId: options.nodeId, role: options.role, labels: options.labels ?? {}, namespace: options.namespace ?? "default", ips: [] }).app}.${options.namespace ?? "default"}`,
      metadata: {
        ROLE: options.role,
        LABELS: options.labels ?? {},
        ...(options.namespace ? { NAMESPACE: options.namespace } : {}),
        ...(options.serviceAccount ? { SERVICE_ACCOUNT: options.serviceAccount } : {}),
        ...(options.ips?.length ? { INSTANCE_IPS: options.ips.join(",") } : {}),
        ...(options.role === "sidecar" ? { INTERCEPTION_MODE: options.interceptionMode ?? "REDIRECT" } : {}),
      },
      ...(options.locality ? { locality: { region: options.locality.region, zone: options.locality.zone, sub_zone: options.locality.subZone } } : {}),
    },
    dynamic_resources: {
      ads_config: {
        api_type: options.delta ? "DELTA_GRPC" : "GRPC",
        transport_api_version: "V3",
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER } }],
        set_node_on_first_message_only: true,
      },
      cds_config: ads,
      lds_config: ads,
    },
    static_resources: {
      clusters: options.agentDir
        ? [
            grpcCluster(XDS_CLUSTER, { pipe: { path: join(options.agentDir, AGENT_XDS_SOCKET) } }),
            grpcCluster(SDS_CLUSTER, { pipe: { path: join(options.agentDir, AGENT_SDS_SOCKET) } }),
          ]
        : [grpcCluster(XDS_CLUSTER, ...xdsAddresses(options).map(({ host, port }) => ({ socket_address: { address: host, port_value: port } })))],
    },
    stats_config: istioStatsConfig(),
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort } } },
  };
}

function xdsAddresses(options: BootstrapOptions): Array<{ host: string; port: number }> {
  if (options.xdsAddresses?.length) return options.xdsAddresses;
  if (options.xdsPort === undefined) throw new Error("a bootstrap needs the control plane's xDS port (or addresses) or the agent's folder");
  return [{ host: options.xdsHost ?? "127.0.0.1", port: options.xdsPort }];
}

export function bootstrapYaml(options: BootstrapOptions): string {
  return `# Envoy bootstrap from \`skiff bootstrap\`: everything but the ADS server comes from the control plane.\n${stringify(bootstrap(options), { aliasDuplicateObjects: false })}`;
}
