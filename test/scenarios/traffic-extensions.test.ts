// TrafficExtensions delivered by the control plane to a real gateway Envoy, beside a WasmPlugin (which keeps
// working): a Wasm extension by ECDS with its pluginConfig, a Lua extension in place, a live edit of the Lua code,
// and failStrategy after the Wasm VM traps: FAIL_RELOAD serves again with a fresh VM, FAIL_CLOSE refuses every
// request from then on. The Wasm module is the SDK's probe, which traps on `x-probe: trap`.
import { Agent } from "node:http";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "./mesh.js";

function probeExtension(module: string, failStrategy: string): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: probe, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  phase: AUTHN
  wasm:
    url: ${module}
    pluginName: probe
    pluginConfig: { greeting: from-traffic-extension }
    failStrategy: ${failStrategy}
`;
}

function luaExtension(value: string): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: tag, namespace: istio-system }
spec:
  phase: STATS
  lua:
    inlineCode: |
      function envoy_on_response(response_handle)
        response_handle:headers():add("x-lua-tag", "${value}")
      end
`;
}

describeE2E("scenario: TrafficExtensions on the gateway", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;
  let probe: string;
  const fresh = () => new Agent({ keepAlive: false }); // listener and ECDS updates apply to new connections

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    [port, probe] = [await freePort(), await fixtureModule("probe")];
    mesh = await startMesh(
      {
        "gateway.yaml": gatewayRoute(port, "*", "backend"),
        "backend.yaml": serviceEntry("backend", await freePort(), { v1: backend.port }),
        "probe.yaml": probeExtension(probe, "FAIL_RELOAD"),
        "tag.yaml": luaExtension("first"),
        "hello.yaml": `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: hello, namespace: shop }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: ${join(PROJECT_ROOT, "build", "filters", "hello.wasm")}
  pluginConfig: { greeting: from-wasmplugin }
`,
      },
      GATEWAY,
    );
    await eventually(async () => expect((await send(port, { agent: fresh() })).headers["x-probe-greeting"]).toBe("from-traffic-extension"));
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  it("runs the Wasm extension (by ECDS, with its pluginConfig), the Lua one and the WasmPlugin", async () => {
    const response = await send(port, { agent: fresh() });
    expect(response.status).toBe(200);
    expect(response.headers).toMatchObject({ "x-probe-greeting": "from-traffic-extension", "x-lua-tag": "first", "x-upstream": "backend" });
    expect(response.headers["x-skiff-hello"]).toBe(JSON.stringify({ greeting: "from-wasmplugin" }));
  });

  it("applies an edit of the Lua code to the running proxy", async () => {
    mesh.write("tag.yaml", luaExtension("second"));
    await eventually(async () => expect((await send(port, { agent: fresh() })).headers["x-lua-tag"]).toBe("second"));
  });

  it("FAIL_RELOAD: after the VM traps, a fresh VM serves again (Envoy reloads it with a 1 s base backoff)", async () => {
    const vmBefore = (await send(port, { agent: fresh() })).headers["x-probe-vm"];
    expect(vmBefore).toBeDefined();
    const trapped = await send(port, { headers: { "x-probe": "trap" }, agent: fresh() });
    expect(trapped.status).toBeGreaterThanOrEqual(500);
    await eventually(async () => {
      const after = await send(port, { agent: fresh() });
      expect(after.status).toBe(200);
      expect(after.headers["x-probe-vm"]).toBeDefined();
      expect(after.headers["x-probe-vm"]).not.toBe(vmBefore);
    });
  });

  it("FAIL_CLOSE: after the VM traps, every request is refused", async () => {
    mesh.write("probe.yaml", probeExtension(probe, "FAIL_CLOSE"));
    await eventually(async () => {
      const dump = await mesh.envoy.admin("/config_dump?resource=ecds_filters");
      expect(dump).not.toContain("FAIL_RELOAD");
    });
    expect((await send(port, { agent: fresh() })).status).toBe(200);
    const trapped = await send(port, { headers: { "x-probe": "trap" }, agent: fresh() });
    expect(trapped.status).toBeGreaterThanOrEqual(500);
    // Longer than FAIL_RELOAD's backoff: still refused.
    await sleep(3000);
    const after = await send(port, { agent: fresh() });
    expect(after.status).toBeGreaterThanOrEqual(500);
  });
});
