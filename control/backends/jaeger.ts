// Jaeger v2 on 127.0.0.1 with in-memory storage, taking spans as Zipkin (JSON v2) and OTLP (gRPC and HTTP), with a
// client of its query API. The binary is the `jaeger` component (control/components); its configuration is Jaeger's
// own all-in-one (cmd/jaeger/internal/all-in-one.yaml in jaegertracing/jaeger) with every port on 127.0.0.1, and the
// collectors (Zipkin, OTLP) also on a mesh bridge address when given one: sidecars in pods reach the host only there.
import { stringify } from "yaml";
import { componentPath } from "../components/build.js";
import { Backend, checkBackendHost, freeLocalPort } from "./process.js";

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  processID: string;
  tags: Array<{ key: string; value: unknown }>;
  startTime: number;
  duration: number;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string }>;
}

export interface JaegerPorts {
  query: number;
  zipkin: number;
  otlpGrpc: number;
  otlpHttp: number;
}

export class Jaeger {
  private constructor(
    readonly backend: Backend,
    readonly ports: JaegerPorts,
  ) {}

  get queryUrl(): string {
    return `http://127.0.0.1:${this.ports.query}`;
  }

  /** `meshAddress`: a mesh's host address (control/mesh) where the collectors listen too, for the pods' sidecars. */
  static async start(ports: Partial<JaegerPorts> = {}, options: { env?: Record<string, string>; meshAddress?: string } = {}): Promise<Jaeger> {
    const collectorHosts = ["127.0.0.1", ...(options.meshAddress ? [checkBackendHost("jaeger", options.meshAddress)] : [])];
    const all: JaegerPorts = {
      query: ports.query ?? (await freeLocalPort()),
      zipkin: ports.zipkin ?? (await freeLocalPort()),
      otlpGrpc: ports.otlpGrpc ?? (await freeLocalPort()),
      otlpHttp: ports.otlpHttp ?? (await freeLocalPort()),
    };
    const queryGrpc = await freeLocalPort();
    const health = await freeLocalPort();
    // One receiver of each kind per address (`otlp`, `otlp/2`: the collector's `type/name` ids), one pipeline for all.
    const receivers: Record<string, unknown> = {};
    collectorHosts.forEach((host, i) => {
      const suffix = i === 0 ? "" : `/${i + 1}`;
      receivers[`otlp${suffix}`] = { protocols: { grpc: { endpoint: `${host}:${all.otlpGrpc}` }, http: { endpoint: `${host}:${all.otlpHttp}` } } };
      receivers[`zipkin${suffix}`] = { endpoint: `${host}:${all.zipkin}` };
    });
    const config = {
      service: {
        extensions: ["jaeger_storage", "jaeger_query", "healthcheckv2"],
        pipelines: { traces: { receivers: Object.keys(receivers), processors: ["batch"], exporters: ["jaeger_storage_exporter"] } },
        telemetry: { metrics: { level: "none" }, logs: { level: "warn" } },
      },
      extensions: {
        healthcheckv2: { use_v2: true, http: { endpoint: `127.0.0.1:${health}` } },
        jaeger_query: { storage: { traces: "memory" }, http: { endpoint: `127.0.0.1:${all.query}` }, grpc: { endpoint: `127.0.0.1:${queryGrpc}` } },
        jaeger_storage: { backends: { memory: { memory: { max_traces: 100_000 } } } },
      },
      receivers,
      // Spans are stored within a tenth of a second, so a test need not wait long for them.
      processors: { batch: { timeout: "100ms" } },
      exporters: { jaeger_storage_exporter: { trace_storage: "memory" } },
    };
    const backend = await Backend.start({
      name: "jaeger",
      binary: componentPath("jaeger"),
      files: () => ({ "jaeger.yaml": stringify(config) }),
      args: (dir) => ["--config", `${dir}/jaeger.yaml`],
      readyUrl: `http://127.0.0.1:${all.query}/api/services`,
      env: options.env,
    });
    return new Jaeger(backend, all);
  }

  /** A trace by id (32 hex digits), or undefined while Jaeger does not have it. */
  async trace(traceId: string): Promise<JaegerTrace | undefined> {
    const response = await fetch(`${this.queryUrl}/api/traces/${traceId}`);
    if (response.status === 404) return undefined;
    const body = (await response.json()) as { data?: JaegerTrace[] };
    return body.data?.[0];
  }

  /** The services Jaeger has spans of. */
  async services(): Promise<string[]> {
    const body = (await (await fetch(`${this.queryUrl}/api/services`)).json()) as { data?: string[] | null };
    return body.data ?? [];
  }

  stop(): Promise<void> {
    return this.backend.stop();
  }
}
