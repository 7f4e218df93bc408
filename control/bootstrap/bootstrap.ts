// The Envoy bootstrap printed by `skiff bootstrap`: it names only the ADS server; listeners, routes, clusters,
// endpoints, secrets and filter configs all come from it.
import { stringify } from "yaml";
import type { Locality } from "../resources.js";

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
  xdsPort: number;
  adminPort: number;
  /** Incremental xDS (DELTA_GRPC) instead of state of the world. */
  delta?: boolean;
}

export const XDS_CLUSTER = "skiff-xds";

export function bootstrap(options: BootstrapOptions): Record<string, unknown> {
  const ads = { ads: {}, resource_api_version: "V3" };
  return {
    node: {
      id: options.nodeId,
      cluster: options.role,
      metadata: {
        ROLE: options.role,
        LABELS: options.labels ?? {},
        ...(options.namespace ? { NAMESPACE: options.namespace } : {}),
        ...(options.serviceAccount ? { SERVICE_ACCOUNT: options.serviceAccount } : {}),
        ...(options.ips?.length ? { INSTANCE_IPS: options.ips.join(",") } : {}),
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
      clusters: [
        {
          name: XDS_CLUSTER,
          type: "STATIC",
          connect_timeout: "1s",
          // xDS is gRPC, so HTTP/2.
          typed_extension_protocol_options: {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
              "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: options.xdsPort } } } }] }],
          },
        },
      ],
    },
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: options.adminPort } } },
  };
}

export function bootstrapYaml(options: BootstrapOptions): string {
  return `# Envoy bootstrap from \`skiff bootstrap\`: everything but the ADS server comes from the control plane.\n${stringify(bootstrap(options), { aliasDuplicateObjects: false })}`;
}
