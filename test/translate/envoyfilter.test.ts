// EnvoyFilter beyond the goldens (fixtures/envoyfilter-*): both field spellings, which proxies a filter selects, the
// order patches apply in, and what validation refuses or warns about, with the reason.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeResource } from "../../control/protos/encode.js";
import { formatConfigError, loadConfigDir, type MeshConfig, watchConfigDir } from "../../control/sources/index.js";
import { checkEnvoyFilters, checkTranslation } from "../../control/translate/check.js";
import { translate } from "../../control/translate/index.js";
import { type ProxyIdentity, TypeUrl } from "../../control/resources.js";
import { testContext } from "./cases.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "skiff-envoyfilter-"));
  writeFileSync(join(dir, "catalog.yaml"), CATALOG);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const CATALOG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 9081 } }]
`;
const CLUSTER = "outbound|8080||catalog.shop.svc.cluster.local";
const sidecar = (namespace: string, labels: Record<string, string> = { app: "webapp" }): ProxyIdentity => ({ nodeId: "p", role: "sidecar", labels, namespace, ips: [] });

/** An EnvoyFilter whose configPatches are `patches` (YAML list items, indented by two). */
function envoyFilter(name: string, namespace: string, patches: string, spec = ""): string {
  return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}  configPatches:
${patches}`;
}

/** A patch that inserts a Lua filter named `name` before the router of every HTTP connection manager. */
const luaBeforeRouter = (name: string) => `  - applyTo: HTTP_FILTER
    match: { listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } } } }
    patch:
      operation: INSERT_BEFORE
      value:
        name: ${name}
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, default_source_code: { inline_string: "-- ${name}" } }
`;

function load(): { mesh: MeshConfig; errors: string[] } {
  const { mesh, errors } = loadConfigDir(dir, { check: checkTranslation });
  return { mesh, errors: errors.map(formatConfigError) };
}

function resources(proxy: ProxyIdentity) {
  const { mesh, errors } = load();
  expect(errors).toEqual([]);
  return translate(mesh, testContext(dir, proxy));
}

function httpFilterNames(proxy: ProxyIdentity): string[] {
  const listener = resources(proxy)[TypeUrl.Listener][0]!.body as any;
  // Istio's stats filter heads every chain (telemetry.ts); these tests are about the filters EnvoyFilters add.
  return listener.filter_chains[0].filters[0].typed_config.http_filters.map((filter: { name: string }) => filter.name).filter((name: string) => !name.startsWith("istio.stats."));
}

describe("EnvoyFilter values", () => {
  it("merge the same whether written in lowerCamel or snake_case, and the result encodes (issue 13, case 4)", () => {
    const merged = (value: string) => {
      writeFileSync(join(dir, "filter.yaml"), envoyFilter("timeouts", "shop", `  - applyTo: CLUSTER\n    match: { cluster: { service: catalog.shop.svc.cluster.local } }\n    patch: { operation: MERGE, value: ${value} }\n`));
      const cluster = resources(sidecar("shop"))[TypeUrl.Cluster].find((c) => c.name === CLUSTER)!;
      expect(() => encodeResource(TypeUrl.Cluster, cluster)).not.toThrow();
      return cluster.body;
    };
    const camel = merged("{ connectTimeout: 2.5s, perConnectionBufferLimitBytes: 1024 }");
    const snake = merged("{ connect_timeout: 2.5s, per_connection_buffer_limit_bytes: 1024 }");
    expect(camel).toEqual(snake);
    expect(camel).toMatchObject({ connect_timeout: "2.500s", per_connection_buffer_limit_bytes: 1024 });
    expect(camel).not.toHaveProperty("connectTimeout");
  });

  it("name the field Envoy's message does not have, with the patch index", () => {
    writeFileSync(join(dir, "filter.yaml"), envoyFilter("typo", "shop", `  - applyTo: CLUSTER\n    patch: { operation: MERGE, value: { connectTimout: 1s } }\n`));
    expect(load().errors).toEqual([
      'filter.yaml: EnvoyFilter shop/typo: spec.configPatches[0].patch.value.connectTimout: unknown field (envoy.config.cluster.v3.Cluster has no field "connectTimout") (the value is an Envoy envoy.config.cluster.v3.Cluster)',
    ]);
  });
});

describe("which EnvoyFilters apply to a proxy", () => {
  it("those of its namespace and of the root namespace, by workloadSelector", () => {
    writeFileSync(
      join(dir, "filters.yaml"),
      [
        envoyFilter("mine", "shop", luaBeforeRouter("shop-all")),
        envoyFilter("selected", "shop", luaBeforeRouter("shop-webapp"), "  workloadSelector: { labels: { app: webapp } }\n"),
        envoyFilter("not-selected", "shop", luaBeforeRouter("shop-other"), "  workloadSelector: { labels: { app: other } }\n"),
        envoyFilter("elsewhere", "billing", luaBeforeRouter("billing")),
        envoyFilter("mesh-wide", "istio-system", luaBeforeRouter("root")),
      ].join("---\n"),
    );
    expect(httpFilterNames(sidecar("shop"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "root", "shop-all", "shop-webapp", "envoy.filters.http.router"]);
    expect(httpFilterNames(sidecar("billing"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "root", "billing", "envoy.filters.http.router"]);
  });

  it("the root namespace is meshconfig.yaml's rootNamespace", () => {
    writeFileSync(join(dir, "meshconfig.yaml"), "rootNamespace: mesh-root\n");
    writeFileSync(join(dir, "filters.yaml"), [envoyFilter("a", "istio-system", luaBeforeRouter("istio-system")), envoyFilter("b", "mesh-root", luaBeforeRouter("mesh-root"))].join("---\n"));
    expect(httpFilterNames(sidecar("shop"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "mesh-root", "envoy.filters.http.router"]);
  });

  it("targetRefs: only the Gateway API gateway of that name in the filter's namespace", () => {
    writeFileSync(join(dir, "gateway.yaml"), GATEWAY);
    writeFileSync(
      join(dir, "filters.yaml"),
      envoyFilter("edge-only", "shop", luaBeforeRouter("edge"), "  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]\n"),
    );
    const gatewayProxy = (name: string, namespace = "shop"): ProxyIdentity => ({
      nodeId: "gw",
      role: "gateway",
      labels: { istio: "ingressgateway", "gateway.networking.k8s.io/gateway-name": name },
      namespace,
      ips: [],
    });
    expect(httpFilterNames(gatewayProxy("edge"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "edge", "envoy.filters.http.router"]);
    expect(httpFilterNames(gatewayProxy("other"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
    expect(httpFilterNames(gatewayProxy("edge", "billing"))).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
    expect(httpFilterNames({ ...gatewayProxy("edge"), labels: { istio: "ingressgateway" } })).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
  });
});

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: ["*"] }]
`;

describe("the order EnvoyFilters apply in", () => {
  it("priority, then the root namespace's first, then name.namespace; patches in the order written", () => {
    writeFileSync(
      join(dir, "filters.yaml"),
      [
        envoyFilter("b-late", "shop", luaBeforeRouter("shop/b-late (priority 10)"), "  priority: 10\n"),
        envoyFilter("z-root", "istio-system", luaBeforeRouter("istio-system/z-root")),
        envoyFilter("a", "shop", luaBeforeRouter("shop/a, patch 0") + luaBeforeRouter("shop/a, patch 1")),
        envoyFilter("early", "shop", luaBeforeRouter("shop/early (priority -5)"), "  priority: -5\n"),
        envoyFilter("c", "shop", luaBeforeRouter("shop/c")),
      ].join("---\n"),
    );
    expect(httpFilterNames(sidecar("shop"))).toEqual([
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "shop/early (priority -5)",
      "istio-system/z-root",
      "shop/a, patch 0",
      "shop/a, patch 1",
      "shop/c",
      "shop/b-late (priority 10)",
      "envoy.filters.http.router",
    ]);
  });

  it("INSERT_* on clusters is ADD, and an ADD in context ANY lands once on a sidecar", () => {
    const added = (name: string, operation: string, context = "ANY") =>
      `  - applyTo: CLUSTER\n    match: { context: ${context} }\n    patch: { operation: ${operation}, value: { name: ${name}, type: STATIC, connect_timeout: 1s } }\n`;
    writeFileSync(join(dir, "filter.yaml"), envoyFilter("adds", "shop", added("first", "INSERT_FIRST") + added("any", "ADD") + added("inbound", "ADD", "SIDECAR_INBOUND") + added("gw", "ADD", "GATEWAY")));
    const names = resources(sidecar("shop"))[TypeUrl.Cluster].map((c) => c.name);
    expect(names.slice(-3)).toEqual(["first", "any", "inbound"]);
    expect(names.filter((name) => name === "any")).toHaveLength(1);
  });
});

describe("what validation refuses, with the reason", () => {
  const refused: Array<[string, string, string]> = [
    ["BOOTSTRAP", "  - applyTo: BOOTSTRAP\n    patch: { operation: MERGE, value: {} }\n", "spec.configPatches[0].applyTo: BOOTSTRAP is not supported"],
    ["REPLACE of a cluster", "  - applyTo: CLUSTER\n    patch: { operation: REPLACE, value: { name: x } }\n", "REPLACE does not apply to CLUSTER (istiod ignores it)"],
    ["REMOVE of an unnamed network filter", "  - applyTo: NETWORK_FILTER\n    patch: { operation: REMOVE }\n", "REMOVE of a NETWORK_FILTER needs match.listener.filterChain.filter.name"],
    ["a subFilter outside HTTP_FILTER", "  - applyTo: NETWORK_FILTER\n    match: { listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: x } } } } }\n    patch: { operation: MERGE, value: {} }\n", "a subFilter match works with applyTo HTTP_FILTER only"],
    ["a cluster match on a listener patch", "  - applyTo: LISTENER\n    match: { cluster: { name: x } }\n    patch: { operation: MERGE, value: {} }\n", "applyTo LISTENER takes a listener match"],
    ["the WAYPOINT context", "  - applyTo: CLUSTER\n    match: { context: WAYPOINT }\n    patch: { operation: MERGE, value: {} }\n", "Skiff has no waypoints"],
    ["filterClass, which istiod never reads", "  - applyTo: HTTP_FILTER\n    patch: { operation: ADD, filterClass: AUTHZ, value: { name: x } }\n", "spec.configPatches[0].patch.filterClass: unknown field"],
    ["MERGE without a value", "  - applyTo: CLUSTER\n    patch: { operation: MERGE }\n", "MERGE needs a value"],
    ["a transport socket beside other fields", "  - applyTo: CLUSTER\n    patch: { operation: MERGE, value: { connect_timeout: 1s, transport_socket: { name: tls } } }\n", "changes only the socket"],
    ["EXTENSION_CONFIG other than ADD", "  - applyTo: EXTENSION_CONFIG\n    patch: { operation: MERGE, value: { name: x } }\n", "MERGE does not apply to EXTENSION_CONFIG"],
    ["a typed_config of a type Envoy does not know", "  - applyTo: HTTP_FILTER\n    patch: { operation: ADD, value: { name: x, typed_config: { '@type': type.googleapis.com/no.such.Type } } }\n", "no.such.Type"],
  ];
  for (const [what, patches, message] of refused) {
    it(what, () => {
      writeFileSync(join(dir, "filter.yaml"), envoyFilter("bad", "shop", patches));
      const { mesh, errors } = load();
      expect(errors.join("\n")).toContain(message);
      expect(errors.every((error) => error.startsWith("filter.yaml: EnvoyFilter shop/bad: spec."))).toBe(true);
      expect(mesh.envoyFilters).toEqual([]);
    });
  }

  it("targetRefs of anything but a Gateway API Gateway, and together with a workloadSelector", () => {
    writeFileSync(join(dir, "a.yaml"), envoyFilter("service", "shop", luaBeforeRouter("x"), "  targetRefs: [{ group: '', kind: Service, name: catalog }]\n"));
    writeFileSync(join(dir, "b.yaml"), envoyFilter("both", "shop", luaBeforeRouter("x"), "  workloadSelector: { labels: { app: a } }\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: edge }]\n"));
    const errors = load().errors.join("\n");
    expect(errors).toContain("a.yaml: EnvoyFilter shop/service: spec.targetRefs[0].group");
    expect(errors).toContain("b.yaml: EnvoyFilter shop/both: spec.targetRefs: at most one of workloadSelector and targetRefs");
  });

  it("a patch that cannot be applied to what it matches, naming the patch and the resource, at load", () => {
    // The router's typed_config is a Router: a Lua configuration does not merge into it.
    writeFileSync(
      join(dir, "filter.yaml"),
      envoyFilter(
        "wrong-type",
        "shop",
        `  - applyTo: HTTP_FILTER
    match: { listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } } } }
    patch:
      operation: MERGE
      value: { typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua } }
`,
      ),
    );
    const { mesh, errors } = load();
    expect(errors).toEqual([
      "filter.yaml: EnvoyFilter shop/wrong-type: spec.configPatches[0]: on the listener 127.0.0.1_8080 of a sidecar in namespace shop: a envoy.extensions.filters.http.lua.v3.Lua does not merge into a envoy.extensions.filters.http.router.v3.Router, so the filter envoy.filters.http.router keeps its typed_config",
    ]);
    expect(mesh.envoyFilters).toEqual([]);
  });

  it("warns about a patch that matches nothing in the proxies the filter selects", () => {
    writeFileSync(
      join(dir, "filter.yaml"),
      envoyFilter("typo", "shop", `  - applyTo: CLUSTER\n    match: { cluster: { service: catalgo.shop.svc.cluster.local } }\n    patch: { operation: MERGE, value: { connect_timeout: 1s } }\n` + luaBeforeRouter("fine")),
    );
    const { mesh, errors } = load();
    expect(errors).toEqual([]);
    expect(checkEnvoyFilters(mesh).warnings.map(formatConfigError)).toEqual([
      "filter.yaml: EnvoyFilter shop/typo: spec.configPatches[0]: matches nothing in the configuration Skiff generates for the proxies this EnvoyFilter selects",
    ]);
  });

  it("a watched folder keeps the last good version of an EnvoyFilter the check refuses", async () => {
    writeFileSync(join(dir, "filter.yaml"), envoyFilter("lua", "shop", luaBeforeRouter("good")));
    const meshes: MeshConfig[] = [];
    const errors: string[][] = [];
    const watcher = watchConfigDir(dir, (mesh) => meshes.push(mesh), (list) => errors.push(list.map(formatConfigError)), { check: checkTranslation });
    try {
      writeFileSync(
        join(dir, "filter.yaml"),
        envoyFilter("lua", "shop", luaBeforeRouter("good") + `  - applyTo: HTTP_FILTER\n    match: { listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } } } }\n    patch: { operation: MERGE, value: { typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua } } }\n`),
      );
      await expect.poll(() => errors.at(-1)?.join("\n") ?? "", { timeout: 5000 }).toContain("EnvoyFilter shop/lua: spec.configPatches[1]");
      const mesh = meshes.at(-1)!;
      expect(mesh.envoyFilters[0]!.spec.configPatches).toHaveLength(1);
    } finally {
      await watcher.close();
    }
  });
});
