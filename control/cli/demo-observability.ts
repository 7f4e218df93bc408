// `skiff demo --observability`: Jaeger and Prometheus beside the demo, on their usual ports, when `npx skiff
// components build prometheus jaeger` has built them. Prometheus scrapes the control plane and every Envoy (the gateway,
// and in the mesh layout each pod's sidecar at <pod>:15000) every second; every proxy sends its spans to Jaeger's
// Zipkin port (examples/meshconfig.yaml). In the mesh layout the sidecars reach the host only at the mesh's bridge
// address, so Jaeger's collectors and Prometheus listen there too (and the generated .skiff-demo/meshconfig.yaml names
// that address as the collector, demo-mesh.ts). Without the binaries the demo runs as before.
import { componentPath } from "../components/build.js";
import { Jaeger } from "../backends/jaeger.js";
import { Prometheus } from "../backends/prometheus.js";

export const OBSERVABILITY_PORTS = { prometheus: 9090, jaegerQuery: 16686, zipkin: 9411, otlpGrpc: 4317, otlpHttp: 4318 } as const;

export interface DemoObservability {
  prometheus: Prometheus;
  jaeger: Jaeger;
  /** The mesh layout: the sidecars report what catalog received (reporter="destination"); else only the gateway reports. */
  sidecars: boolean;
  stop(): Promise<void>;
}

export interface ObservedDemo {
  /** host:port of the control plane's HTTP server (/metrics). */
  controlPlane: string;
  /** Each Envoy's admin (host:port, /stats/prometheus) and its name, the `pod` label of its series. */
  envoys: Array<{ name: string; admin: string }>;
  /** The mesh layout's bridge address on the host: where the pods reach Jaeger's collectors and Prometheus. */
  meshAddress?: string;
}

/** Starts both, or explains why not (undefined): the demo goes on without them. */
export async function startDemoObservability(demo: ObservedDemo): Promise<DemoObservability | undefined> {
  try {
    componentPath("prometheus");
    componentPath("jaeger");
  } catch (error) {
    console.error(`--observability: ${(error as Error).message}\nThe demo runs without Prometheus and Jaeger.`);
    return undefined;
  }
  const { meshAddress } = demo;
  const jaeger = await Jaeger.start(
    { query: OBSERVABILITY_PORTS.jaegerQuery, zipkin: OBSERVABILITY_PORTS.zipkin, otlpGrpc: OBSERVABILITY_PORTS.otlpGrpc, otlpHttp: OBSERVABILITY_PORTS.otlpHttp },
    { meshAddress },
  );
  let prometheus: Prometheus;
  try {
    prometheus = await Prometheus.start(
      [
        { job: "skiff-control-plane", address: demo.controlPlane, path: "/metrics" },
        ...demo.envoys.map(({ name, admin }) => ({ job: "envoy", address: admin, path: "/stats/prometheus", labels: { pod: name } })),
      ],
      { port: OBSERVABILITY_PORTS.prometheus, meshAddress },
    );
  } catch (error) {
    await jaeger.stop();
    throw error;
  }
  return {
    prometheus,
    jaeger,
    sidecars: meshAddress !== undefined,
    stop: async () => {
      await prometheus.stop();
      await jaeger.stop();
    },
  };
}

/** The two PromQL queries the demo prints, with what each shows. */
export function demoQueries(sidecars: boolean): Array<[query: string, what: string]> {
  const reporter = sidecars ? "destination" : "source";
  return [
    [
      `sum by (destination_version) (rate(istio_requests_total{reporter="${reporter}",destination_service_name="catalog"}[1m]))`,
      `requests per second to catalog by version (the 90/10 shift), as ${sidecars ? "catalog's sidecars count them" : "the gateway counts them"}`,
    ],
    // Without rate(): the control plane's whole life, so the proxies' first connections count before any edit.
    ["histogram_quantile(0.99, sum by (le) (pilot_proxy_convergence_time_bucket))", "p99 time from a config change (or a connection) to the proxy's ACK of all of it"],
  ];
}

/** The lines the demo prints: where to look, two PromQL queries, and the trace of one request just made. */
export function observabilityLines(observability: DemoObservability, traceId: string | undefined): string {
  const prom = observability.prometheus.url;
  const jaeger = observability.jaeger.queryUrl;
  const { sidecars } = observability;
  return [
    "",
    `Prometheus ${prom} (scrapes the control plane's /metrics and ${sidecars ? "every Envoy's (the gateway's and each sidecar's)" : "the gateway's"} /stats/prometheus every second)`,
    `Jaeger ${jaeger} (the spans of ${sidecars ? "the gateway and the sidecars: services istio-ingressgateway.istio-system, webapp.istioinaction, catalog.istioinaction" : "the gateway: service istio-ingressgateway.default"})`,
    ...demoQueries(sidecars).map(([query, what]) => `  # ${what}\n  curl -s '${prom}/api/v1/query' --data-urlencode 'query=${query}'`),
    traceId
      ? // Jaeger's web UI is not built in (control/backends/README.md): its /trace/<id> page is a placeholder.
        `  # the trace of a request just sent through the gateway to webapp and on to catalog (Jaeger's query API)\n  curl -s ${jaeger}/api/traces/${traceId}`
      : `  # no trace id came back from webapp: send a request, then curl -s ${jaeger}/api/services`,
    "  # a Grafana dashboard of both: examples/grafana/skiff-mesh.json",
  ].join("\n");
}
