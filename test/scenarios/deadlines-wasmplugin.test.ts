// Seed scenario "deadlines" with the deadlines filter delivered as a WasmPlugin by the control plane to the gateway:
// a request past its deadline is answered at the gateway and never reaches the service; one whose budget runs out
// while the service is slow ends in the gateway's timeout; one within its budget gets through and the service learns
// what is left. Only the YAML below and the control plane configure the Envoy.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "./mesh.js";

const DEADLINES = readFileSync(join(PROJECT_ROOT, "build", "filters", "deadlines.wasm"));
const HOST = "catalog.example.com";

const wasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: deadlines, namespace: shop }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: modules/deadlines.wasm
  phase: AUTHN
  pluginConfig:
    maxTimeout: 10s
`;

describeE2E("scenario: deadlines by WasmPlugin on the gateway", () => {
  let catalog: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    catalog = await startUpstream({ name: "catalog", script: (request) => ({ delayMs: Number(request.headers["x-delay-ms"] ?? 0) }) });
    port = await freePort();
    mesh = await startMesh(
      {
        "gateway.yaml": gatewayRoute(port, HOST, "catalog"),
        "catalog.yaml": serviceEntry("catalog", 8000, { v1: catalog.port }),
        "deadlines.yaml": wasmPlugin,
        "modules/deadlines.wasm": DEADLINES,
      },
      GATEWAY,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await catalog?.stop();
  });

  it("answers a request past its deadline at the gateway: 504, and the service never sees it", async () => {
    const before = catalog.requests.length;
    const response = await send(port, { headers: { host: HOST, "grpc-timeout": "0m" } });
    expect(response.status).toBe(504);
    expect(response.headers["x-skiff-deadline"]).toBe("expired");
    expect(catalog.requests.length).toBe(before);
    expect(await mesh.envoy.stat("wasmcustom.deadlines.expired")).toBe(1);
  });

  it("ends a request whose budget runs out while the service is slow with the gateway's timeout", async () => {
    const response = await send(port, { headers: { host: HOST, "x-skiff-timeout-ms": "300", "x-delay-ms": "3000" } });
    expect(response.status).toBe(504);
    expect(response.body).toBe("upstream request timeout");
    expect(response.headers["x-skiff-deadline"]).toBe("exceeded");
  });

  it("lets a request within its budget through and tells the service what is left", async () => {
    const response = await send(port, { headers: { host: HOST, "x-skiff-timeout-ms": "5000" } });
    expect(response.status).toBe(200);
    const left = Number(catalog.requests.at(-1)!.headers["x-skiff-timeout-ms"]);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(5000);
  });
});
