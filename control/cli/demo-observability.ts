// `skiff demo --observability`: Jaeger and Prometheus beside the demo, on their usual ports, when `npx skiff
// components build prometheus jaeger` has built them. Prometheus scrapes the control plane and the gateway every
// second; the gateway sends its spans to Jaeger's Zipkin port (examples/meshconfig.yaml). Without them the demo runs
// as before.
import { componentPath } from "../components/build.js";
import { Jaeger } from "../backends/jaeger.js";
import { Prometheus } from "../backends/prometheus.js";

export const OBSERVABILITY_PORTS = { prometheus: 9090, jaegerQuery: 16686, zipkin: 9411, otlpGrpc: 4317, otlpHttp: 4318 } as const;

export interface DemoObservability {
  prometheus: Prometheus;
  jaeger: Jaeger;
  stop(): Promise<void>;
}

/** Starts both, or explains why not (undefined): the demo goes on without them. */
export async function startDemoObservability(targets: { controlPlane: string; gatewayAdmin: string }): Promise<DemoObservability | undefined> {
  try {
    componentPath("prometheus");
    componentPath("jaeger");
  } catch (error) {
    console.error(`--observability: ${(error as Error).message}\nThe demo runs without Prometheus and Jaeger.`);
    return undefined;
  }
  const jaeger = await Jaeger.start({ query: OBSERVABILITY_PORTS.jaegerQuery, zipkin: OBSERVABILITY_PORTS.zipkin, otlpGrpc: OBSERVABILITY_PORTS.otlpGrpc, otlpHttp: OBSERVABILITY_PORTS.otlpHttp });
  let prometheus: Prometheus;
  try {
    prometheus = await Prometheus.start(
      [
        { job: "skiff-control-plane", address: targets.controlPlane, path: "/metrics" },
        { job: "envoy", address: targets.gatewayAdmin, path: "/stats/prometheus" },
      ],
      { port: OBSERVABILITY_PORTS.prometheus },
    );
  } catch (error) {
    await jaeger.stop();
    throw error;
  }
  return {
    prometheus,
    jaeger,
    stop: async () => {
      await prometheus.stop();
      await jaeger.stop();
    },
  };
}

/** The lines the demo prints: where to look, two PromQL queries, and the trace of one request just made. */
export function observabilityLines(observability: DemoObservability, traceId: string | undefined): string {
  const prom = observability.prometheus.url;
  const jaeger = observability.jaeger.queryUrl;
  const queries = [
    ['sum by (destination_version) (rate(istio_requests_total{reporter="source",destination_service_name="catalog"}[1m]))', "requests per second to catalog, by version (the 90/10 shift)"],
    ["histogram_quantile(0.99, sum by (le) (rate(pilot_proxy_convergence_time_bucket[5m])))", "p99 time from a config edit to the gateway's ACK"],
  ];
  return [
    "",
    `Prometheus ${prom} (scrapes the control plane's /metrics and the gateway's /stats/prometheus every second)`,
    `Jaeger ${jaeger} (the gateway's spans, service istio-ingressgateway.default)`,
    ...queries.map(([query, what]) => `  # ${what}\n  curl -s '${prom}/api/v1/query' --data-urlencode '${query}'`),
    traceId
      ? `  # the trace of a request just sent through the gateway to webapp and on to catalog\n  ${jaeger}/trace/${traceId}   (API: curl -s ${jaeger}/api/traces/${traceId})`
      : "  # no trace id came back from webapp: send a request and look for service istio-ingressgateway.default",
    "  # a Grafana dashboard of both: examples/grafana/skiff-mesh.json",
  ].join("\n");
}
