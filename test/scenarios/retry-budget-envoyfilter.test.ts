// Seed scenario "retry budgets" with an EnvoyFilter: the seed's applyTo CLUSTER / MERGE patch puts a retry_budget
// into the cluster's circuit breakers. With a budget of 0% and no minimum, Envoy allows no retries at all, so a 503
// that Istio's default policy would retry twice reaches the upstream once, and Envoy counts the retry overflow.
// Istio appends the patched threshold after its default one, which Envoy ignores (it takes the first threshold per
// priority: with the append this test sees 3 tries); Skiff merges it into the default threshold so that the seed's
// patch does what the seed says (control/translate/envoyfilter.ts). golden.test.ts shows an unselected proxy unpatched.
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, serviceEntry, startMesh } from "./mesh.js";

describeE2E("scenario: a retry budget by EnvoyFilter", () => {
  let backend: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend", script: () => ({ status: 503 }) });
    port = await freePort();
    mesh = await startMesh(
      {
        "backend.yaml": serviceEntry("simple-backend", port, { v1: backend.port }),
        "retry-budget.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: simple-backend-retry-budget, namespace: shop }
spec:
  workloadSelector:
    labels: { app: simple-web }
  configPatches:
  - applyTo: CLUSTER
    match:
      context: SIDECAR_OUTBOUND
      cluster:
        portNumber: ${port}
        service: simple-backend.shop.svc.cluster.local
    patch:
      operation: MERGE
      value:
        circuit_breakers:
          thresholds:
          - retry_budget:
              budget_percent: { value: 0 }
              min_retry_concurrency: 0
`,
      },
      { nodeId: "simple-web", role: "sidecar", labels: { app: "simple-web" }, namespace: "shop", ips: [], interceptionMode: "NONE" },
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
  });

  it("stops retries the default policy would make", async () => {
    const before = backend.requests.length;
    const response = await send(port, { headers: { host: "simple-backend" } });
    expect(response.status).toBe(503);
    expect(backend.requests.length - before).toBe(1);
    expect(await mesh.envoy.stat(`cluster.outbound|${port}||simple-backend.shop.svc.cluster.local.upstream_rq_retry_overflow`)).toBe(1);
  });
});
