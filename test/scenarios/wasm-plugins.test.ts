// WasmPlugins delivered by the control plane: the filter reaches the gateway by ECDS with its pluginConfig, a
// selector that does not match the proxy leaves it out, phases order the filters, and an edit reconfigures the
// running Envoy. Uses the hello filter, which sets `x-skiff-hello` to its configuration on every response: with
// two of them, the one earlier in the chain runs last on the response, so its value is the one the client sees.
import { Agent } from "node:http";
import { createHash } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "./mesh.js";

const HELLO = readFileSync(join(PROJECT_ROOT, "build", "filters", "hello.wasm"));

function plugins(phases: { first: string; second: string }, secondGreeting = "second"): string {
  const plugin = (name: string, phase: string, greeting: string, selector: string) => `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: ${name}, namespace: shop }
spec:
  selector: { matchLabels: { ${selector} } }
  url: modules/hello.wasm
  phase: ${phase}
  pluginConfig: { greeting: ${greeting} }
`;
  return [
    plugin("first", phases.first, "first", "istio: ingressgateway"),
    plugin("second", phases.second, secondGreeting, "istio: ingressgateway"),
    plugin("elsewhere", "AUTHN", "elsewhere", "app: not-this-proxy"),
  ].join("---\n");
}

describeE2E("scenario: WasmPlugins on the gateway", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;
  // A listener update applies to new connections (old ones drain), so each request opens its own.
  const fresh = () => new Agent({ keepAlive: false });
  const greeting = async () => (await send(port, { headers: { host: "shop.example.com" }, agent: fresh() })).headers["x-skiff-hello"];

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    port = await freePort();
    mesh = await startMesh(
      {
        "gateway.yaml": gatewayRoute(port, "shop.example.com", "backend"),
        "backend.yaml": serviceEntry("backend", 8000, { v1: backend.port }),
        "plugins.yaml": plugins({ first: "AUTHN", second: "STATS" }),
        "modules/hello.wasm": HELLO,
      },
      GATEWAY,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  it("runs the plugins in phase order with their pluginConfig, and only those selecting this proxy", async () => {
    const response = await send(port, { headers: { host: "shop.example.com" }, agent: fresh() });
    expect(response.status).toBe(200);
    expect(response.headers["x-skiff-hello"]).toBe('{"greeting":"first"}');
    const filters = await mesh.envoy.admin("/config_dump");
    expect(filters).toContain("extensions.istio.io/wasmplugin/shop.first");
    expect(filters).toContain("extensions.istio.io/wasmplugin/shop.second");
    expect(filters).not.toContain("extensions.istio.io/wasmplugin/shop.elsewhere");
  });

  it("follows edits without a restart: new order, new configuration", async () => {
    mesh.write("plugins.yaml", plugins({ first: "STATS", second: "AUTHN" }, "second-v2"));
    await eventually(async () => expect(await greeting()).toBe('{"greeting":"second-v2"}'));
  });

  it("fetches a rebuilt module by its new sha256 and keeps answering", async () => {
    // Another module with the same behaviour: hello plus a custom section (id 0, name "rebuilt").
    const rebuilt = Buffer.concat([HELLO, Buffer.from([0, 8, 7]), Buffer.from("rebuilt")]);
    const sha256 = createHash("sha256").update(rebuilt).digest("hex");
    writeFileSync(join(mesh.dir, "modules", "hello.wasm.tmp"), rebuilt);
    renameSync(join(mesh.dir, "modules", "hello.wasm.tmp"), join(mesh.dir, "modules", "hello.wasm"));
    // The control plane sends a module by URL and sha256, or inline when it is small: either names the new one.
    await eventually(async () => {
      const dump = await mesh.envoy.admin("/config_dump");
      expect(dump.includes(sha256) || dump.includes(rebuilt.toString("base64"))).toBe(true);
    });
    expect(await greeting()).toBe('{"greeting":"second-v2"}');
  });
});
