// `skiff proxy-config diff <proxy>` against a running control plane and a connected gateway Envoy (issue 9 item 7):
// the command shows the Lua filter an EnvoyFilter inserted before the router, naming the patch, and names a proxy
// that is not connected. test/translate/config-diff.test.ts covers the computation in detail.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { describeE2E } from "../harness/e2e.js";
import { freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

const run = promisify(execFile);

/** The CLI from its sources, asynchronously: the control plane it asks runs in this process. */
function skiff(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return run(process.execPath, ["--import", "tsx", "control/cli/main.ts", ...args], { cwd: PROJECT_ROOT, encoding: "utf8" }).then(
    ({ stdout, stderr }) => ({ stdout, stderr, code: 0 }),
    (error: { stdout: string; stderr: string; code: number }) => ({ stdout: error.stdout, stderr: error.stderr, code: error.code }),
  );
}

const LUA = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: tag, namespace: istio-system }
spec:
  workloadSelector: { labels: { istio: ingressgateway } }
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } } }
    patch:
      operation: INSERT_BEFORE
      value:
        name: lua-tag
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          defaultSourceCode: { inlineString: "function envoy_on_request(h) h:headers():add('x-tag', '1') end" }
`;

describeE2E("skiff proxy-config diff", () => {
  let mesh: Mesh;

  beforeAll(async () => {
    const port = await freePort();
    mesh = await startMesh({ "gateway.yaml": gatewayRoute(port, "*", "backend"), "backend.yaml": serviceEntry("backend", await freePort(), { v1: 9 }), "lua.yaml": LUA }, GATEWAY);
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it("shows what the EnvoyFilter changed in the connected gateway's listeners, naming the patch", async () => {
    const result = await skiff(["proxy-config", "diff", GATEWAY.nodeId, "listeners", "--http-port", String(mesh.controlPlane.modules.port)]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^# listeners\/\S+ changed by EnvoyFilter istio-system\/tag spec\.configPatches\[0\] \(HTTP_FILTER INSERT_BEFORE\)$/m);
    expect(result.stdout).toMatch(/^\+ +- name: lua-tag$/m);
    // Only listeners were asked for; the EnvoyFilter changed nothing else.
    expect(result.stdout).not.toMatch(/^# (clusters|routes|ecds)\//m);
  });

  it("names a proxy the control plane does not know", async () => {
    const result = await skiff(["proxy-config", "diff", "nope", "--http-port", String(mesh.controlPlane.modules.port)]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no connected proxy nope");
  });
});
