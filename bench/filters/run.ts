// Filter benchmarks (issue 4): each filter of filters/ in a single-worker Envoy, against Envoy with no filter and
// against Envoy's native equivalent, all in one interleaved run. The upstream is healthy: this measures what a
// filter costs on every request, not its behaviour under failure (the e2e tests in test/filters/ show that).
import { wasmFilter } from "../../test/harness/bootstrap.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { compileFilter, projectFilters } from "../../sdk/tools/compile.js";
import { compareInEnvoy, type CompareOptions, envoyTable, type Summary, summarise } from "../lib/compare.js";
import type { VariantSpec } from "../lib/envoys.js";
import { benchModuleVariant, buildVariant, VARIANTS } from "../sdk-vs-peer/build.js";

const FLOOR_MODULE = VARIANTS.find((variant) => variant.sdk === "floor")!;

const ROUTER_ONLY: VariantSpec = { name: "no-filter", description: "Envoy, router only" };

/** The route retry policy of the retry-budget scenario (test/filters/retry-budget.test.ts). */
const retryRoute = {
  match: { prefix: "/" },
  route: { cluster: "upstream", retry_policy: { retry_on: "5xx", num_retries: 3, retry_back_off: { base_interval: "0.001s", max_interval: "0.002s" } } },
};

export interface FilterBench {
  filter: string;
  /** Envoy's own way to do the same, or null. */
  native: VariantSpec | null;
  /** What the filter variant needs besides the filter (routes, clusters), and the filter's configuration. */
  variant: Omit<VariantSpec, "name" | "description" | "httpFilters">;
  configuration: unknown;
  /** Why the native variant is (or is not) comparable. */
  note: string;
}

export const BENCHES: FilterBench[] = [
  {
    filter: "retry-budget",
    native: {
      name: "native-retry-budget",
      description: "route retry policy (5xx, 3 retries) + cluster circuit_breakers retry_budget 20%, min 3",
      routes: [retryRoute],
      virtualHost: { include_attempt_count_in_response: true },
      clusters: { upstream: { extra: { circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 3 } }] } } } },
    },
    variant: {
      routes: [retryRoute],
      virtualHost: { include_attempt_count_in_response: true },
      clusters: { upstream: { extra: { circuit_breakers: { thresholds: [{ max_retries: 100_000 }] } } } },
    },
    configuration: { budgetPercent: 20, window: "10s", minRetryConcurrency: 3, maxRetries: 3 },
    note: "Same route retry policy in both; native budgets retries against active requests, the filter against requests in its window.",
  },
  {
    filter: "cohort-router",
    native: {
      name: "native-cohort",
      description: "route header match x-istio-cohort: internal -> v2, else weighted_clusters v1 90 / v2 10",
      clusters: { v1: {}, v2: {} },
      routes: [
        { match: { prefix: "/", headers: [{ name: "x-istio-cohort", string_match: { exact: "internal" } }] }, route: { cluster: "v2" } },
        { match: { prefix: "/" }, route: { weighted_clusters: { clusters: [{ name: "v1", weight: 90 }, { name: "v2", weight: 10 }] } } },
      ],
    },
    variant: {
      clusters: { v1: {}, v2: {} },
      routes: [
        { match: { prefix: "/", headers: [{ name: "x-skiff-subset", string_match: { exact: "v2" } }] }, route: { cluster: "v2" } },
        { match: { prefix: "/" }, route: { cluster: "v1" } },
      ],
    },
    configuration: {
      rules: [{ name: "internal", subset: "v2", headers: [{ name: "x-istio-cohort", exact: "internal" }] }],
      percentages: { hashOn: { header: "x-user-id" }, cohorts: [{ name: "canary", subset: "v2", percent: 10 }] },
      defaultSubset: "v1",
    },
    note: "Requests carry x-user-id and no x-istio-cohort: the rule misses, the sticky hash decides (the common path). " +
      "Native weighted_clusters splits 90/10 but is not sticky per user; Envoy has no native sticky header cohort.",
  },
  {
    filter: "b3-propagation",
    native: {
      name: "native-zipkin",
      description: "HCM tracing with the Zipkin tracer (B3 headers), 100% sampled, spans to a collector cluster",
      proofStats: "^tracing\\.zipkin",
      clusters: { upstream: {}, zipkin: {} },
      connectionManager: {
        tracing: {
          random_sampling: { value: 100 },
          provider: {
            name: "envoy.tracers.zipkin",
            typed_config: {
              "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
              collector_cluster: "zipkin",
              collector_endpoint: "/api/v2/spans",
              collector_endpoint_version: "HTTP_JSON",
            },
          },
        },
      },
    },
    variant: {},
    configuration: { samplingPercent: 100 },
    note: "Envoy generates x-request-id in both (the HCM default). Native Zipkin also records and reports spans (batched to the collector, here the fast upstream); the filter only propagates headers.",
  },
  {
    filter: "outlier-detector",
    native: {
      name: "native-outlier",
      description: "cluster outlier_detection consecutive_5xx 5, interval 10s, base ejection 30s, max 10%",
      clusters: { upstream: { extra: { outlier_detection: { consecutive_5xx: 5, interval: "10s", base_ejection_time: "30s", max_ejection_percent: 10 } } } },
    },
    variant: {
      clusters: {
        upstream: {
          extra: {
            load_balancing_policy: {
              policies: [
                {
                  typed_extension_config: {
                    name: "envoy.load_balancing_policies.override_host",
                    typed_config: {
                      "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
                      override_host_sources: [{ header: "x-skiff-outlier-host" }],
                      fallback_policy: {
                        policies: [
                          {
                            typed_extension_config: {
                              name: "envoy.load_balancing_policies.round_robin",
                              typed_config: { "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin" },
                            },
                          },
                        ],
                      },
                    },
                  },
                },
              ],
            },
          },
        },
      },
    },
    configuration: { consecutive5xxErrors: 5, interval: "10s", baseEjectionTime: "30s", maxEjectionPercent: 10 },
    note: "The filter steers through the cluster's override_host load-balancing policy (as in test/filters/outlier-detector.test.ts); one healthy host.",
  },
  {
    filter: "deadlines",
    // Envoy's router can take x-envoy-expected-rq-timeout-ms as the timeout itself (respect_expected_rq_timeout),
    // but neither rejects an expired request nor propagates the budget: no equivalent to set beside it.
    native: null,
    variant: { requestHeaders: { "x-skiff-timeout-ms": "5000" } },
    configuration: { maxTimeout: "15s" },
    note: "Every request carries a 5 s budget (the common path: read, shortened route timeout, budget propagated); none expires.",
  },
  {
    filter: "istio-stats",
    // Istio's own stats filter is C++ in Istio's proxy build, not in upstream Envoy: no native equivalent to run.
    native: null,
    variant: {},
    configuration: { reporter: "source", workload: "istio-ingressgateway", namespace: "istio-system", app: "istio-ingressgateway", version: "unknown" },
    note: "As the control plane configures it on a gateway: peer metadata headers added, 4 metrics (a counter, 3 histograms) per request under 25 labels.",
  },
];

/** The Envoy variant of one filter's benchmark: the filter with its configuration, and what the filter needs. */
export function filterVariant(bench: FilterBench): VariantSpec {
  return {
    ...bench.variant,
    name: bench.filter,
    description: `Skiff ${bench.filter} filter${bench.variant.routes ? " (same routes as native)" : ""}`,
    httpFilters: [wasmFilter(bench.filter, { configuration: bench.configuration })],
    proofStats: "wasmcustom",
  };
}

export async function runFilters(options: CompareOptions, log: (line: string) => void): Promise<string> {
  const present = new Map(projectFilters(PROJECT_ROOT).map((filter) => [filter.name, filter]));
  const skipped: string[] = [];
  const specs: VariantSpec[] = [ROUTER_ONLY];
  const measured: FilterBench[] = [];
  for (const bench of BENCHES) {
    if (!present.has(bench.filter)) {
      skipped.push(`${bench.filter}: not in filters/`);
      continue;
    }
    try {
      await compileFilter({ ...present.get(bench.filter)!, config: "asconfig.json", baseDir: PROJECT_ROOT });
    } catch (error) {
      skipped.push(`${bench.filter}: does not build (${(error as Error).message.split("\n").slice(0, 3).join(" ")})`);
      continue;
    }
    measured.push(bench);
    if (bench.native) specs.push(bench.native);
    specs.push(filterVariant(bench));
  }
  await buildVariant(FLOOR_MODULE);
  specs.splice(1, 0, benchModuleVariant("floor", "the floor: reads 3 request headers, adds 1 response header, raw ABI, nothing allocated"));
  log(`filters: measuring ${specs.map((s) => s.name).join(", ")}${skipped.length ? `; skipped ${skipped.join("; ")}` : ""}`);
  const results = await compareInEnvoy(specs, { ...options, log });
  const summaries = summarise(results, ROUTER_ONLY.name);
  const byName = new Map(summaries.map((s) => [s.name, s]));
  return [
    "### Every variant against Envoy with no filter",
    "",
    envoyTable(results, summaries, ROUTER_ONLY.name),
    "",
    "### Each filter against Envoy's native equivalent",
    "",
    "| filter | native equivalent | p50 added: filter / native µs | p99 added: filter / native µs | CPU µs per request: filter / native | CPU µs added vs no-filter: filter / native | capacity filter vs native | configuration | note |",
    "| --- | --- | --- | --- | --- | --- | ---: | --- | --- |",
    ...measured.map((bench) => nativeRow(bench, byName.get(bench.filter)!, bench.native ? byName.get(bench.native.name)! : null)),
    "",
    "Counters at the end of the run, proof that each filter ran and decided (the filter variants' `wasmcustom` counters, Zipkin's spans; " +
      "the outlier detector counts only ejections and steering, so with a healthy upstream it has nothing to count):",
    "",
    ...summaries.filter((s) => s.proof).map((s) => `- ${s.name}: ${s.proof}`),
    ...(skipped.length ? ["", `Not measured: ${skipped.join("; ")}.`] : []),
  ].join("\n");
}

function nativeRow(bench: FilterBench, filter: Summary, native: Summary | null): string {
  const config = "`" + JSON.stringify(bench.configuration) + "`";
  if (!native) return `| ${bench.filter} | none | ${filter.addedP50Us.toFixed(0)} / — | ${filter.addedP99Us.toFixed(0)} / — | ${filter.cpuUsPerRequest.toFixed(1)} / — | ${filter.addedCpuUs.toFixed(1)} / — | — | ${config} | ${bench.note} |`;
  return `| ${bench.filter} | ${native.description} | ${filter.addedP50Us.toFixed(0)} / ${native.addedP50Us.toFixed(0)} | ${filter.addedP99Us.toFixed(0)} / ${native.addedP99Us.toFixed(0)} | ${filter.cpuUsPerRequest.toFixed(1)} / ${native.cpuUsPerRequest.toFixed(1)} | ${filter.addedCpuUs.toFixed(1)} / ${native.addedCpuUs.toFixed(1)} | ${(native.cpuUsPerRequest / filter.cpuUsPerRequest).toFixed(2)}x | ${config} | ${bench.note} |`;
}
