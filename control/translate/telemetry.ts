// Istio's telemetry for every HTTP connection manager of a proxy, gateways and sidecars alike: Istio's standard
// metrics (the istio-stats filter, by ECDS, first in each chain) and tracing (the HCM's `tracing` block with a Zipkin
// or OpenTelemetry provider and the collector's cluster), from Telemetry resources and MeshConfig as istiod resolves
// them (pilot/pkg/model/telemetry.go: a workload's Telemetry over its namespace's over the root namespace's, field by
// field; providers from `defaultProviders` when a Telemetry names none).
//
// Applied after the listeners are built, to every HCM they hold: traffic_direction INBOUND is the server side
// (reporter=destination, SERVER spans), anything else the client side (sidecar outbound and gateways: reporter=source,
// CLIENT spans), so the listener builders need not know about telemetry.
import type { MeshConfig } from "../sources/index.js";
import type { CustomTag, ExtensionProvider } from "../sources/schema/index.js";
import type { Telemetry } from "../sources/model.js";
import type { ProxyIdentity, TranslationContext, XdsResource } from "../resources.js";
import { clusterName, typed } from "./envoy.js";
import type { Registry } from "./registry.js";
import { workloadOf } from "./workload.js";
import { wasmFilter } from "./extensions.js";
import { HCM_NAME, TCP_PROXY_NAME } from "./listeners.js";

/** Istio's default max_path_tag_length. */
const MAX_PATH_TAG_LENGTH = 256;

type Side = "client" | "server";

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


/** The Telemetry that decides `field` for a proxy: a workload's (selector matching, same namespace) over its
 * namespace's (no selector) over the root namespace's; within one level, the first by name. */
function effective<F extends "tracing" | "metrics">(mesh: MeshConfig, proxy: ProxyIdentity, field: F): Telemetry | undefined {
  const withField = mesh.telemetries.filter((t) => t.spec[field] !== undefined).sort((a, b) => a.name.localeCompare(b.name));
  const selects = (t: Telemetry) => Object.entries(t.spec.selector?.matchLabels ?? {}).every(([k, v]) => proxy.labels[k] === v);
  return (
    withField.find((t) => t.namespace === proxy.namespace && t.spec.selector && selects(t)) ??
    withField.find((t) => t.namespace === proxy.namespace && !t.spec.selector && t.namespace !== mesh.rootNamespace) ??
    withField.find((t) => t.namespace === mesh.rootNamespace && !t.spec.selector)
  );
}

function modeCovers(mode: string | undefined, side: Side): boolean {
  return mode === undefined || mode === "CLIENT_AND_SERVER" || (mode === "CLIENT" ? side === "client" : side === "server");
}

interface TracingPlan {
  provider: ExtensionProvider;
  sampling: number;
  customTags: Record<string, CustomTag>;
  mode?: string;
}

function tracingPlan(mesh: MeshConfig, proxy: ProxyIdentity): TracingPlan | undefined {
  const entry = effective(mesh, proxy, "tracing")?.spec.tracing?.[0];
  if (entry?.disableSpanReporting) return undefined;
  const name = entry?.providers?.[0]?.name ?? (entry || mesh.telemetry.enableTracing ? mesh.telemetry.defaultProviders.tracing[0] : undefined);
  const provider = mesh.telemetry.extensionProviders.find((p) => p.name === name && (p.zipkin || p.opentelemetry));
  if (!provider) return undefined;
  return { provider, sampling: entry?.randomSamplingPercentage ?? mesh.telemetry.defaultSampling, customTags: entry?.customTags ?? {}, mode: entry?.match?.mode };
}

/** Metrics for `side`: a prometheus provider (from the Telemetry, else defaultProviders.metrics), not disabled by an
 * override matching that side. */
function metricsOn(mesh: MeshConfig, proxy: ProxyIdentity, side: Side): boolean {
  const entry = effective(mesh, proxy, "metrics")?.spec.metrics?.[0];
  const names = entry?.providers?.map((p) => p.name) ?? mesh.telemetry.defaultProviders.metrics;
  if (!names.some((name) => mesh.telemetry.extensionProviders.find((p) => p.name === name)?.prometheus)) return false;
  return !(entry?.overrides ?? []).some((override) => override.disabled && modeCovers(override.match?.mode, side));
}

/** `clusters`: the names of the clusters the proxy already has (a collector in the registry is reached through its
 * own cluster when the proxy has it). */
export function buildTelemetry(mesh: MeshConfig, registry: Registry, context: TranslationContext, listeners: XdsResource[], clusters: Set<string>): TelemetryOutput {
  const proxy = context.proxy;
  const identity = workloadOf(proxy);
  const out: TelemetryOutput = { extensionConfigs: [], clusters: [], usesModules: false, listeners };
  // Per side, the HTTP filter that goes first in each HTTP connection manager and the network filter that goes just
  // before each tcp_proxy (Istio's TCP metrics; istio/proxy's stats filter is both kinds, placed alike by istiod).
  const statsFilters = new Map<string, { filter: Record<string, unknown>; extensionConfig: XdsResource }>();
  for (const side of ["client", "server"] as const) {
    if (!context.statsModule || !metricsOn(mesh, proxy, side)) continue;
    const direction = side === "client" ? "outbound" : "inbound";
    for (const kind of ["http", "tcp"] as const) {
      const stats = wasmFilter(`istio.stats.${direction}${kind === "tcp" ? ".tcp" : ""}`, context, {
        module: context.statsModule,
        network: kind === "tcp",
        // Metrics must never cost a request: a stats filter that cannot start lets traffic through.
        failurePolicy: "FAIL_OPEN",
        configuration: { reporter: side === "client" ? "source" : "destination", ...identity },
      });
      statsFilters.set(`${side}/${kind}`, stats);
    }
  }

  const plan = tracingPlan(mesh, proxy);
  const collectorClusters: XdsResource[] = [];
  const tracing = plan ? tracingConfig(plan, identity, registry, clusters, collectorClusters) : undefined;

  const sideOf = (listener: Record<string, unknown>): Side => (listener.traffic_direction === "INBOUND" ? "server" : "client");
  const used = new Set<string>();
  let traceUsed = false;
  out.listeners = listeners.map((listener) => {
    const side = sideOf(listener.body);
    const httpStats = statsFilters.get(`${side}/http`);
    const tcpStats = statsFilters.get(`${side}/tcp`);
    const traced = tracing && modeCovers(plan!.mode, side) ? tracing : undefined;
    if (!httpStats && !tcpStats && !traced) return listener;
    return {
      name: listener.name,
      body: mapChainFilters(listener.body, (filter) => {
        if (filter.name === HCM_NAME && (httpStats || traced)) {
          const manager = filter.typed_config as Record<string, unknown>;
          if (httpStats) used.add(httpStats.extensionConfig.name);
          if (traced) traceUsed = true;
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
  if (traceUsed) out.clusters = collectorClusters;
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

/** The HCM `tracing` block as istiod writes it (pilot/pkg/networking/core/tracing.go): sampling in percent, the
 * provider with its collector cluster, Istio's own tags plus the Telemetry's custom tags. */
function tracingConfig(
  plan: TracingPlan,
  identity: ReturnType<typeof workloadOf>,
  registry: Registry,
  existing: Set<string>,
  clusters: XdsResource[],
): Record<string, unknown> {
  const { provider } = plan;
  const collector = (provider.zipkin ?? provider.opentelemetry)!;
  const tags = [
    { tag: "istio.canonical_revision", literal: { value: identity.version } },
    { tag: "istio.canonical_service", literal: { value: identity.app } },
    { tag: "istio.namespace", literal: { value: identity.namespace } },
    ...Object.entries(plan.customTags)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([tag, custom]) => ({
        tag,
        ...(custom.literal ? { literal: { value: custom.literal.value } } : {}),
        ...(custom.environment ? { environment: { name: custom.environment.name, default_value: custom.environment.defaultValue ?? "" } } : {}),
        ...(custom.header ? { request_header: { name: custom.header.name, default_value: custom.header.defaultValue ?? "" } } : {}),
      })),
  ];
  let tracer: Record<string, unknown>;
  if (provider.zipkin) {
    const cluster = collectorCluster("zipkin", collector, registry, existing, clusters, false);
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
    const cluster = collectorCluster("opentelemetry", collector, registry, existing, clusters, true);
    tracer = {
      name: "envoy.tracers.opentelemetry",
      typed_config: typed("envoy.config.trace.v3.OpenTelemetryConfig", {
        grpc_service: { envoy_grpc: { cluster_name: cluster, authority: collector.service } },
        service_name: `${identity.workload}.${identity.namespace}`,
      }),
    };
  }
  return {
    client_sampling: { value: 100 },
    random_sampling: { value: plan.sampling },
    overall_sampling: { value: 100 },
    max_path_tag_length: collector.maxTagLength ?? MAX_PATH_TAG_LENGTH,
    custom_tags: tags,
    provider: tracer,
  };
}

/** The collector's cluster: the registry's (`outbound|port||host`) for Zipkin when the service is in it and the
 * proxy has that cluster (a gateway has only the clusters its routes use, a Sidecar resource may narrow a sidecar's);
 * otherwise a DNS cluster of its own (`zipkin|port||host`, `opentelemetry|port||host`; OTLP over gRPC needs HTTP/2). */
function collectorCluster(
  kind: string,
  collector: { service: string; port: number },
  registry: Registry,
  existing: Set<string>,
  clusters: XdsResource[],
  http2: boolean,
): string {
  const service = registry.lookup(collector.service, "default");
  const registryCluster = service && clusterName(collector.port, undefined, service.host);
  if (registryCluster && !http2 && existing.has(registryCluster)) return registryCluster;
  const name = `${kind}|${collector.port}||${collector.service}`;
  clusters.push({
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
