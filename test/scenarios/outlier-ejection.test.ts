// Seed scenario "outlier detection": a DestinationRule with outlierDetection (consecutive5xxErrors: 1) makes Envoy
// eject the endpoint that always answers 500, after which every request reaches the healthy one.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

describeE2E("scenario: outlier ejection", () => {
  let healthy: Upstream;
  let broken: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    healthy = await startUpstream({ name: "healthy" });
    broken = await startUpstream({ name: "broken", script: () => ({ status: 500 }) });
    port = await freePort();
    mesh = await startMesh(
      {
        "backend.yaml": `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: simple-backend, namespace: shop }
spec:
  hosts: [simple-backend.shop.svc.cluster.local]
  resolution: STATIC
  ports:
  - { number: ${port}, name: http, protocol: HTTP }
  endpoints:
  - { address: 127.0.0.1, ports: { http: ${healthy.port} } }
  - { address: 127.0.0.1, ports: { http: ${broken.port} } }
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: simple-backend-dr, namespace: shop }
spec:
  host: simple-backend.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 100
`,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await healthy?.stop();
    await broken?.stop();
  });

  it("ejects the host that answers 500 and sends everything to the healthy one", async () => {
    const cluster = `outbound|${port}||simple-backend.shop.svc.cluster.local`;
    // Round robin reaches the broken host within two requests; its first 500 ejects it.
    const warmup = await sendMany(port, { count: 4, request: () => ({ headers: { host: "simple-backend" } }) });
    expect(warmup.byUpstream.broken).toBeGreaterThanOrEqual(1);
    await eventually(async () =>
      expect(await mesh.envoy.stat(`cluster.${cluster}.outlier_detection.ejections_enforced_consecutive_5xx`)).toBeGreaterThanOrEqual(1),
    );
    const after = await sendMany(port, { count: 40, request: () => ({ headers: { host: "simple-backend" } }) });
    expect(after.byUpstream).toEqual({ healthy: 40 });
    expect(after.byStatus).toEqual({ 200: 40 });
  });
});
