// Builds static Envoy bootstraps for e2e tests: one listener on a free port, routes, clusters of test upstreams,
// and Wasm filters loaded from build/filters/.
import { join } from "node:path";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";

export interface ClusterSpec {
  ports: number[];
  /** Talk HTTP/2 without TLS (prior knowledge) to the upstreams. */
  h2c?: boolean;
  /** Merged into the cluster, e.g. { outlier_detection: {...} }. */
  extra?: Record<string, unknown>;
}

export interface BootstrapSpec {
  clusters: Record<string, ClusterSpec>;
  /** HTTP filters before the router. */
  httpFilters?: unknown[];
  /** Routes of the single virtual host; default: everything to the first cluster. */
  routes?: unknown[];
  /** Merged into the virtual host. */
  virtualHost?: Record<string, unknown>;
}

export function staticBootstrap(spec: BootstrapSpec): Record<string, unknown> {
  const firstCluster = Object.keys(spec.clusters)[0];
  return {
    static_resources: {
      listeners: [
        {
          name: "ingress",
          address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "ingress",
                    route_config: {
                      virtual_hosts: [
                        {
                          name: "all",
                          domains: ["*"],
                          routes: spec.routes ?? [{ match: { prefix: "/" }, route: { cluster: firstCluster } }],
                          ...spec.virtualHost,
                        },
                      ],
                    },
                    http_filters: [
                      ...(spec.httpFilters ?? []),
                      { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: Object.entries(spec.clusters).map(([name, cluster]) => ({
        name,
        type: "STATIC",
        connect_timeout: "1s",
        load_assignment: {
          cluster_name: name,
          endpoints: [
            {
              lb_endpoints: cluster.ports.map((port) => ({
                endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } },
              })),
            },
          ],
        },
        ...(cluster.h2c
          ? {
              typed_extension_protocol_options: {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                  "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                  explicit_http_config: { http2_protocol_options: {} },
                },
              },
            }
          : {}),
        ...cluster.extra,
      })),
    },
  };
}

export interface WasmFilterOptions {
  /** JSON-serialisable configuration, or a string passed as-is. */
  configuration?: unknown;
  /** Filters that share a vm_id share a VM (and its shared data) per worker. */
  vmId?: string;
  rootId?: string;
  /** Reject requests (500) instead of passing them when the VM fails (default false). */
  failClosed?: boolean;
}

/** An HTTP filter that loads build/filters/<name>.wasm. */
export function wasmFilter(name: string, options: WasmFilterOptions = {}): Record<string, unknown> {
  const configuration = options.configuration === undefined ? "" : typeof options.configuration === "string" ? options.configuration : JSON.stringify(options.configuration);
  return {
    name: `skiff.${name}`,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      config: {
        name,
        root_id: options.rootId ?? name,
        configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: configuration },
        failure_policy: options.failClosed ? "FAIL_CLOSED" : "FAIL_OPEN",
        vm_config: {
          vm_id: options.vmId ?? name,
          runtime: "envoy.wasm.runtime.v8",
          code: { local: { filename: join(PROJECT_ROOT, "build", "filters", `${name}.wasm`) } },
        },
      },
    },
  };
}
