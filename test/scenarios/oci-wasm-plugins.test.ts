// WasmPlugins with oci:// modules from a real registry (distribution on 127.0.0.1, htpasswd auth, the pull secret as
// credentials/<name>/.dockerconfigjson in the config folder), delivered by the control plane to a real Envoy:
// - start-up with the image not there yet: FAIL_OPEN lets requests through, the gateway is not blocked; once the
//   image is pushed, the control plane's retry pulls it and the filter runs, without a restart;
// - an update to an image that cannot be pulled (a wrong sha256 pin) keeps the module the plugin had;
// - a FAIL_CLOSE plugin whose image is missing denies requests (403) instead;
// - `skiff validate` names the WasmPlugin and field of an unpullable or mismatching image.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { Agent } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { Registry } from "../harness/registry.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "./mesh.js";

const HELLO = readFileSync(join(PROJECT_ROOT, "build", "filters", "hello.wasm"));
const PASSWORD = "oci-pull-secret-value";

function plugin(name: string, url: string, failStrategy: string, extra = ""): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: ${name}, namespace: shop }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: ${url}
  imagePullSecret: pull
  failStrategy: ${failStrategy}
  pluginConfig: { greeting: ${name} }
${extra}`;
}

describeE2E("scenario: oci:// WasmPlugins from a registry", () => {
  let registry: Registry;
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;
  let image: string;
  const request = () => send(port, { headers: { host: "shop.example.com" }, agent: new Agent({ keepAlive: false }) });

  beforeAll(async () => {
    registry = await Registry.start({ users: { puller: PASSWORD } });
    image = `oci://${registry.address}/skiff/hello:v1`;
    backend = await startUpstream({ name: "backend" });
    port = await freePort();
    mesh = await startMesh(
      {
        "gateway.yaml": gatewayRoute(port, "shop.example.com", "backend"),
        "backend.yaml": serviceEntry("backend", 8000, { v1: backend.port }),
        "plugins.yaml": plugin("greeter", image, "FAIL_OPEN"),
        "credentials/pull/.dockerconfigjson": JSON.stringify({ auths: { [registry.address]: { username: "puller", password: PASSWORD } } }),
      },
      GATEWAY,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
    await registry?.stop();
  });

  it("starts with the image missing: FAIL_OPEN serves requests, then the pushed image takes effect", async () => {
    const before = await request();
    expect(before.status).toBe(200);
    expect(before.headers["x-skiff-hello"]).toBeUndefined();
    expect(mesh.log.join("\n")).toMatch(/module pull failed \(retrying\): .*skiff\/hello:v1: not found \(404\)/);
    await registry.push("skiff/hello", "v1", HELLO, "compat-oci");
    const after = await eventually(async () => {
      const response = await request();
      expect(response.headers["x-skiff-hello"]).toBe('{"greeting":"greeter"}');
      return response;
    }, 30_000);
    expect(after.status).toBe(200);
    expect(mesh.log.join("\n")).not.toContain(PASSWORD);
  });

  it("keeps the module it had when an update names an image that cannot be pulled", async () => {
    mesh.write("plugins.yaml", plugin("greeter", image, "FAIL_OPEN", `  sha256: "${"0".repeat(64)}"\n`));
    await eventually(async () => expect(mesh.log.join("\n")).toMatch(/module pull failed \(retrying\): .*matches neither the image digest/), 20_000);
    const response = await request();
    expect(response.status).toBe(200);
    expect(response.headers["x-skiff-hello"]).toBe('{"greeting":"greeter"}');
  });

  it("denies requests (403) for a FAIL_CLOSE plugin whose image is missing", async () => {
    mesh.write("plugins.yaml", plugin("greeter", image, "FAIL_OPEN") + "---\n" + plugin("guard", `oci://${registry.address}/skiff/missing:v1`, "FAIL_CLOSE"));
    await eventually(async () => expect((await request()).status).toBe(403), 20_000);
  });

  it("skiff validate names the WasmPlugin and field of a mismatching or missing image", async () => {
    mesh.write("plugins.yaml", plugin("greeter", image, "FAIL_OPEN", `  sha256: "${"0".repeat(64)}"\n`) + "---\n" + plugin("guard", `oci://${registry.address}/skiff/missing:v1`, "FAIL_CLOSE"));
    const result = await promisify(execFile)(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), "validate", mesh.dir], { cwd: PROJECT_ROOT }).catch(
      (error: { stdout: string; stderr: string; code: number }) => error,
    );
    expect(result).toMatchObject({ code: 1 });
    expect(result.stderr).toMatch(/plugins\.yaml: WasmPlugin shop\/greeter: spec\.sha256: .*matches neither the image digest/);
    expect(result.stderr).toMatch(/plugins\.yaml: WasmPlugin shop\/guard: spec\.url: .*skiff\/missing:v1: not found \(404\)/);
    expect(result.stderr).not.toContain(PASSWORD);
  });
});
