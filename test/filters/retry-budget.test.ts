// retry-budget in a real Envoy with 2 workers: an upstream that always fails, a route that retries 5xx 3 times
// (4 attempts), and the budget holding the upstream's load to at most (1 + budgetPercent) x the client's requests
// plus the floor, where without it the upstream sees 4x; Envoy's native retry_budget in the same scenario for
// comparison; a healthy upstream sees no change; a bad configuration is rejected naming the field.
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy, waitFor } from "../harness/envoy.js";
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { type Tally, sendMany } from "../harness/client.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";

const CLIENT_REQUESTS = 300;
const CONCURRENCY = 4;
const BUDGET_PERCENT = 20;
const MIN_RETRY_CONCURRENCY = 3;
const ROUTE_RETRIES = 3;
// Longer than any test here, so every request of a run falls in one window and the bound is exact.
const WINDOW = "60s";

interface Scenario {
  filter?: Record<string, unknown>;
  /** Envoy's native budget on the cluster instead of the filter. */
  nativeBudget?: boolean;
}

function bootstrap(upstreamPort: number, scenario: Scenario): Record<string, unknown> {
  const thresholds = scenario.nativeBudget
    ? { retry_budget: { budget_percent: { value: BUDGET_PERCENT }, min_retry_concurrency: MIN_RETRY_CONCURRENCY } }
    : // Envoy's default max_retries (3 concurrent retries) would cap retries on its own: lift it so only the
      // mechanism under test limits them.
      { max_retries: 100_000 };
  return staticBootstrap({
    clusters: { backend: { ports: [upstreamPort], extra: { circuit_breakers: { thresholds: [thresholds] } } } },
    routes: [
      {
        match: { prefix: "/" },
        route: {
          cluster: "backend",
          retry_policy: {
            retry_on: "5xx",
            num_retries: ROUTE_RETRIES,
            retry_back_off: { base_interval: "0.001s", max_interval: "0.002s" },
          },
        },
      },
    ],
    // No include_attempt_count_in_response: the filter reads the attempt count from Envoy's
    // upstream.request_attempt_count attribute, so the virtual host needs nothing and clients see no new header.
    httpFilters: scenario.filter ? [wasmFilter("retry-budget", { configuration: scenario.filter })] : [],
  });
}

const budgetConfig = {
  budgetPercent: BUDGET_PERCENT,
  window: WINDOW,
  minRetryConcurrency: MIN_RETRY_CONCURRENCY,
  maxRetries: ROUTE_RETRIES,
};

/** Sends the client's requests, each on its own connection (`connection: close`) so both workers serve some. */
function load(port: number, count = CLIENT_REQUESTS): Promise<Tally> {
  return sendMany(port, { count, concurrency: CONCURRENCY, request: () => ({ headers: { connection: "close" } }) });
}

/** Connections each worker accepted, from the listener's per-worker stats. */
async function connectionsPerWorker(envoy: Envoy): Promise<number[]> {
  const stats = await envoy.stats("worker_\\d+\\.downstream_cx_total");
  return [...stats.entries()].filter(([name]) => name.startsWith("listener.127.0.0.1_")).map(([, value]) => value);
}

describeE2E("retry-budget filter in Envoy (2 workers)", () => {
  const started: Array<{ stop(): Promise<void> }> = [];
  afterEach(async () => {
    for (const item of started.splice(0).reverse()) await item.stop();
  });

  async function run(scenario: Scenario, script?: Parameters<typeof startUpstream>[0]["script"]) {
    const upstream = await startUpstream({ name: "backend", script: script ?? (() => ({ status: 503 })) });
    started.push(upstream);
    const envoy = await startEnvoy({ bootstrap: bootstrap(upstream.port, scenario), concurrency: 2 });
    started.push(envoy);
    return { upstream, envoy, port: await envoy.listenerPort() };
  }

  const measured: Record<string, { client: number; upstream: number }> = {};
  afterAll(() => {
    const rows = Object.entries(measured).map(([name, m]) => `${name}: client ${m.client}, upstream ${m.upstream} (${(m.upstream / m.client).toFixed(2)}x)`);
    console.log(`retry-budget, upstream failing 100%, route num_retries ${ROUTE_RETRIES}, ${CONCURRENCY} concurrent clients, 2 workers:\n  ${rows.join("\n  ")}`);
  });

  it("without a budget the failing upstream sees 4 attempts per client request", async () => {
    const { upstream, port } = await run({});
    const tally = await load(port);
    measured["no budget"] = { client: tally.total, upstream: upstream.requests.length };
    expect(tally.byStatus[503]).toBe(CLIENT_REQUESTS);
    expect(upstream.requests.length).toBe(CLIENT_REQUESTS * (1 + ROUTE_RETRIES));
  });

  it("with the filter the failing upstream sees at most (1 + budget) x the requests plus the floor", async () => {
    const { upstream, envoy, port } = await run({ filter: budgetConfig });
    const tally = await load(port);
    measured["retry-budget filter"] = { client: tally.total, upstream: upstream.requests.length };

    // Every retry counts against budgetPercent of the requests (each worker keeps its own share, so the sum holds
    // exactly), except the floor's minRetryConcurrency retries per window, shared by all workers.
    const bound = Math.floor((CLIENT_REQUESTS * BUDGET_PERCENT) / 100) + MIN_RETRY_CONCURRENCY;
    const retries = upstream.requests.length - CLIENT_REQUESTS;
    expect(retries).toBeLessThanOrEqual(bound);
    // The budget is spent, not just refused: every worker grants what its share allows (within a retry or two).
    expect(retries).toBeGreaterThanOrEqual(bound - MIN_RETRY_CONCURRENCY - 2 * ROUTE_RETRIES);

    // Every client still gets the upstream's own answer; those the budget cut short are marked and counted.
    expect(tally.byStatus[503]).toBe(CLIENT_REQUESTS);
    expect(tally.byUpstream.backend).toBe(CLIENT_REQUESTS);
    const marked = tally.responses.filter((r) => r.headers["x-skiff-retry-budget"] === "exhausted").length;
    expect(marked).toBeGreaterThan(CLIENT_REQUESTS / 2);
    expect(await envoy.stat("wasmcustom.retry_budget.exhausted")).toBe(marked);
    expect(await envoy.stat("wasmcustom.retry_budget.retries")).toBe(retries);
    expect(await envoy.stat("wasmcustom.retry_budget.floor_grants")).toBeGreaterThanOrEqual(1);
    expect(await envoy.stat("cluster.backend.upstream_rq_retry")).toBe(retries);
    // The attempt count came from the attribute on every response; none reached the client as a header.
    expect(await envoy.stat("wasmcustom.retry_budget.missing_attempt_count")).toBe(0);
    expect(tally.responses.some((r) => r.headers["x-envoy-attempt-count"] !== undefined)).toBe(false);
    // Both workers served requests, so the bound held over their combined traffic.
    const perWorker = await connectionsPerWorker(envoy);
    expect(perWorker).toHaveLength(2);
    for (const connections of perWorker) expect(connections).toBeGreaterThan(0);
  });

  it("compares with Envoy's native retry_budget (relative to active requests) in the same scenario", async () => {
    const { upstream, envoy, port } = await run({ nativeBudget: true });
    const tally = await load(port);
    measured["native retry_budget"] = { client: tally.total, upstream: upstream.requests.length };
    expect(tally.byStatus[503]).toBe(CLIENT_REQUESTS);
    // The native budget limits concurrent retries, not their number: it holds back some retries ...
    const overflow = (await envoy.stat("cluster.backend.upstream_rq_retry_overflow")) ?? 0;
    expect(overflow).toBeGreaterThan(0);
    // ... and the upstream sees the attempts Envoy made.
    expect(upstream.requests.length).toBe(CLIENT_REQUESTS + ((await envoy.stat("cluster.backend.upstream_rq_retry")) ?? 0));
  });

  it("the floor is shared by both workers: with budgetPercent 0 only minRetryConcurrency retries happen", async () => {
    const { upstream, envoy, port } = await run({ filter: { ...budgetConfig, budgetPercent: 0 } });
    const tally = await load(port, 40);
    expect(tally.byStatus[503]).toBe(40);
    expect(upstream.requests.length).toBe(40 + MIN_RETRY_CONCURRENCY);
    const perWorker = await connectionsPerWorker(envoy);
    for (const connections of perWorker) expect(connections).toBeGreaterThan(0);
  });

  it("changes nothing for a healthy upstream", async () => {
    const { upstream, envoy, port } = await run({ filter: budgetConfig }, () => ({ status: 200 }));
    const tally = await load(port);
    expect(tally.byStatus[200]).toBe(CLIENT_REQUESTS);
    expect(upstream.requests.length).toBe(CLIENT_REQUESTS);
    expect(tally.responses.some((r) => r.headers["x-skiff-retry-budget"] !== undefined)).toBe(false);
    expect(await envoy.stat("wasmcustom.retry_budget.retries")).toBe(0);
    expect(await envoy.stat("wasmcustom.retry_budget.exhausted")).toBe(0);
    // The router consumes the filter's x-envoy-max-retries; it never reaches the upstream.
    expect(upstream.requests.every((r) => r.headers["x-envoy-max-retries"] === undefined)).toBe(true);
  });

  it("lets retries within the budget rescue requests from a flaky upstream", async () => {
    // After 100 healthy requests (a rate budget starts each window empty), every 10th attempt fails: 10% of the
    // requests need one retry, well within a 20% budget.
    const { upstream, envoy, port } = await run({ filter: budgetConfig }, (_request, index) => ({ status: index >= 100 && index % 10 === 5 ? 503 : 200 }));
    const tally = await load(port);
    expect(tally.byStatus[200]).toBe(CLIENT_REQUESTS);
    const retries = upstream.requests.length - CLIENT_REQUESTS;
    expect(retries).toBeGreaterThanOrEqual(15);
    expect(await envoy.stat("wasmcustom.retry_budget.retries")).toBe(retries);
    expect(await envoy.stat("wasmcustom.retry_budget.exhausted")).toBe(0);
  });
});

describeE2E("retry-budget configuration in Envoy", () => {
  let upstream: Upstream;
  let envoy: Envoy | undefined;
  beforeAll(async () => {
    upstream = await startUpstream({ name: "backend", script: () => ({ status: 503 }) });
  });
  afterAll(async () => {
    await envoy?.stop();
    await upstream?.stop();
  });

  it("rejects a bad field with a log line naming it, and Envoy keeps the previous configuration", async () => {
    // The listener comes from a file (LDS from the filesystem), so its filter configuration can change at run time.
    // The first configuration allows no retries at all.
    const noRetries = { ...budgetConfig, budgetPercent: 0, minRetryConcurrency: 0 };
    envoy = await startEnvoy({ bootstrap: bootstrap(upstream.port, { filter: noRetries }), concurrency: 2, listenersFromFile: true });
    const port = await envoy.listenerPort("ingress");
    await load(port, 10);
    expect(upstream.requests.length).toBe(10);

    envoy.publishListeners(bootstrap(upstream.port, { filter: { ...budgetConfig, budgetPercent: 150 } }));
    await waitFor(async () => (await envoy!.stat("listener_manager.lds.update_rejected")) === 1, "the update is rejected");
    await envoy.waitForLog("retry-budget: invalid configuration: budgetPercent: expected a number from 0 to 100");
    // Still the first configuration: no retries.
    await load(port, 10);
    expect(upstream.requests.length).toBe(20);

    envoy.publishListeners(bootstrap(upstream.port, { filter: { ...budgetConfig, windw: "10s" } }));
    await waitFor(async () => (await envoy!.stat("listener_manager.lds.update_rejected")) === 2, "the update is rejected");
    await envoy.waitForLog("retry-budget: invalid configuration: windw: unknown field");
  });
});

