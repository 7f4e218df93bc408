// The complete Envoy 1.40 API (control/protos: descriptors from go-control-plane/envoy v1.40.0): resources using the
// extensions Skiff and EnvoyFilter users reach for encode through SnapshotCache, the path every pushed resource takes,
// in snake_case and in lowerCamel JSON alike; and Envoy itself (`--mode validate`) accepts them as one bootstrap.
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { messageType } from "../../control/protos/encode.js";
import { envoyRegistry } from "../../control/protos/registry.js";
import { emptyResources, type ProxyResources, TypeUrl } from "../../control/resources.js";
import { SnapshotCache, SnapshotError } from "../../control/snapshots/cache.js";
import { describeE2E } from "../harness/e2e.js";

type Json = Record<string, any>; // Envoy JSON, built and read by field name.

const any = (type: string, body: Json = {}) => ({ "@type": `type.googleapis.com/${type}`, ...body });
const extension = (name: string, type: string, body: Json = {}) => ({ name, typed_config: any(type, body) });
const allowAll = { action: "ALLOW", policies: { everyone: { permissions: [{ any: true }], principals: [{ any: true }] } } };
const cluster = (name: string) => ({ name, type: "STATIC", connect_timeout: "1s", load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 9 } } } }] }] } });
const http2 = { "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": any("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", { explicit_http_config: { http2_protocol_options: {} } }) };
const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), alg: "RS256", kid: "k1", use: "sig" }] });

function httpManager(statPrefix: string, tracing: Json, httpFilters: Json[]) {
  return extension("envoy.filters.network.http_connection_manager", "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
    stat_prefix: statPrefix,
    tracing: { provider: tracing },
    route_config: {
      name: statPrefix,
      virtual_hosts: [
        {
          name: "all",
          domains: ["*"],
          routes: [{ match: { prefix: "/" }, route: { cluster: "backend" } }],
          typed_per_filter_config: {
            "envoy.filters.http.cors": any("envoy.extensions.filters.http.cors.v3.CorsPolicy", { allow_origin_string_match: [{ exact: "https://shop.example" }], allow_methods: "GET,POST" }),
          },
        },
      ],
    },
    http_filters: [...httpFilters, extension("envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router")],
  });
}

/** One gateway's worth of resources touching each extension named in issue 9. */
function resources(): ProxyResources {
  const all = emptyResources();
  all[TypeUrl.Listener].push(
    {
      name: "http",
      body: {
        name: "http",
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        listener_filters: [
          extension("envoy.filters.listener.tls_inspector", "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"),
          extension("envoy.filters.listener.original_dst", "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"),
          extension("envoy.filters.listener.http_inspector", "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"),
        ],
        filter_chains: [
          {
            filters: [
              extension("envoy.filters.network.rbac", "envoy.extensions.filters.network.rbac.v3.RBAC", { stat_prefix: "tcp_rbac", rules: allowAll }),
              httpManager(
                "http",
                extension("envoy.tracers.zipkin", "envoy.config.trace.v3.ZipkinConfig", { collector_cluster: "zipkin", collector_endpoint: "/api/v2/spans", collector_endpoint_version: "HTTP_JSON" }),
                [
                  extension("envoy.filters.http.jwt_authn", "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication", {
                    providers: { shop: { issuer: "https://issuer.example", local_jwks: { inline_string: jwks }, forward: true } },
                    rules: [{ match: { prefix: "/api" }, requires: { provider_name: "shop" } }],
                  }),
                  extension("envoy.filters.http.fault", "envoy.extensions.filters.http.fault.v3.HTTPFault", { abort: { http_status: 503, percentage: { numerator: 0, denominator: "HUNDRED" } } }),
                  extension("envoy.filters.http.cors", "envoy.extensions.filters.http.cors.v3.Cors"),
                  extension("envoy.filters.http.rbac", "envoy.extensions.filters.http.rbac.v3.RBAC", { rules: allowAll }),
                  extension("envoy.filters.http.lua", "envoy.extensions.filters.http.lua.v3.Lua", {
                    default_source_code: { inline_string: 'function envoy_on_response(handle) handle:headers():add("x-lua", "1") end' },
                  }),
                  extension("envoy.filters.http.wasm", "envoy.extensions.filters.http.wasm.v3.Wasm", {
                    config: {
                      name: "hello",
                      failure_policy: "FAIL_RELOAD",
                      reload_config: { backoff: { base_interval: "0.5s", max_interval: "5s" } },
                      vm_config: { runtime: "envoy.wasm.runtime.v8", code: { local: { filename: join(PROJECT_ROOT, "build", "filters", "hello.wasm") } } },
                    },
                  }),
                ],
              ),
            ],
          },
        ],
      },
    },
    {
      name: "otel",
      body: {
        name: "otel",
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        filter_chains: [
          {
            filters: [
              httpManager(
                "otel",
                extension("envoy.tracers.opentelemetry", "envoy.config.trace.v3.OpenTelemetryConfig", { grpc_service: { envoy_grpc: { cluster_name: "otel-collector" } }, service_name: "gateway" }),
                [],
              ),
            ],
          },
        ],
      },
    },
    {
      name: "tcp",
      body: {
        name: "tcp",
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        filter_chains: [
          {
            filters: [
              extension("envoy.filters.network.rbac", "envoy.extensions.filters.network.rbac.v3.RBAC", { stat_prefix: "tcp_rbac", rules: allowAll }),
              extension("envoy.filters.network.tcp_proxy", "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", { stat_prefix: "tcp", cluster: "backend" }),
            ],
          },
        ],
      },
    },
  );
  all[TypeUrl.Cluster].push(
    {
      name: "backend",
      body: {
        ...cluster("backend"),
        load_balancing_policy: {
          policies: [
            {
              typed_extension_config: extension("envoy.load_balancing_policies.override_host", "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost", {
                override_host_sources: [{ header: "x-skiff-destination" }],
                fallback_policy: { policies: [{ typed_extension_config: extension("envoy.load_balancing_policies.round_robin", "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin") }] },
              }),
            },
          ],
        },
      },
    },
    { name: "zipkin", body: cluster("zipkin") },
    { name: "otel-collector", body: { ...cluster("otel-collector"), typed_extension_protocol_options: http2 } },
  );
  return all;
}

/** The proto3 JSON of each encoded resource, read back from its bytes (lowerCamel names, as protobuf prints them). */
function decoded(snapshot: ReturnType<SnapshotCache["set"]>, typeUrl: TypeUrl): Map<string, Json> {
  const schema = messageType(typeUrl);
  const registry = envoyRegistry();
  return new Map([...snapshot.resources.get(typeUrl)!].map(([name, resource]) => [name, toJson(schema, fromBinary(schema, resource.bytes), { registry }) as Json]));
}

describe("the complete Envoy API (descriptors of go-control-plane/envoy v1.40.0)", () => {
  it("encodes RBAC, tcp_proxy, listener filters, Lua, tracers, override_host, Wasm failure_policy, jwt_authn, fault and CORS through the snapshot cache", () => {
    const snapshot = new SnapshotCache().set("gateway", resources());
    const listeners = decoded(snapshot, TypeUrl.Listener);
    const clusters = decoded(snapshot, TypeUrl.Cluster);

    const http = listeners.get("http")!;
    expect(http.listenerFilters.map((filter: Json) => filter.typedConfig["@type"].split(".").at(-1))).toEqual(["TlsInspector", "OriginalDst", "HttpInspector"]);
    const [networkRbac, manager] = http.filterChains[0].filters.map((filter: Json) => filter.typedConfig);
    expect(networkRbac.rules.policies.everyone.permissions).toEqual([{ any: true }]);
    expect(manager.tracing.provider.typedConfig.collectorEndpointVersion).toBe("HTTP_JSON");
    const httpFilters = manager.httpFilters.map((filter: Json) => filter.typedConfig);
    expect(httpFilters.map((config: Json) => config["@type"].split(".").at(-1))).toEqual(["JwtAuthentication", "HTTPFault", "Cors", "RBAC", "Lua", "Wasm", "Router"]);
    expect(httpFilters[0].providers.shop.localJwks.inlineString).toBe(jwks);
    expect(httpFilters[1].abort.httpStatus).toBe(503);
    expect(httpFilters[4].defaultSourceCode.inlineString).toContain("envoy_on_response");
    expect(httpFilters[5].config).toMatchObject({ failurePolicy: "FAIL_RELOAD", reloadConfig: { backoff: { baseInterval: "0.500s" } } });
    expect(manager.routeConfig.virtualHosts[0].typedPerFilterConfig["envoy.filters.http.cors"].allowOriginStringMatch).toEqual([{ exact: "https://shop.example" }]);
    expect(listeners.get("otel")!.filterChains[0].filters[0].typedConfig.tracing.provider.typedConfig.grpcService.envoyGrpc.clusterName).toBe("otel-collector");
    expect(listeners.get("tcp")!.filterChains[0].filters[1].typedConfig).toMatchObject({ statPrefix: "tcp", cluster: "backend" });

    const policy = clusters.get("backend")!.loadBalancingPolicy.policies[0].typedExtensionConfig;
    expect(policy.typedConfig).toMatchObject({ overrideHostSources: [{ header: "x-skiff-destination" }] });
    expect(policy.typedConfig.fallbackPolicy.policies[0].typedExtensionConfig.name).toBe("envoy.load_balancing_policies.round_robin");
  });

  it("takes lowerCamel JSON names as well as snake_case, to the same bytes", () => {
    const snake = new SnapshotCache().set("snake", resources());
    const camel = emptyResources();
    for (const typeUrl of [TypeUrl.Listener, TypeUrl.Cluster]) {
      for (const [name, body] of decoded(snake, typeUrl)) camel[typeUrl].push({ name, body });
    }
    const again = new SnapshotCache().set("camel", camel);
    for (const typeUrl of [TypeUrl.Listener, TypeUrl.Cluster]) {
      for (const [name, resource] of snake.resources.get(typeUrl)!) expect(again.resources.get(typeUrl)!.get(name)!.version, name).toBe(resource.version);
    }
  });

  it("names the field of a bad value deep inside a typed extension", () => {
    const bad = resources();
    const wasm = bad[TypeUrl.Listener][0].body as Json;
    wasm.filter_chains[0].filters[1].typed_config.http_filters[5].typed_config.config.failure_policy = "FAIL_SOMETIMES";
    expect(() => new SnapshotCache().set("gateway", bad)).toThrow(SnapshotError);
    expect(() => new SnapshotCache().set("gateway", bad)).toThrow(/Listener "http": field filter_chains\[0\]\.filters\[1\]\.typed_config\.http_filters\[5\]\.typed_config\.config\.failure_policy/);
  });
});

describeE2E("Envoy accepts what the complete API encodes", () => {
  const work = mkdtempSync(join(tmpdir(), "skiff-envoy-api-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("passes envoy --mode validate with every one of those extensions in one bootstrap", () => {
    const all = resources();
    const bootstrap = { static_resources: { listeners: all[TypeUrl.Listener].map((r) => r.body), clusters: all[TypeUrl.Cluster].map((r) => r.body) } };
    const path = join(work, "bootstrap.json");
    writeFileSync(path, JSON.stringify(bootstrap));
    const result = spawnSync(locateEnvoy().path, ["--mode", "validate", "-c", path, "--log-level", "error"], { encoding: "utf8" });
    expect(`${result.stdout}${result.stderr}`).toContain("OK");
    expect(result.status).toBe(0);
  });
});
