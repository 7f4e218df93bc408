// The first proof that AssemblyScript output links and runs in Envoy: the hello filter's header on a proxied
// response, with the value from the plugin configuration.
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, loadBootstrap, startEnvoy } from "../harness/envoy.js";
import { send } from "../harness/client.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";

describeE2E("hello filter in Envoy", () => {
  let upstream: Upstream;
  let envoy: Envoy;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream({ name: "backend" });
    envoy = await startEnvoy({ bootstrap: loadBootstrap("static-hello.yaml", { upstream: upstream.port }) });
    port = await envoy.listenerPort("ingress");
  });

  afterAll(async () => {
    await envoy?.stop();
    await upstream?.stop();
  });

  it("adds the configured header to a response proxied from the upstream", async () => {
    const response = await send(port, { path: "/hello" });
    expect(response.status).toBe(200);
    expect(response.headers["x-skiff-hello"]).toBe("world");
    expect(response.headers["x-upstream"]).toBe("backend");
    expect(JSON.parse(response.body).path).toBe("/hello");
  });

  it("leaves the request untouched on its way to the upstream", async () => {
    await send(port, { path: "/untouched", headers: { "x-client": "yes" } });
    const seen = upstream.requests.find((r) => r.path === "/untouched");
    expect(seen?.headers["x-client"]).toBe("yes");
    expect(seen?.headers["x-skiff-hello"]).toBeUndefined();
  });

  it("loads the module without Wasm link or start errors", () => {
    expect(envoy.log()).not.toMatch(/Failed to load Wasm|missing import|Wasm VM failed/i);
  });
});
