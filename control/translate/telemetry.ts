// Istio's telemetry for every HTTP connection manager of a proxy, gateways and sidecars alike: Istio's standard
// metrics (the istio-stats filter, by ECDS, first in each chain) and tracing (the HCM's `tracing` block with a Zipkin
// or OpenTelemetry provider and the collector's cluster), from Telemetry resources and MeshConfig as istiod resolves
// them (pilot/pkg/model/telemetry.go: `applicableTelemetries`, `Tracing`, `mergeMetrics`; the Envoy side in
// pilot/pkg/networking/core/tracing.go `configureTracingFromTelemetry`).
//
// Applied after the listeners are built, to every HCM they hold: traffic_direction INBOUND is the server side
// (reporter=destination, SERVER spans), anything else the client side (sidecar outbound and gateways, as istiod's
// `workloadMode` and `MetricsForClass` class gateways as CLIENT), so the listener builders need not know about telemetry.
import type { MeshConfig } from "../sources/index.js";
import type { CustomTag, ExtensionProvider, IstioMetric } from "../sources/schema/index.js";
import type { Telemetry } from "../sources/model.js";
import type { ProxyIdentity, TranslationContext, XdsResource } from "../resources.js";
import { clusterName, typed } from "./envoy.js";
import type { Registry } from "./registry.js";
import { workloadOf } from "./workload.js";
import { wasmFilter } from "./extensions.js";
import { HCM_NAME, TCP_PROXY_NAME } from "./listeners.js";

/** istiod's PILOT_TRACE_SAMPLING default: the sampling percentage when neither a Telemetry nor
 * `defaultConfig.tracing.sampling` gives one (tracing.go `proxyConfigSamplingValue`). */
const DEFAULT_SAMPLING = 1;

type Side = "client" | "server";
const SIDES: readonly Side[] = ["client", "server"];

/** The Prometheus name of each of Istio's metrics (telemetry.go `metricToPrometheusMetric`, with Istio's `istio_`
 * prefix as the istio-stats filter records them). */
const PROMETHEUS_NAMES: Record<Exclude<IstioMetric, "ALL_METRICS">, string> = {
  REQUEST_COUNT: "istio_requests_total",
  REQUEST_DURATION: "istio_request_duration_milliseconds",
  REQUEST_SIZE: "istio_request_bytes",
  RESPONSE_SIZE: "istio_response_bytes",
  TCP_OPENED_CONNECTIONS: "istio_tcp_connections_opened_total",
  TCP_CLOSED_CONNECTIONS: "istio_tcp_connections_closed_total",
  TCP_SENT_BYTES: "istio_tcp_sent_bytes_total",
  TCP_RECEIVED_BYTES: "istio_tcp_received_bytes_total",
};
const EVERY_METRIC = Object.keys(PROMETHEUS_NAMES) as Array<keyof typeof PROMETHEUS_NAMES>;

export interface TelemetryOutput {
  /** The istio-stats filter configurations (ECDS), one per side in use. */
  extensionConfigs: XdsResource[];
  /** Clusters to the tracing collector, when it is not a service of the registry. */
  clusters: XdsResource[];
  /** Whether a filter module is fetched from the control plane (its cluster must exist). */
  usesModules: boolean;
  /** The listeners with telemetry in each HCM. */
  listeners: XdsResource[];
}

/** A Telemetry without selector labels is namespace-wide (istiod: `len(matchLabels) == 0`). */
const namespaceWide = (telemetry: Telemetry) => Object.keys(telemetry.spec.selector?.matchLabels ?? {}).length === 0;

/** The Telemetry resources that apply to a proxy, in istiod's order (`applicableTelemetries`): the root namespace's
 * namespace-wide one, the proxy namespace's namespace-wide one, then those of the proxy's namespace whose selector
 * matches it; each later one overrides the earlier ones field by field. istiod takes the oldest namespace-wide
 * Telemetry of a namespace and orders by creation time; files have no creation time, so Skiff takes the first by
 * name (a second namespace-wide one is a warning). */
function applicableTelemetries(mesh: MeshConfig, proxy: ProxyIdentity): Telemetry[] {
  const sorted = [...mesh.telemetries].sort((a, b) => a.name.localeCompare(b.name));
  const wide = (namespace: string) => sorted.find((t) => t.namespace === namespace && namespaceWide(t));
  const selects = (t: Telemetry) => Object.entries(t.spec.selector?.matchLabels ?? {}).every(([k, v]) => proxy.labels[k] === v);
  return [
    wide(mesh.rootNamespace),
    proxy.namespace !== mesh.rootNamespace ? wide(proxy.namespace) : undefined,
    ...sorted.filter((t) => t.namespace === proxy.namespace && !namespaceWide(t) && selects(t)),
  ].filter((t): t is Telemetry => t !== undefined);
}

/** istiod's `fetchProvider`: names compare without case. */
function findProvider(mesh: MeshConfig, name: string): ExtensionProvider | undefined {
  return mesh.telemetry.extensionProviders.find((p) => p.name.toLowerCase() === name.toLowerCase());
}

/** The sides an override or a tracing entry applies to (telemetry.go `getModes`; no mode is both). */
function sidesOf(mode: string | undefined): readonly Side[] {
  return mode === "CLIENT" ? ["client"] : mode === "SERVER" ? ["server"] : SIDES;
}

interface TracingSpec {
  provider?: ExtensionProvider;
  disabled: boolean;
  sampling?: number;
  customTags?: Record<string, CustomTag>;
}

/** Tracing per side as istiod's `Telemetries.Tracing`: the first default provider, then every applicable tracing
 * entry in order, each setting what it says for the sides its `match.mode` names. Undefined where istiod falls back
 * to the proxy's bootstrap tracer (no tracing entry and no default provider; `enableTracing` decides there): Skiff's
 * bootstrap has no tracer, so that is no tracing (skiff validate warns about an `enableTracing` that cannot act). */
function tracingSpecs(mesh: MeshConfig, telemetries: Telemetry[]): Record<Side, TracingSpec> | undefined {
  const entries = telemetries.flatMap((t) => t.spec.tracing ?? []);
  const defaults = mesh.telemetry.defaultProviders.tracing;
  if (entries.length === 0 && defaults.length === 0) return undefined;
  const provider = defaults[0] !== undefined ? findProvider(mesh, defaults[0]) : undefined;
  const specs: Record<Side, TracingSpec> = { client: { provider, disabled: false }, server: { provider, disabled: false } };
  for (const entry of entries) {
    for (const side of sidesOf(entry.match?.mode)) {
      const spec = specs[side];
      if (entry.providers?.[0]) spec.provider = findProvider(mesh, entry.providers[0].name);
      if (entry.disableSpanReporting !== undefined) spec.disabled = entry.disableSpanReporting;
      if (entry.customTags !== undefined) spec.customTags = entry.customTags;
      if (entry.randomSamplingPercentage !== undefined) spec.sampling = entry.randomSamplingPercentage;
    }
  }
  return specs;
}

/** `defaultConfig.tracing.sampling` as istiod reads it (`proxyConfigSamplingValue`): 0 (unset) is the default 1%. */
function defaultSampling(mesh: MeshConfig): number {
  const sampling = mesh.telemetry.defaultSampling;
  return sampling !== undefined && sampling !== 0 && sampling <= 100 ? sampling : DEFAULT_SAMPLING;
}

/** What the overrides say about one metric on one side (istiod's `metricOverride`). */
interface MetricOverride {
  disabled?: boolean;
  removeTags: Set<string>;
}

/** The istio-stats configuration of one side: metrics dropped, labels removed per metric. */
interface StatsPlan {
  drop: string[];
  tagsToRemove: Array<{ metric: string; tags: string[] }>;
}

/** The istio-stats configuration per side, as istiod's `mergeMetrics` and `generateStatsConfig` resolve it: the
 * providers are the last applicable entry's that names some (else `defaultProviders.metrics`); each entry's overrides
 * apply, in order, to its providers (or its parent's) on the sides their `match.mode` names. An override of all metrics
 * with `disabled: true` removes the filter from those sides (until a later override of that side), any other override
 * sets `disabled` and adds `tagOverrides` per metric, which become the filter's `drop` list and `tagsToRemove` (Istio's
 * stats config `metrics[].drop` and `tags_to_remove`). Undefined: no filter on that side. istiod builds one stats
 * filter per prometheus provider; Skiff builds one, from the first. */
function metricsPlan(mesh: MeshConfig, telemetries: Telemetry[]): Record<Side, StatsPlan | undefined> {
  const entries = telemetries.flatMap((t) => t.spec.metrics ?? []);
  const defaults = mesh.telemetry.defaultProviders.metrics;
  const names = (entry: (typeof entries)[number]) => entry.providers?.map((p) => p.name) ?? [];
  const inScope = entries.reduce((scope, entry) => (names(entry).length > 0 ? names(entry) : scope), defaults);
  // provider -> side -> metric -> override
  const providers = new Map<string, Record<Side, Map<string, MetricOverride>>>();
  const fresh = () => ({ client: new Map(), server: new Map() });
  if (entries.length === 0) for (const name of defaults) providers.set(name, fresh());
  const disabledAll = new Set<string>();
  let parent = defaults;
  for (const entry of entries) {
    const own = names(entry).length > 0 ? names(entry) : parent;
    parent = own;
    for (const name of own.filter((n) => inScope.includes(n))) {
      if (!providers.has(name)) providers.set(name, fresh());
      const bySide = providers.get(name)!;
      for (const override of entry.overrides ?? []) {
        const metric = override.match?.metric ?? "ALL_METRICS";
        if (metric === "ALL_METRICS" && override.disabled) {
          for (const side of sidesOf(override.match?.mode)) disabledAll.add(`${name}/${side}`);
          continue;
        }
        for (const side of sidesOf(override.match?.mode)) {
          disabledAll.delete(`${name}/${side}`);
          for (const each of metric === "ALL_METRICS" ? EVERY_METRIC : [metric]) {
            const merged = bySide[side].get(each) ?? { removeTags: new Set<string>() };
            if (override.disabled !== undefined) merged.disabled = override.disabled;
            for (const tag of Object.keys(override.tagOverrides ?? {})) merged.removeTags.add(tag);
            bySide[side].set(each, merged);
          }
        }
      }
    }
  }
  const prometheus = [...providers.keys()].find((name) => findProvider(mesh, name)?.prometheus);
  const plan = (side: Side): StatsPlan | undefined => {
    if (prometheus === undefined || disabledAll.has(`${prometheus}/${side}`)) return undefined;
    const overrides = [...providers.get(prometheus)![side]]
      .map(([metric, override]) => ({ metric: PROMETHEUS_NAMES[metric as keyof typeof PROMETHEUS_NAMES], ...override }))
      .sort((a, b) => a.metric.localeCompare(b.metric));
    return {
      drop: overrides.filter((o) => o.disabled).map((o) => o.metric),
      tagsToRemove: overrides.filter((o) => !o.disabled && o.removeTags.size > 0).map((o) => ({ metric: o.metric, tags: [...o.removeTags].sort() })),
    };
  };
  return { client: plan("client"), server: plan("server") };
}

/** `clusters`: the names of the clusters the proxy already has (a collector in the registry is reached through its
 * own cluster when the proxy has it). */
export function buildTelemetry(mesh: MeshConfig, registry: Registry, context: TranslationContext, listeners: XdsResource[], clusters: Set<string>): TelemetryOutput {
  const proxy = context.proxy;
  const identity = workloadOf(proxy);
  const telemetries = applicableTelemetries(mesh, proxy);
  const out: TelemetryOutput = { extensionConfigs: [], clusters: [], usesModules: false, listeners };
  // Per side, the HTTP filter that goes first in each HTTP connection manager and the network filter that goes just
  // before each tcp_proxy (Istio's TCP metrics; istio/proxy's stats filter is both kinds, placed alike by istiod).
  const statsFilters = new Map<string, { filter: Record<string, unknown>; extensionConfig: XdsResource }>();
  const metrics = metricsPlan(mesh, telemetries);
  for (const side of SIDES) {
    const plan = metrics[side];
    if (!context.statsModule) continue;
    const direction = side === "client" ? "outbound" : "inbound";
    for (const kind of ["http", "tcp"] as const) {
      // TCP keeps the filter with metrics off, for Istio's TCP metadata exchange alone: every mesh mTLS connection
      // starts with the client's frame, which the server's filter takes off the stream (Istio's exchange filters stay
      // on whatever the Telemetry says, too).
      if (!plan && kind !== "tcp") continue;
      const stats = wasmFilter(`istio.stats.${direction}${kind === "tcp" ? ".tcp" : ""}`, context, {
        module: context.statsModule,
        network: kind === "tcp",
        // Metrics must never cost a request: a stats filter that cannot start lets traffic through.
        failurePolicy: "FAIL_OPEN",
        configuration: {
          reporter: side === "client" ? "source" : "destination",
          ...identity,
          ...(plan
            ? { ...(plan.drop.length > 0 ? { drop: plan.drop } : {}), ...(plan.tagsToRemove.length > 0 ? { tagsToRemove: plan.tagsToRemove } : {}) }
            : { metrics: false }),
        },
      });
      statsFilters.set(`${side}/${kind}`, stats);
    }
  }

  const specs = tracingSpecs(mesh, telemetries);
  const collectorClusters = new Map<string, XdsResource>();
  const tracing = Object.fromEntries(
    SIDES.map((side) => {
      const spec = specs?.[side];
      // istiod: a side without a (tracing) provider, or with span reporting disabled, has no tracing block.
      const on = spec && !spec.disabled && (spec.provider?.zipkin || spec.provider?.opentelemetry);
      return [side, on ? tracingConfig(mesh, spec, spec.provider!, identity, registry, clusters, collectorClusters) : undefined];
    }),
  ) as Record<Side, { config: Record<string, unknown>; cluster: string } | undefined>;

  const sideOf = (listener: Record<string, unknown>): Side => (listener.traffic_direction === "INBOUND" ? "server" : "client");
  const used = new Set<string>();
  const tracedSides = new Set<Side>();
  out.listeners = listeners.map((listener) => {
    const side = sideOf(listener.body);
    const httpStats = statsFilters.get(`${side}/http`);
    const tcpStats = statsFilters.get(`${side}/tcp`);
    const traced = tracing[side]?.config;
    if (!httpStats && !tcpStats && !traced) return listener;
    return {
      name: listener.name,
      body: mapChainFilters(listener.body, (filter) => {
        if (filter.name === HCM_NAME && (httpStats || traced)) {
          const manager = filter.typed_config as Record<string, unknown>;
          if (httpStats) used.add(httpStats.extensionConfig.name);
          if (traced) tracedSides.add(side);
          return [
            {
              ...filter,
              typed_config: {
                ...manager,
                ...(httpStats ? { http_filters: [httpStats.filter, ...((manager.http_filters as unknown[]) ?? [])] } : {}),
                ...(traced ? { tracing: traced } : {}),
              },
            },
          ];
        }
        if (filter.name === TCP_PROXY_NAME && tcpStats) {
          used.add(tcpStats.extensionConfig.name);
          return [tcpStats.filter, filter];
        }
        return [filter];
      }),
    };
  });
  out.extensionConfigs = [...statsFilters.values()].map((stats) => stats.extensionConfig).filter((config) => used.has(config.name));
  out.usesModules = out.extensionConfigs.length > 0;
  // The collector's cluster only where spans are sent from.
  const neededClusters = new Set([...tracedSides].map((side) => tracing[side]!.cluster));
  out.clusters = [...collectorClusters.values()].filter((cluster) => neededClusters.has(cluster.name));
  return out;
}

/** Each network filter of every chain of a listener (the default chain too), replaced by what `change` returns. */
function mapChainFilters(listener: Record<string, unknown>, change: (filter: Record<string, unknown>) => Array<Record<string, unknown>>): Record<string, unknown> {
  type Chain = { filters?: Array<Record<string, unknown>> };
  const mapChain = (chain: Chain): Chain => ({ ...chain, filters: (chain.filters ?? []).flatMap(change) });
  const chains = (listener.filter_chains as Chain[] | undefined) ?? [];
  return {
    ...listener,
    filter_chains: chains.map(mapChain),
    ...(listener.default_filter_chain ? { default_filter_chain: mapChain(listener.default_filter_chain as Chain) } : {}),
  };
}

/** The HCM `tracing` block as istiod writes it (tracing.go `configureTracingFromTelemetry`, `configureFromProviderConfig`,
 * `configureCustomTags`): random sampling from the Telemetry, else `defaultConfig.tracing.sampling`, client and
 * overall sampling 100; `max_path_tag_length` only when the provider sets a non-zero `maxTagLength` (Envoy's default,
 * 256, otherwise); Istio's tags and the custom tags (`environment` reads the proxy's environment variable, with
 * `defaultValue` when unset), all sorted by tag; the provider with its collector cluster. */
function tracingConfig(
  mesh: MeshConfig,
  spec: TracingSpec,
  provider: ExtensionProvider,
  identity: ReturnType<typeof workloadOf>,
  registry: Registry,
  existing: Set<string>,
  clusters: Map<string, XdsResource>,
): { config: Record<string, unknown>; cluster: string } {
  const collector = (provider.zipkin ?? provider.opentelemetry)!;
  const tags = [
    { tag: "istio.canonical_revision", literal: { value: identity.version } },
    { tag: "istio.canonical_service", literal: { value: identity.app } },
    { tag: "istio.namespace", literal: { value: identity.namespace } },
    ...Object.entries(spec.customTags ?? {}).map(([tag, custom]) => ({
      tag,
      ...(custom.literal ? { literal: { value: custom.literal.value } } : {}),
      ...(custom.environment ? { environment: { name: custom.environment.name, default_value: custom.environment.defaultValue ?? "" } } : {}),
      ...(custom.header ? { request_header: { name: custom.header.name, default_value: custom.header.defaultValue ?? "" } } : {}),
    })),
  ].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  let tracer: Record<string, unknown>;
  let cluster: string;
  if (provider.zipkin) {
    cluster = collectorCluster("zipkin", collector, registry, existing, clusters, false);
    tracer = {
      name: "envoy.tracers.zipkin",
      typed_config: typed("envoy.config.trace.v3.ZipkinConfig", {
        collector_cluster: cluster,
        collector_endpoint: "/api/v2/spans",
        collector_endpoint_version: "HTTP_JSON",
        collector_hostname: collector.service,
        trace_id_128bit: true,
        // Client and server get spans of their own (Istio's setting), so each hop is a child of the one before.
        shared_span_context: false,
      }),
    };
  } else {
    cluster = collectorCluster("opentelemetry", collector, registry, existing, clusters, true);
    tracer = {
      name: "envoy.tracers.opentelemetry",
      typed_config: typed("envoy.config.trace.v3.OpenTelemetryConfig", {
        grpc_service: { envoy_grpc: { cluster_name: cluster, authority: collector.service } },
        service_name: `${identity.workload}.${identity.namespace}`,
      }),
    };
  }
  const config = {
    client_sampling: { value: 100 },
    random_sampling: { value: spec.sampling ?? defaultSampling(mesh) },
    overall_sampling: { value: 100 },
    ...(collector.maxTagLength ? { max_path_tag_length: collector.maxTagLength } : {}),
    custom_tags: tags,
    provider: tracer,
  };
  return { config, cluster };
}

/** The collector's cluster: the registry's (`outbound|port||host`) for Zipkin when the service is in it and the
 * proxy has that cluster (a gateway has only the clusters its routes use, a Sidecar resource may narrow a sidecar's);
 * otherwise a DNS cluster of its own (`zipkin|port||host`, `opentelemetry|port||host`; OTLP over gRPC needs HTTP/2). */
function collectorCluster(
  kind: string,
  collector: { service: string; port: number },
  registry: Registry,
  existing: Set<string>,
  clusters: Map<string, XdsResource>,
  http2: boolean,
): string {
  const service = registry.lookup(collector.service, "default");
  const registryCluster = service && clusterName(collector.port, undefined, service.host);
  if (registryCluster && !http2 && existing.has(registryCluster)) return registryCluster;
  const name = `${kind}|${collector.port}||${collector.service}`;
  clusters.set(name, {
    name,
    body: {
      name,
      type: "STRICT_DNS",
      connect_timeout: "1s",
      dns_lookup_family: "V4_ONLY",
      load_assignment: {
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: collector.service, port_value: collector.port } } } }] }],
      },
      ...(http2
        ? {
            typed_extension_protocol_options: {
              "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {
                explicit_http_config: { http2_protocol_options: {} },
              }),
            },
          }
        : {}),
    },
  });
  return name;
}
