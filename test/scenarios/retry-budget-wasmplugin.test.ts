// Seed scenario "retry budgets" with the retry-budget filter delivered as a WasmPlugin: an upstream failing 100%,
// a VirtualService retrying 5xx 3 times (4 attempts per request). Without the plugin the upstream sees 4x the
// client's requests; with it (budgetPercent 20, minRetryConcurrency 3) at most (1 + 20%) x the requests plus the
// floor, the requests the budget cut short answer with `x-skiff-retry-budget: exhausted`, and clients see no
// `x-envoy-attempt-count` (the filter reads Envoy's upstream.request_attempt_count attribute, so the control plane
// adds nothing to what Istio generates). Only the YAML below and the control plane configure the Envoy (2 workers).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { type Tally, send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, serviceEntry, SIDECAR, startMesh } from "./mesh.js";

const RETRY_BUDGET = readFileSync(join(PROJECT_ROOT, "build", "filters", "retry-budget.wasm"));
const ATTEMPTS = 3;
const BUDGET_PERCENT = 20;
const MIN_RETRY_CONCURRENCY = 3;
const REQUESTS = 100;
const CONCURRENCY = 4;

const virtualService = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: backend, namespace: shop }
spec:
  hosts: [backend]
  http:
  - route:
    - destination: { host: backend }
    retries:
      attempts: ${ATTEMPTS}
      retryOn: 5xx
`;

// maxRetries = the route's attempts (the filter's grant replaces the route's num_retries); a window longer than the
// test, so every request falls in one window and the bound is exact.
const wasmPlugin = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: retry-budget, namespace: shop }
spec:
  selector: { matchLabels: { app: webapp } }
  url: modules/retry-budget.wasm
  failStrategy: FAIL_OPEN
  pluginConfig:
    budgetPercent: ${BUDGET_PERCENT}
    minRetryConcurrency: ${MIN_RETRY_CONCURRENCY}
    maxRetries: ${ATTEMPTS}
    window: 60s
`;

describeE2E("scenario: a retry budget by WasmPlugin", () => {
  const started: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const item of started.splice(0).reverse()) await item.stop();
  });

  async function start(files: Record<string, string | Uint8Array>): Promise<{ backend: Upstream; mesh: Mesh; port: number }> {
    const backend = await startUpstream({ name: "backend", script: () => ({ status: 503 }) });
    started.push(backend);
    const port = await freePort();
    const mesh = await startMesh({ "backend.yaml": serviceEntry("backend", port, { v1: backend.port }), "backend-vs.yaml": virtualService, ...files }, SIDECAR, {
      concurrency: 2,
    });
    started.push(mesh);
    return { backend, mesh, port };
  }

  /** Steady requests, each on its own connection so that both workers serve some. */
  const load = (port: number): Promise<Tally> =>
    sendMany(port, { count: REQUESTS, concurrency: CONCURRENCY, request: () => ({ headers: { host: "backend", connection: "close" } }) });

  it("without the plugin the failing upstream sees 1 + attempts tries per request", async () => {
    const { backend, port } = await start({});
    const tally = await load(port);
    expect(tally.byStatus[503]).toBe(REQUESTS);
    expect(backend.requests.length).toBe(REQUESTS * (1 + ATTEMPTS));
    expect(tally.responses.some((r) => r.headers["x-skiff-retry-budget"] !== undefined)).toBe(false);
  });

  it("with the plugin it sees at most (1 + budget) x the requests plus the floor, and clients see the budget spent", async () => {
    const { backend, mesh, port } = await start({ "retry-budget.yaml": wasmPlugin, "modules/retry-budget.wasm": RETRY_BUDGET });

    // The first request has no budget yet (20% of 1 request rounds to 0); the floor gives it all its retries.
    const first = await send(port, { headers: { host: "backend" } });
    expect(first.status).toBe(503);
    expect(backend.requests.length).toBe(1 + ATTEMPTS);
    expect(first.headers["x-skiff-retry-budget"]).toBeUndefined();

    const tally = await load(port);
    const requests = REQUESTS + 1;
    const retries = backend.requests.length - requests;
    const bound = Math.floor((requests * BUDGET_PERCENT) / 100) + MIN_RETRY_CONCURRENCY;
    expect(retries).toBeLessThanOrEqual(bound);
    // The budget is spent, not refused (each worker's share may leave a retry or two unused).
    expect(retries).toBeGreaterThanOrEqual(bound - 2 * ATTEMPTS);
    const measured = `retry-budget WasmPlugin: ${requests} requests, upstream ${backend.requests.length} (${(backend.requests.length / requests).toFixed(2)}x; bound ${requests + bound}, without the plugin ${requests * (1 + ATTEMPTS)})`;
    console.log(measured);

    // Every client gets the upstream's answer; once the budget is spent most are cut short and marked, and the
    // filter counts exactly those.
    expect(tally.byStatus[503]).toBe(REQUESTS);
    const marked = tally.responses.filter((r) => r.headers["x-skiff-retry-budget"] === "exhausted").length;
    expect(marked).toBeGreaterThan(REQUESTS / 2);
    expect(await mesh.envoy.stat("wasmcustom.retry_budget.exhausted")).toBe(marked);
    expect(await mesh.envoy.stat("wasmcustom.retry_budget.retries")).toBe(retries);
    // The attempt count came from Envoy's attribute on every response; none reached a client as a header.
    expect(await mesh.envoy.stat("wasmcustom.retry_budget.missing_attempt_count")).toBe(0);
    expect([first, ...tally.responses].some((r) => r.headers["x-envoy-attempt-count"] !== undefined)).toBe(false);

    // Both workers served requests, so the bound held over their combined traffic.
    const perWorker = [...(await mesh.envoy.stats(`listener\\.127\\.0\\.0\\.1_${port}\\.worker_\\d+\\.downstream_cx_total`)).values()];
    expect(perWorker).toHaveLength(2);
    for (const connections of perWorker) expect(connections).toBeGreaterThan(0);
  });
});
