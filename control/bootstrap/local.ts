// The static bootstrap of `skiff run`: one listener with one Wasm filter in front of one upstream, and an admin port,
// everything on 127.0.0.1 (the shape of envoy-configs/static-hello.yaml). Nothing comes from a control plane.

export interface LocalRunSpec {
  /** The filter's name: its Envoy filter name, root_id and vm_id. */
  filter: string;
  /** Absolute path of the module. */
  module: string;
  /** The plugin configuration, as the filter reads it (JSON text, usually). */
  configuration: string;
  /** The upstream every request goes to: an IP address or a host name, and a port. */
  upstream: { host: string; port: number };
  /** Listener port on 127.0.0.1 (0: any free port). */
  port: number;
  /** Admin port on 127.0.0.1 (0: any free port). */
  adminPort: number;
}

export function localBootstrap(spec: LocalRunSpec): Record<string, unknown> {
  const byName = !/^[\d.]+$|:/.test(spec.upstream.host);
  return {
    admin: { address: { socket_address: { address: "127.0.0.1", port_value: spec.adminPort } } },
    static_resources: {
      listeners: [
        {
          name: "ingress",
          address: { socket_address: { address: "127.0.0.1", port_value: spec.port } },
          filter_chains: [
            {
              filters: [
                {
                  name: "envoy.filters.network.http_connection_manager",
                  typed_config: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    stat_prefix: "ingress",
                    route_config: {
                      virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "upstream" } }] }],
                    },
                    http_filters: [
                      {
                        name: `skiff.${spec.filter}`,
                        typed_config: {
                          "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                          config: {
                            name: spec.filter,
                            root_id: spec.filter,
                            configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: spec.configuration },
                            vm_config: {
                              vm_id: spec.filter,
                              runtime: "envoy.wasm.runtime.v8",
                              code: { local: { filename: spec.module } },
                            },
                          },
                        },
                      },
                      { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: "upstream",
          type: byName ? "STRICT_DNS" : "STATIC",
          connect_timeout: "1s",
          load_assignment: {
            cluster_name: "upstream",
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: spec.upstream.host, port_value: spec.upstream.port } } } }] }],
          },
        },
      ],
    },
  };
}
