// Seed scenario "retries": an upstream that fails a request a few times and then succeeds. A VirtualService retry
// policy (attempts, retryOn) makes clients see the success; attempts are respected (never more tries than 1 +
// attempts); `attempts: 0` turns retries off; without `retries` Istio's default policy retries a 503 twice.
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, serviceEntry, SIDECAR, startMesh } from "./mesh.js";

describeE2E("scenario: retries", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;
  const tries = new Map<string, number>();

  beforeAll(async () => {
    // Fails the first `x-fail-times` tries of each request (Envoy keeps x-request-id across retries) with `x-fail-status`.
    backend = await startUpstream({
      name: "backend",
      script: (request) => {
        const id = request.headers["x-request-id"]!;
        const count = (tries.get(id) ?? 0) + 1;
        tries.set(id, count);
        return count <= Number(request.headers["x-fail-times"] ?? 0) ? { status: Number(request.headers["x-fail-status"] ?? 500) } : {};
      },
    });
    port = await freePort();
    mesh = await startMesh(
      {
        "backend.yaml": serviceEntry("simple-backend", port, { v1: backend.port }),
        "backend-vs.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: simple-backend-vs, namespace: shop }
spec:
  hosts: [simple-backend]
  http:
  - match: [{ uri: { prefix: /explicit } }]
    route:
    - destination: { host: simple-backend }
    retries:
      attempts: 2
      retryOn: 5xx
      perTryTimeout: 2s
  - match: [{ uri: { prefix: /off } }]
    route:
    - destination: { host: simple-backend }
    retries:
      attempts: 0
  - route:
    - destination: { host: simple-backend }
`,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  async function request(path: string, failTimes: number, failStatus = 500) {
    const before = backend.requests.length;
    const response = await send(port, { path, headers: { host: "simple-backend", "x-fail-times": String(failTimes), "x-fail-status": String(failStatus) } });
    return { status: response.status, tries: backend.requests.length - before };
  }

  it("retries a failing request until it succeeds, within the attempts", async () => {
    expect(await request("/explicit", 2)).toEqual({ status: 200, tries: 3 });
  });

  it("gives up after 1 + attempts tries", async () => {
    expect(await request("/explicit", 5)).toEqual({ status: 500, tries: 3 });
  });

  it("does not retry with attempts: 0", async () => {
    expect(await request("/off", 1, 503)).toEqual({ status: 503, tries: 1 });
  });

  it("applies Istio's default policy without retries: a 503 is retried twice, a 500 is not", async () => {
    expect(await request("/default", 2, 503)).toEqual({ status: 200, tries: 3 });
    expect(await request("/default", 1, 500)).toEqual({ status: 500, tries: 1 });
  });
});
