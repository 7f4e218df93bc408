// The control plane's own metrics, in Prometheus text format at /metrics (prom-client), named as istiod names its
// equivalents (pilot/pkg/xds/monitoring.go and pilot/pkg/xds/statusgen.go in istio/istio), with `skiff_` names for
// what istiod has no equivalent of. Each control plane has its own registry, so several can run in one process.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ConfigError } from "../sources/index.js";
import { KINDS } from "../sources/schema/index.js";
import { type ProxyIdentity, TypeUrl } from "../resources.js";
import type { XdsObserver } from "../xds/streams.js";

/** istiod's `type` label values (pilot/pkg/xds/v3 GetMetricType). */
const TYPE_LABEL: Record<TypeUrl, string> = {
  [TypeUrl.Cluster]: "cds",
  [TypeUrl.ClusterLoadAssignment]: "eds",
  [TypeUrl.Listener]: "lds",
  [TypeUrl.RouteConfiguration]: "rds",
  [TypeUrl.Secret]: "sds",
  [TypeUrl.ExtensionConfig]: "ecds",
};

export class ControlPlaneMetrics implements Partial<XdsObserver> {
  readonly registry = new Registry();

  private readonly proxies = new Gauge({
    name: "pilot_xds",
    help: "Number of endpoints connected to this pilot using XDS, by xDS mode (sotw, delta) and role (gateway, sidecar).",
    labelNames: ["mode", "role"] as const,
    registers: [this.registry],
  });
  private readonly pushes = new Counter({
    name: "pilot_xds_pushes",
    help: "xDS responses sent to proxies, by type (cds, eds, lds, rds, ecds, sds).",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });
  private readonly pushTime = new Histogram({
    name: "pilot_xds_push_time",
    help: "Time in seconds to select, version and write one xDS response, by type.",
    labelNames: ["type"] as const,
    // istiod's buckets, with finer ones below 10 ms: a response here is written from an already encoded snapshot.
    buckets: [0.0001, 0.001, 0.01, 0.1, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  private readonly convergence = new Histogram({
    name: "pilot_proxy_convergence_time",
    help: "Delay in seconds between a config change (or a proxy's connection) and the proxy having ACKed all required configuration.",
    // istiod's buckets, with finer ones below 100 ms: a change here takes the 100 ms debounce plus one round trip.
    buckets: [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  private readonly rejects = new Counter({
    name: "pilot_total_xds_rejects",
    help: "Total number of xDS responses rejected by a proxy (NACK), by type.",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });
  private readonly debounce = new Histogram({
    name: "pilot_debounce_time",
    help: "Delay in seconds between the first config change of a burst and the merged change being translated.",
    buckets: [0.01, 0.1, 0.2, 0.5, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  private readonly services = new Gauge({
    name: "pilot_services",
    help: "Total services known to the control plane (ServiceEntry hosts).",
    registers: [this.registry],
  });
  private readonly translation = new Histogram({
    name: "skiff_translation_seconds",
    help: "Time in seconds to translate the mesh for one kind of proxy and encode the result, by role.",
    labelNames: ["role"] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  private readonly translationErrors = new Counter({
    name: "skiff_translation_errors_total",
    help: "Translations whose Envoy resources did not encode (the proxy keeps its previous snapshot), by role.",
    labelNames: ["role"] as const,
    registers: [this.registry],
  });
  private readonly configErrors = new Gauge({
    name: "skiff_config_errors",
    help: "Errors in the config folder now, by kind (\"file\" for errors outside any resource, such as YAML syntax).",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  private readonly moduleFetches: Counter<"result"> = new Counter({
    name: "skiff_module_fetches_total",
    help: "Wasm module requests to the control plane's module server, by result (served, not_found).",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });

  constructor() {
    // Every type's series exists from the start at 0, so that increase() and rate() see the first push or NACK.
    for (const type of Object.values(TYPE_LABEL)) {
      this.pushes.inc({ type }, 0);
      this.rejects.inc({ type }, 0);
    }
  }

  connected(proxy: ProxyIdentity, protocol: "sotw" | "delta"): void {
    this.proxies.inc({ mode: protocol, role: proxy.role });
  }

  disconnected(proxy: ProxyIdentity, protocol: "sotw" | "delta"): void {
    this.proxies.dec({ mode: protocol, role: proxy.role });
  }

  pushed(typeUrl: TypeUrl, seconds: number): void {
    this.pushes.inc({ type: TYPE_LABEL[typeUrl] });
    this.pushTime.observe({ type: TYPE_LABEL[typeUrl] }, seconds);
  }

  nacked(_nodeId: string, typeUrl: TypeUrl): void {
    this.rejects.inc({ type: TYPE_LABEL[typeUrl] });
  }

  converged(_proxy: ProxyIdentity, seconds: number): void {
    this.convergence.observe(seconds);
  }

  configChanged(debounceSeconds: number, services: number): void {
    this.debounce.observe(debounceSeconds);
    this.services.set(services);
  }

  translated(role: ProxyIdentity["role"], seconds: number): void {
    this.translation.observe({ role }, seconds);
  }

  translationFailed(role: ProxyIdentity["role"]): void {
    this.translationErrors.inc({ role });
  }

  /** The current list of config errors (it replaces the previous one). */
  configErrorsNow(errors: ConfigError[]): void {
    // Every kind is present (0 when it has none), so a query never depends on an error having happened.
    for (const kind of ["file", ...Object.keys(KINDS)]) this.configErrors.set({ kind }, 0);
    for (const error of errors) this.configErrors.inc({ kind: error.resource?.split(" ")[0] ?? "file" });
  }

  moduleFetched(found: boolean): void {
    this.moduleFetches.inc({ result: found ? "served" : "not_found" });
  }

  /** The /metrics page. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
