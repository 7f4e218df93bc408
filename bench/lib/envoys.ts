// The Envoys of a benchmark: a fast upstream (an Envoy answering 200 itself, so the upstream is never what limits
// the rate, as a Node server would) and one Envoy under test per variant, each pinned to its CPU.
import { type Envoy, startEnvoy } from "../../test/harness/envoy.js";
import { type ClusterSpec, staticBootstrap } from "../../test/harness/bootstrap.js";
import { ENVOY_CPU, LOAD_CPU, pin, startedPids } from "./session.js";

export interface PinnedEnvoy {
  envoy: Envoy;
  pid: number;
  port: number;
}

async function startPinned(bootstrap: Record<string, unknown>, cpu: number): Promise<PinnedEnvoy> {
  const before = new Set(startedPids());
  const envoy = await startEnvoy({ bootstrap, concurrency: 1 });
  const pid = startedPids().find((p) => !before.has(p));
  if (pid === undefined) throw new Error(`cannot find the pid of ${envoy.description}`);
  pin(pid, cpu);
  return { envoy, pid, port: await envoy.listenerPort() };
}

/** The bootstrap of an Envoy that answers every request with 200 and a small JSON body (202 to Zipkin span reports,
 * as a collector does), on 127.0.0.1 and a free port unless told otherwise (a server app in a pod: 0.0.0.0:8080). */
export function fastUpstreamBootstrap(listen?: { address: string; port: number }): Record<string, unknown> {
  const bootstrap = staticBootstrap({
    clusters: {},
    routes: [
      { match: { prefix: "/api/v2/spans" }, direct_response: { status: 202 } },
      { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: '{"upstream":"bench","ok":true}' } } },
    ],
    virtualHost: { response_headers_to_add: [{ header: { key: "x-upstream", value: "bench" } }] },
  });
  if (listen) {
    const [listener] = (bootstrap.static_resources as { listeners: Array<{ address: unknown }> }).listeners;
    listener.address = { socket_address: { address: listen.address, port_value: listen.port } };
  }
  return bootstrap;
}

/** The fast upstream, on the load CPU. */
export function startFastUpstream(): Promise<PinnedEnvoy> {
  return startPinned(fastUpstreamBootstrap(), LOAD_CPU);
}

export interface VariantSpec {
  /** Short name, used in tables. */
  name: string;
  /** What this variant is, in words. */
  description: string;
  /** HTTP filters before the router. */
  httpFilters?: unknown[];
  /** Routes of the virtual host (default: everything to the first cluster). */
  routes?: unknown[];
  /** Clusters (all pointed at the fast upstream); default one cluster "upstream". */
  clusters?: Record<string, Omit<ClusterSpec, "ports">>;
  /** Merged into the virtual host (e.g. include_attempt_count_in_response). */
  virtualHost?: Record<string, unknown>;
  /** Merged into the HttpConnectionManager (e.g. tracing). */
  connectionManager?: Record<string, unknown>;
  /** A response header every answer must carry (proves the filter ran). */
  expectHeader?: string;
  /** A /stats filter (regex) whose counters prove the variant did its work, reported after the run. */
  proofStats?: string;
  /** Request headers this variant's requests carry (e.g. the cohort header). */
  requestHeaders?: Record<string, string>;
}

/** The bootstrap of one variant's Envoy: its filters, routes and clusters, every cluster pointed at the upstream. */
export function variantBootstrap(spec: VariantSpec, upstreamPort: number): Record<string, unknown> {
  const clusters = Object.fromEntries(
    Object.entries(spec.clusters ?? { upstream: {} }).map(([name, cluster]) => [name, { ...cluster, ports: [upstreamPort] }]),
  );
  const bootstrap = staticBootstrap({ clusters, httpFilters: spec.httpFilters, routes: spec.routes, virtualHost: spec.virtualHost });
  if (spec.connectionManager) {
    const listeners = (bootstrap.static_resources as { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: Record<string, unknown> }> }> }> }).listeners;
    Object.assign(listeners[0].filter_chains[0].filters[0].typed_config, spec.connectionManager);
  }
  return bootstrap;
}

/** Starts the Envoy under test for one variant, single worker, on the Envoy CPU. */
export function startVariant(spec: VariantSpec, upstreamPort: number): Promise<PinnedEnvoy> {
  return startPinned(variantBootstrap(spec, upstreamPort), ENVOY_CPU);
}
