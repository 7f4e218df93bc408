// Seed scenario "circuit breaking": a DestinationRule connectionPool (one connection, one pending request) becomes
// the cluster's circuit breakers; a burst of concurrent requests to a slow service gets the overflow shed at once
// with 503 and x-envoy-overloaded, instead of piling up.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, serviceEntry, SIDECAR, startMesh } from "./mesh.js";

describeE2E("scenario: circuit breaking by connectionPool", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend", script: () => ({ delayMs: 1000 }) });
    port = await freePort();
    mesh = await startMesh(
      {
        "backend.yaml": serviceEntry("simple-backend", port, { v1: backend.port }),
        "backend-dr.yaml": `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: simple-backend-dr, namespace: shop }
spec:
  host: simple-backend.shop.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
        maxRetries: 1
        http2MaxRequests: 1
`,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  it("sheds what exceeds one connection and one pending request", async () => {
    const tally = await sendMany(port, { count: 10, concurrency: 10, request: () => ({ headers: { host: "simple-backend" } }) });
    const shed = tally.responses.filter((r) => r.status === 503);
    expect(tally.byStatus[200]).toBeGreaterThanOrEqual(1);
    expect(shed.length).toBeGreaterThanOrEqual(5);
    expect(shed.every((r) => r.headers["x-envoy-overloaded"] === "true")).toBe(true);
    expect(await mesh.envoy.stat(`cluster.outbound|${port}||simple-backend.shop.svc.cluster.local.upstream_rq_pending_overflow`)).toBe(shed.length);
  });
});
