// A hand-written sidecar configuration for pods with capture rules, until translation generates Istio's: the virtual
// outbound listener (15001) and virtual inbound listener (15006) with original_dst, passing HTTP on to where it was
// going, as Istio's PassthroughCluster and InboundPassthroughCluster do. The capture tests and the sidecar benchmark run
// it; it has no routes, no mTLS and no telemetry.
import { INBOUND_PASSTHROUGH_SOURCE } from "../../control/mesh/capture.js";

const ROUTER = { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } };

/** A listener on 0.0.0.0:port that restores the original destination and passes HTTP on to it, adding `header`. */
function passthroughListener(name: string, port: number, cluster: string, header: Record<string, string>) {
  return {
    name,
    address: { socket_address: { address: "0.0.0.0", port_value: port } },
    listener_filters: [
      { name: "envoy.filters.listener.original_dst", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst" } },
    ],
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: name,
              route_config: {
                virtual_hosts: [
                  {
                    name: "all",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, route: { cluster } }],
                    request_headers_to_add: Object.entries(header).map(([key, value]) => ({ header: { key, value } })),
                  },
                ],
              },
              http_filters: [ROUTER],
            },
          },
        ],
      },
    ],
  };
}

/** Istio's sidecar in miniature: 15001 outbound to the original destination; 15006 inbound to the app, from
 * 127.0.0.6 as Istio's InboundPassthroughCluster binds. Each side adds a request header naming the pod
 * (x-outbound-sidecar, x-inbound-sidecar), so a test sees which sidecars a request passed. */
export function passthroughSidecarBootstrap(pod: string): Record<string, unknown> {
  const originalDst = (name: string, extra: Record<string, unknown> = {}) => ({ name, type: "ORIGINAL_DST", lb_policy: "CLUSTER_PROVIDED", connect_timeout: "1s", ...extra });
  return {
    node: { id: `sidecar~${pod}`, cluster: pod },
    static_resources: {
      listeners: [
        passthroughListener("virtualOutbound", 15001, "PassthroughCluster", { "x-outbound-sidecar": pod }),
        passthroughListener("virtualInbound", 15006, "InboundPassthroughCluster", { "x-inbound-sidecar": pod }),
      ],
      clusters: [
        originalDst("PassthroughCluster"),
        originalDst("InboundPassthroughCluster", { upstream_bind_config: { source_address: { address: INBOUND_PASSTHROUGH_SOURCE, port_value: 0 } } }),
      ],
    },
  };
}
