// EnvoyFilters delivered by the control plane to a real gateway Envoy: a Lua filter before the router (the most
// common EnvoyFilter), the order of filters by priority (and a priority edit applied live), a route added in front of
// the VirtualService's, a cluster added and routed to, a listener added, a network filter that refuses connections,
// and a patch Envoy would refuse, refused at load instead (the proxy keeps what it had, no NACK).
import { Agent } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "./mesh.js";

const HCM = "envoy.filters.network.http_connection_manager";
const ROUTER = "envoy.filters.http.router";

/** A Lua filter, INSERT_BEFORE the router on `port`, that appends `name` to the request header x-order and sets
 * x-lua-<name> on the response. */
function luaOrder(name: string, port: number, priority: number): string {
  return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: order-${name}, namespace: istio-system }
spec:
  workloadSelector: { labels: { istio: ingressgateway } }
  priority: ${priority}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener: { portNumber: ${port}, filterChain: { filter: { name: ${HCM}, subFilter: { name: ${ROUTER} } } } }
    patch:
      operation: INSERT_BEFORE
      value:
        name: lua-${name}
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          defaultSourceCode:
            inlineString: |
              function envoy_on_request(request_handle)
                local order = request_handle:headers():get("x-order")
                request_handle:headers():replace("x-order", order and (order .. ",${name}") or "${name}")
              end
              function envoy_on_response(response_handle)
                response_handle:headers():add("x-lua-${name}", "yes")
              end
`;
}

describeE2E("scenario: EnvoyFilters on the gateway", () => {
  let backend: Upstream;
  let extra: Upstream;
  let mesh: Mesh;
  let port: number;
  let addedPort: number;
  let deniedPort: number;
  const fresh = () => new Agent({ keepAlive: false }); // listener updates apply to new connections

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    extra = await startUpstream({ name: "extra" });
    [port, addedPort, deniedPort] = [await freePort(), await freePort(), await freePort()];
    const servicePort = await freePort();
    mesh = await startMesh(
      {
        "gateway.yaml": gatewayRoute(port, "*", "backend").replace(
          "    hosts: [\"*\"]\n",
          `    hosts: ["*"]\n  - port: { number: ${deniedPort}, name: http-denied, protocol: HTTP }\n    hosts: ["*"]\n`,
        ),
        "backend.yaml": serviceEntry("backend", servicePort, { v1: backend.port }),
        "order-a.yaml": luaOrder("a", port, 10),
        "order-b.yaml": luaOrder("b", port, -10),
        "patches.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: edge, namespace: istio-system }
spec:
  workloadSelector: { labels: { istio: ingressgateway } }
  configPatches:
  - applyTo: CLUSTER
    match: { context: GATEWAY }
    patch:
      operation: ADD
      value:
        name: extra
        type: STATIC
        connectTimeout: 1s
        loadAssignment:
          clusterName: extra
          endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: 127.0.0.1, portValue: ${extra.port} } } } }] }]
  - applyTo: HTTP_ROUTE
    match: { context: GATEWAY, routeConfiguration: { portNumber: ${port} } }
    patch:
      operation: INSERT_FIRST
      value: { name: extra, match: { prefix: /extra }, route: { cluster: extra } }
  - applyTo: HTTP_ROUTE
    match: { context: GATEWAY, routeConfiguration: { portNumber: ${port} } }
    patch:
      operation: INSERT_FIRST
      value: { name: healthz, match: { path: /healthz }, directResponse: { status: 200, body: { inlineString: healthy } } }
  - applyTo: LISTENER
    match: { context: GATEWAY }
    patch:
      operation: ADD
      value:
        name: added
        address: { socket_address: { address: 127.0.0.1, port_value: ${addedPort} } }
        filter_chains:
        - filters:
          - name: ${HCM}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              stat_prefix: added
              route_config: { virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200, body: { inline_string: added listener } } }] }] }
              http_filters: [{ name: ${ROUTER}, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }]
  - applyTo: NETWORK_FILTER
    match: { context: GATEWAY, listener: { portNumber: ${deniedPort} } }
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: deny-all
          rules: { action: DENY, policies: { everyone: { permissions: [{ any: true }], principals: [{ any: true }] } } }
`,
      },
      GATEWAY,
    );
    await eventually(async () => expect((await send(port, { agent: fresh() })).status).toBe(200));
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
    await extra?.stop();
  });

  it("runs Lua filters before the router, in priority order (lower first)", async () => {
    const before = backend.requests.length;
    const response = await send(port, { agent: fresh() });
    expect(response.status).toBe(200);
    expect(response.headers).toMatchObject({ "x-lua-a": "yes", "x-lua-b": "yes", "x-upstream": "backend" });
    expect(backend.requests.slice(before).map((request) => request.headers["x-order"])).toEqual(["b,a"]);
  });

  it("applies a priority edit to the running proxy", async () => {
    mesh.write("order-a.yaml", luaOrder("a", port, -20));
    await eventually(async () => {
      const before = backend.requests.length;
      await send(port, { agent: fresh() });
      expect(backend.requests.slice(before).map((request) => request.headers["x-order"])).toEqual(["a,b"]);
    });
  });

  it("answers a route inserted before the VirtualService's, and routes to a cluster the EnvoyFilter added", async () => {
    const before = backend.requests.length;
    const health = await send(port, { path: "/healthz", agent: fresh() });
    expect(health).toMatchObject({ status: 200, body: "healthy" });
    const routed = await send(port, { path: "/extra/thing", agent: fresh() });
    expect(routed.status).toBe(200);
    expect(routed.headers["x-upstream"]).toBe("extra");
    expect(backend.requests.length).toBe(before);
  });

  it("serves on a listener the EnvoyFilter added", async () => {
    expect(await send(addedPort, { agent: fresh() })).toMatchObject({ status: 200, body: "added listener" });
  });

  it("closes connections on the port whose network filters got a deny-all RBAC filter first", async () => {
    await expect(send(deniedPort, { agent: fresh() })).rejects.toThrow();
    expect(await mesh.envoy.stat(`deny-all.rbac.denied`)).toBeGreaterThan(0);
    // The socket is accepted and then closed by the filter, before any HTTP.
    const closed = await new Promise<boolean>((resolve) => {
      const socket = connect(deniedPort, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
      socket.on("data", () => resolve(false));
      socket.on("close", () => resolve(true));
      socket.on("error", () => resolve(true));
    });
    expect(closed).toBe(true);
  });

  it("refuses at load a patch Envoy would refuse, naming it; the proxy keeps its config and sends no NACK", async () => {
    const broken = luaOrder("broken", port, 20).replace('local order = request_handle:headers():get("x-order")', "local order = = nil");
    mesh.write("order-broken.yaml", broken);
    await eventually(() => {
      const line = mesh.log.find((entry) => entry.includes("EnvoyFilter istio-system/order-broken: spec.configPatches[0]: Envoy refuses the result"));
      expect(line).toBeDefined();
      return Promise.resolve();
    }, 30_000);
    const response = await send(port, { agent: fresh() });
    expect(response.status).toBe(200);
    expect(response.headers["x-lua-broken"]).toBeUndefined();
    expect(response.headers["x-lua-a"]).toBe("yes");
    expect(mesh.log.filter((line) => line.includes("NACK"))).toEqual([]);
  });
});
