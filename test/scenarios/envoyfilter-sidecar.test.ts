// Issue 9 item 3 on a sidecar: the most common EnvoyFilter, a Lua filter INSERT_BEFORE the router, in context
// SIDECAR_OUTBOUND on the webapp sidecar's listener for one service port, chosen by workloadSelector (an EnvoyFilter
// for another workload's labels does not reach it). test/scenarios/envoyfilter.test.ts shows the gateway side.
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, serviceEntry, SIDECAR, startMesh } from "./mesh.js";

/** A Lua filter before the router of the sidecar's outbound listener on `port`, for workloads labelled app=`app`. */
function luaFilter(name: string, app: string, port: number): string {
  return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: ${name}, namespace: ${SIDECAR.namespace} }
spec:
  workloadSelector: { labels: { app: ${app} } }
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        portNumber: ${port}
        filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } }
    patch:
      operation: INSERT_BEFORE
      value:
        name: ${name}
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          defaultSourceCode:
            inlineString: |
              function envoy_on_request(request_handle)
                request_handle:headers():add("x-${name}", request_handle:headers():get(":path"))
              end
              function envoy_on_response(response_handle)
                response_handle:headers():add("x-${name}-seen", "yes")
              end
`;
}

describeE2E("scenario: a Lua EnvoyFilter on a sidecar", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    port = await freePort();
    mesh = await startMesh(
      {
        "backend.yaml": serviceEntry("backend", port, { v1: backend.port }),
        "lua-webapp.yaml": luaFilter("lua-webapp", "webapp", port),
        "lua-other.yaml": luaFilter("lua-other", "other", port),
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  it("runs the Lua filter the workloadSelector picks before the router on the outbound listener", async () => {
    const response = await send(port, { path: "/catalog/items", headers: { host: "backend.shop.svc.cluster.local" } });
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("backend");
    expect(response.headers["x-lua-webapp-seen"]).toBe("yes");
    expect(response.headers["x-lua-other-seen"]).toBeUndefined();
    const received = backend.requests.at(-1)!;
    expect(received.headers["x-lua-webapp"]).toBe("/catalog/items");
    expect(received.headers["x-lua-other"]).toBeUndefined();
  });
});
