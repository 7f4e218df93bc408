// Hand-made Envoy resources for the delivery tests: what translation would produce, written out so that these
// tests depend only on the xDS server (and the proto3 JSON shape of the contract in control/resources.ts).
import { emptyResources, type ProxyResources, type ServedModule, TypeUrl } from "../../control/resources.js";

export interface MeshSpec {
  /** Clusters by name, each with the ports of its endpoints on 127.0.0.1 (delivered by EDS). */
  clusters: Record<string, number[]>;
  /** The cluster the route sends to. */
  routeTo: string;
  /** A Wasm filter whose config arrives by ECDS. */
  wasm?: { module: ServedModule; moduleCluster: { name: string; port: number }; configuration: string };
}

const LISTENER = "ingress";
const ROUTE = "ingress-routes";
export const WASM_FILTER = "skiff-hello";

const any = (type: string, body: Record<string, unknown>) => ({ "@type": `type.googleapis.com/${type}`, ...body });
const address = (port: number) => ({ socket_address: { address: "127.0.0.1", port_value: port } });

export function meshResources(spec: MeshSpec): ProxyResources {
  const resources = emptyResources();
  for (const [name, ports] of Object.entries(spec.clusters)) {
    resources[TypeUrl.Cluster].push({
      name,
      body: { name, type: "EDS", connect_timeout: "1s", eds_cluster_config: { eds_config: { ads: {}, resource_api_version: "V3" } } },
    });
    resources[TypeUrl.ClusterLoadAssignment].push({
      name,
      body: { cluster_name: name, endpoints: [{ lb_endpoints: ports.map((port) => ({ endpoint: { address: address(port) } })) }] },
    });
  }
  const httpFilters: Record<string, unknown>[] = [];
  if (spec.wasm) {
    const { module, moduleCluster, configuration } = spec.wasm;
    resources[TypeUrl.Cluster].push({
      name: moduleCluster.name,
      body: { name: moduleCluster.name, type: "STATIC", connect_timeout: "1s", load_assignment: { cluster_name: moduleCluster.name, endpoints: [{ lb_endpoints: [{ endpoint: { address: address(moduleCluster.port) } }] }] } },
    });
    httpFilters.push({
      name: WASM_FILTER,
      config_discovery: { config_source: { ads: {}, resource_api_version: "V3" }, type_urls: ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"] },
    });
    resources[TypeUrl.ExtensionConfig].push({
      name: WASM_FILTER,
      body: {
        name: WASM_FILTER,
        typed_config: any("envoy.extensions.filters.http.wasm.v3.Wasm", {
          config: {
            name: "hello",
            root_id: "hello",
            configuration: any("google.protobuf.StringValue", { value: configuration }),
            vm_config: {
              runtime: "envoy.wasm.runtime.v8",
              code: { remote: { http_uri: { uri: module.uri, cluster: moduleCluster.name, timeout: "5s" }, sha256: module.sha256 } },
            },
          },
        }),
      },
    });
  }
  httpFilters.push({ name: "envoy.filters.http.router", typed_config: any("envoy.extensions.filters.http.router.v3.Router", {}) });
  resources[TypeUrl.Listener].push({
    name: LISTENER,
    body: {
      name: LISTENER,
      address: address(0),
      filter_chains: [
        {
          filters: [
            {
              name: "envoy.filters.network.http_connection_manager",
              typed_config: any("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
                stat_prefix: "ingress",
                rds: { route_config_name: ROUTE, config_source: { ads: {}, resource_api_version: "V3" } },
                http_filters: httpFilters,
              }),
            },
          ],
        },
      ],
    },
  });
  resources[TypeUrl.RouteConfiguration].push({
    name: ROUTE,
    body: { name: ROUTE, virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: spec.routeTo } }] }] },
  });
  return resources;
}
