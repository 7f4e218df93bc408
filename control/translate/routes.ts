// VirtualService http routes -> Envoy routes, following Istio's route translation
// (pilot/pkg/networking/core/route/route.go: BuildHTTPRoutesForVirtualService, TranslateRoute, TranslateRouteMatch,
// TranslateHeadersOperations, ApplyRedirect, ApplyDirectResponse, TranslateFault, TranslateCORSPolicy; and
// route/retry/retry.go).
import type { VirtualService } from "../sources/model.js";
import type { ConsistentHash, Destination, Headers, HttpMatch, HttpRoute, StringMatch } from "../sources/schema/index.js";
import { clusterName, duration, typed } from "./envoy.js";
import { consistentHashFor } from "./policy.js";
import type { Registry } from "./registry.js";

type Json = Record<string, unknown>;

/** Where the routes are served: a match's `port`, `gateways`, `sourceLabels` and `sourceNamespace` are checked
 * against it and the proxy (Istio builds the routes per listener port and proxy, too). */
export interface RouteContext {
  /** The listener port (for a sidecar, the service port). */
  port: number;
  /** `mesh` for a sidecar; `namespace/name` of the Gateway for a gateway. */
  gateways: ReadonlySet<string>;
  /** Whether the listener terminates TLS (the default scheme of a redirect). */
  tls: boolean;
}

/** The HTTP filters that routes configure per route (typed_per_filter_config): Istio puts both in every HTTP
 * connection manager, just before the router (listener_builder.go). */
export const FAULT_FILTER = { name: "envoy.filters.http.fault", typed_config: typed("envoy.extensions.filters.http.fault.v3.HTTPFault") };
export const CORS_FILTER = { name: "envoy.filters.http.cors", typed_config: typed("envoy.extensions.filters.http.cors.v3.Cors") };

/** Envoy answers direct responses of up to 4 KiB unless told otherwise; Istio allows (and validates) up to 1 MiB. */
export const MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024;

/** Istio's default retry policy, used when a route sets no `retries`. */
export function defaultRetryPolicy(withPreviousHosts = true): Json {
  return {
    retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    num_retries: 2,
    ...(withPreviousHosts ? { retry_host_predicate: [PREVIOUS_HOSTS] } : {}),
    host_selection_retry_max_attempts: "5",
    retriable_status_codes: [503],
  };
}

const PREVIOUS_HOSTS = { name: "envoy.retry_host_predicates.previous_hosts", typed_config: typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate") };

/** The route Istio gives a service that no VirtualService routes: everything to its default cluster, hashed as the
 * service's DestinationRule says (BuildDefaultHTTPOutboundRoute, hashForService). */
export function defaultRoute(cluster: string, hash?: ConsistentHash): Json {
  return {
    name: "default",
    match: { prefix: "/" },
    route: { cluster, timeout: "0s", max_stream_duration: { grpc_timeout_header_max: "0s" }, retry_policy: defaultRetryPolicy(), ...(hash ? { hash_policy: [hashPolicy(hash)] } : {}) },
  };
}

/** The Envoy routes of a VirtualService for one listener: one per `match` that applies here (an unmatched route
 * once), stopping after the first route that matches everything, as Istio does. */
export function virtualServiceRoutes(vs: VirtualService, registry: Registry, context: RouteContext): Json[] {
  const out: Json[] = [];
  for (const http of vs.spec.http) {
    const matches: (HttpMatch | undefined)[] = http.match?.length ? http.match : [undefined];
    let catchAll = false;
    for (const match of matches) {
      if (!appliesHere(match, vs.namespace, registry, context)) continue;
      const route = translateRoute(vs, http, match, registry, context);
      out.push(route);
      if (isCatchAll(route)) {
        catchAll = true;
        break;
      }
    }
    if (catchAll || !http.match?.length) break;
  }
  return out;
}

/** Istio's TranslateRoute guards and sourceMatchHTTP: a match's port must be the listener's; with `gateways`, one of
 * them must be what these routes serve; else the proxy must have the `sourceLabels` and be in `sourceNamespace`. */
function appliesHere(match: HttpMatch | undefined, namespace: string, registry: Registry, context: RouteContext): boolean {
  if (!match) return true;
  if (match.port !== undefined && match.port !== context.port) return false;
  if (match.gateways?.length) return match.gateways.some((gateway) => context.gateways.has(gatewayName(gateway, namespace)));
  const proxy = registry.viewer;
  const labels = proxy?.labels ?? {};
  if (!Object.entries(match.sourceLabels ?? {}).every(([key, value]) => labels[key] === value)) return false;
  return match.sourceNamespace === undefined || match.sourceNamespace === proxy?.namespace;
}

/** A `gateways` entry as `namespace/name` (a bare name is in the VirtualService's namespace), or `mesh`. */
export function gatewayName(reference: string, namespace: string): string {
  return reference === "mesh" || reference.includes("/") ? reference : `${namespace}/${reference}`;
}

function translateRoute(vs: VirtualService, http: HttpRoute, match: HttpMatch | undefined, registry: Registry, context: RouteContext): Json {
  const name = [http.name, match?.name].filter(Boolean).join(".");
  const out: Json = { ...(name ? { name } : {}), match: routeMatch(match) };
  if (match?.statPrefix) out.stat_prefix = match.statPrefix;
  const operations = headerOperations(http.headers);
  if (http.redirect) out.redirect = redirectAction(http.redirect, context);
  else if (http.directResponse) out.direct_response = directResponseAction(http.directResponse);
  else out.route = routeAction(http, vs.namespace, registry, context, operations);
  Object.assign(out, operations.route);
  const perFilter: Json = {};
  if (http.fault) perFilter[FAULT_FILTER.name] = typed("envoy.extensions.filters.http.fault.v3.HTTPFault", fault(http.fault));
  if (http.corsPolicy) perFilter[CORS_FILTER.name] = typed("envoy.extensions.filters.http.cors.v3.CorsPolicy", corsPolicy(http.corsPolicy));
  if (Object.keys(perFilter).length > 0) out.typed_per_filter_config = perFilter;
  return out;
}

function routeAction(http: HttpRoute, namespace: string, registry: Registry, context: RouteContext, operations: HeaderOperations): Json {
  const action: Json = {};
  const routes = http.route ?? [];
  const hashes: Json[] = [];
  if (routes.length === 1) {
    const [only] = routes;
    action.cluster = destinationCluster(only!.destination, namespace, registry, context.port);
    const own = headerOperations(only!.headers);
    // A destination's headers follow the route's (Istio's processDestination), so its `set` wins.
    for (const [key, value] of Object.entries(own.route)) operations.route[key] = [...((operations.route[key] as unknown[]) ?? []), ...(value as unknown[])];
    // The route's own authority rewrite wins over a destination's.
    operations.authority ??= own.authority;
  } else {
    action.weighted_clusters = {
      clusters: routes
        .filter((r) => (r.weight ?? 0) > 0)
        .map((r) => {
          const own = headerOperations(r.headers);
          return {
            name: destinationCluster(r.destination, namespace, registry, context.port),
            weight: r.weight,
            ...own.route,
            ...(own.authority ? { host_rewrite_literal: own.authority } : {}),
          };
        }),
    };
  }
  for (const r of routes) {
    const hash = destinationHash(r.destination, namespace, registry);
    if (hash) hashes.push(hashPolicy(hash));
  }
  // Istio turns Envoy's 15 s default off: no timeout unless the VirtualService sets one; a gRPC request's
  // grpc-timeout header then applies, capped at the route's timeout (0: uncapped). istiod's setTimeout writes this
  // as the deprecated max_grpc_timeout; max_stream_duration.grpc_timeout_header_max is its replacement.
  action.timeout = http.timeout ? duration(http.timeout) : "0s";
  action.max_stream_duration = { grpc_timeout_header_max: action.timeout };
  if (hashes.length > 0) action.hash_policy = hashes;
  // The previous-hosts predicate would defeat a single destination's consistent hash (Istio: ConvertPolicy).
  const retry = retryPolicy(http, !(routes.length === 1 && hashes.length > 0));
  if (retry) action.retry_policy = retry;
  const mirrors = mirrorPolicies(http, namespace, registry, context.port);
  if (mirrors.length > 0) action.request_mirror_policies = mirrors;
  if (http.rewrite?.uriRegexRewrite) {
    action.regex_rewrite = { pattern: { regex: http.rewrite.uriRegexRewrite.match }, substitution: http.rewrite.uriRegexRewrite.rewrite };
  } else if (http.rewrite?.uri) {
    action.prefix_rewrite = http.rewrite.uri;
  }
  const authority = http.rewrite?.authority ?? operations.authority;
  if (authority) action.host_rewrite_literal = authority;
  return action;
}

/** Istio's GetDestinationCluster: the destination's port, else the service's only port, else the listener's. */
function destinationCluster(destination: Destination, namespace: string, registry: Registry, listenerPort: number): string {
  const service = registry.lookup(destination.host, namespace);
  const host = service?.host ?? registry.canonicalHost(destination.host, namespace);
  const ports = service?.entry.spec.ports ?? [];
  const port = destination.port?.number ?? (ports.length === 1 ? ports[0]!.number : listenerPort);
  return clusterName(port, destination.subset, host);
}

function destinationHash(destination: Destination, namespace: string, registry: Registry): ConsistentHash | undefined {
  const service = registry.lookup(destination.host, namespace);
  if (!service) return undefined;
  return consistentHashFor(registry.destinationRule(service)?.spec, destination.subset, destination.port?.number);
}

/** A consistentHash load balancer needs the key on the route (Istio's ConsistentHashToHashPolicy). */
function hashPolicy(hash: ConsistentHash): Json {
  if (hash.httpHeaderName) return { header: { header_name: hash.httpHeaderName } };
  if (hash.httpCookie) {
    const { name, path, ttl, attributes } = hash.httpCookie;
    return {
      cookie: {
        name,
        ...(path ? { path } : {}),
        ...(ttl ? { ttl: duration(ttl) } : {}),
        ...(attributes?.length ? { attributes: attributes.map((a) => ({ name: a.name, ...(a.value ? { value: a.value } : {}) })) } : {}),
      },
    };
  }
  if (hash.useSourceIp) return { connection_properties: { source_ip: true } };
  return { query_parameter: { name: hash.httpQueryParameterName } };
}

/** Istio's retry.ConvertPolicy: the default policy, overridden by what `retries` sets; attempts 0 disables it. */
function retryPolicy(http: HttpRoute, withPreviousHosts: boolean): Json | undefined {
  const policy = defaultRetryPolicy(withPreviousHosts);
  const retries = http.retries;
  if (!retries) return policy;
  if (retries.attempts <= 0) return undefined;
  policy.num_retries = retries.attempts;
  if (retries.retryOn) {
    const parts = retries.retryOn.split(",").map((part) => part.trim()).filter(Boolean);
    const codes = parts.filter((part) => /^\d{3}$/.test(part)).map(Number);
    const conditions = parts.filter((part) => !/^\d{3}$/.test(part));
    if (codes.length > 0 && !conditions.includes("retriable-status-codes")) conditions.push("retriable-status-codes");
    policy.retry_on = conditions.join(",");
    if (codes.length > 0) policy.retriable_status_codes = codes;
    else delete policy.retriable_status_codes;
  }
  if (retries.perTryTimeout) policy.per_try_timeout = duration(retries.perTryTimeout);
  if (retries.retryIgnorePreviousHosts !== undefined) {
    if (retries.retryIgnorePreviousHosts) policy.retry_host_predicate = [PREVIOUS_HOSTS];
    else delete policy.retry_host_predicate;
  }
  if (retries.retryRemoteLocalities) {
    policy.retry_priority = {
      name: "envoy.retry_priorities.previous_priorities",
      typed_config: typed("envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig", { update_frequency: 2 }),
    };
  }
  if (retries.backoff) policy.retry_back_off = { base_interval: duration(retries.backoff) };
  return policy;
}

/** `mirror` (with `mirrorPercentage`) or `mirrors` (each with its `percentage`): everything unless a percentage is
 * given, none at 0; a percentage with decimals is per MILLION (Istio's MirrorPercent, TranslateRequestMirrorPolicy). */
function mirrorPolicies(http: HttpRoute, namespace: string, registry: Registry, port: number): Json[] {
  const targets = http.mirror ? [{ destination: http.mirror, percentage: http.mirrorPercentage }] : (http.mirrors ?? []);
  return targets.flatMap(({ destination, percentage }) => {
    const fraction = percentage ? (percentage.value > 0 ? fractionalPercent(percentage.value) : undefined) : { numerator: 100, denominator: "HUNDRED" };
    if (!fraction) return [];
    return [{ cluster: destinationCluster(destination, namespace, registry, port), runtime_fraction: { default_value: fraction }, trace_sampled: false }];
  });
}

function fractionalPercent(value: number): Json {
  return { numerator: Math.round(value * 10_000), denominator: "MILLION" };
}

/** Istio's TranslateFault. A delay or abort without a percentage applies to no request (Istio's API: "If left
 * unspecified, no request will be delayed/aborted"); `skiff validate` warns about it. */
function fault(spec: NonNullable<HttpRoute["fault"]>): Json {
  const out: Json = {};
  if (spec.delay) {
    out.delay = {
      fixed_delay: duration(spec.delay.fixedDelay),
      percentage: spec.delay.percentage ? fractionalPercent(spec.delay.percentage.value) : { numerator: 0, denominator: "HUNDRED" },
    };
  }
  if (spec.abort) {
    out.abort = {
      ...(spec.abort.httpStatus !== undefined ? { http_status: spec.abort.httpStatus } : { grpc_status: GRPC_CODES[spec.abort.grpcStatus!] }),
      ...(spec.abort.percentage ? { percentage: fractionalPercent(spec.abort.percentage.value) } : {}),
    };
  }
  return out;
}

/** gRPC status names -> codes (https://github.com/grpc/grpc/blob/master/doc/statuscodes.md). */
const GRPC_CODES: Record<string, number> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Istio's TranslateCORSPolicy: preflights no origin matches go on to the service unless `unmatchedPreflights:
 * IGNORE`; lists become Envoy's comma-separated values; maxAge in seconds. */
function corsPolicy(spec: NonNullable<HttpRoute["corsPolicy"]>): Json {
  return {
    forward_not_matching_preflights: spec.unmatchedPreflights !== "IGNORE",
    ...(spec.allowOrigins ? { allow_origin_string_match: spec.allowOrigins.map(stringMatch) } : {}),
    filter_enabled: { default_value: { numerator: 100, denominator: "HUNDRED" } },
    ...(spec.allowCredentials !== undefined ? { allow_credentials: spec.allowCredentials } : {}),
    ...(spec.allowHeaders ? { allow_headers: spec.allowHeaders.join(",") } : {}),
    ...(spec.allowMethods ? { allow_methods: spec.allowMethods.join(",") } : {}),
    ...(spec.exposeHeaders ? { expose_headers: spec.exposeHeaders.join(",") } : {}),
    ...(spec.maxAge ? { max_age: duration(spec.maxAge).slice(0, -1) } : {}),
  };
}

/** Istio's ApplyRedirect: 301 unless `redirectCode` says otherwise; `derivePort: FROM_REQUEST_PORT` is the listener's
 * port; a port that is the scheme's default is left out. */
function redirectAction(spec: NonNullable<HttpRoute["redirect"]>, context: RouteContext): Json {
  const out: Json = {};
  if (spec.authority) out.host_redirect = spec.authority;
  if (spec.prefixRewrite !== undefined) out.prefix_rewrite = spec.prefixRewrite;
  else if (spec.uri) out.path_redirect = spec.uri;
  if (spec.scheme) out.scheme_redirect = spec.scheme;
  const port = spec.port ?? (spec.derivePort === "FROM_REQUEST_PORT" ? context.port : undefined);
  const scheme = spec.scheme ?? (context.tls ? "https" : "http");
  if (port !== undefined && !((port === 80 && scheme === "http") || (port === 443 && scheme === "https"))) out.port_redirect = port;
  out.response_code = REDIRECT_CODES[spec.redirectCode ?? 301];
  return out;
}

const REDIRECT_CODES: Record<number, string> = { 301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT" };

function directResponseAction(spec: NonNullable<HttpRoute["directResponse"]>): Json {
  const body = spec.body?.string !== undefined ? { inline_string: spec.body.string } : spec.body?.bytes !== undefined ? { inline_bytes: spec.body.bytes } : undefined;
  return { status: spec.status, ...(body ? { body } : {}) };
}

interface HeaderOperations {
  /** request_headers_to_add and the like, as Envoy names them on a route or a weighted cluster. */
  route: Json;
  /** An `:authority` / `host` set or added: it becomes the authority rewrite. */
  authority?: string;
}

/** Istio's TranslateHeadersOperations: `set` overwrites, `add` appends, both sorted by name; pseudo-headers and Host
 * are not headers Envoy adds, except that `:authority` / `host` rewrites the authority (`set` over `add`). */
function headerOperations(headers: Headers | undefined): HeaderOperations {
  const route: Json = {};
  const request = [...toAdd(headers?.request?.set, "OVERWRITE_IF_EXISTS_OR_ADD"), ...toAdd(headers?.request?.add, "APPEND_IF_EXISTS_OR_ADD")];
  const response = [...toAdd(headers?.response?.set, "OVERWRITE_IF_EXISTS_OR_ADD"), ...toAdd(headers?.response?.add, "APPEND_IF_EXISTS_OR_ADD")];
  const requestRemove = (headers?.request?.remove ?? []).filter((name) => !internal(name));
  const responseRemove = (headers?.response?.remove ?? []).filter((name) => !internal(name));
  if (request.length > 0) route.request_headers_to_add = request;
  if (requestRemove.length > 0) route.request_headers_to_remove = requestRemove;
  if (response.length > 0) route.response_headers_to_add = response;
  if (responseRemove.length > 0) route.response_headers_to_remove = responseRemove;
  const authorityOf = (map: Record<string, string> | undefined) => Object.entries(map ?? {}).find(([name]) => [":authority", "host"].includes(name.toLowerCase()))?.[1];
  return { route, authority: authorityOf(headers?.request?.set) ?? authorityOf(headers?.request?.add) };
}

function toAdd(map: Record<string, string> | undefined, appendAction: string): Json[] {
  return Object.entries(map ?? {})
    .filter(([name]) => !internal(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => ({ header: { key, value }, append_action: appendAction }));
}

function internal(name: string): boolean {
  return name.startsWith(":") || name.toLowerCase() === "host";
}

/** Istio's TranslateRouteMatch: header matches sorted by name (`withoutHeaders` inverted, a missing header counting
 * as empty unless it is a presence match), then method, authority and scheme as pseudo-headers; query parameters;
 * `case_sensitive` from `ignoreUriCase`. A regex of `*` means "present", as in Istio. */
function routeMatch(match: HttpMatch | undefined): Json {
  const out: Json = {};
  const uri = match?.uri;
  if (uri?.exact !== undefined) out.path = uri.exact;
  else if (uri?.prefix !== undefined) out.prefix = uri.prefix;
  else if (uri?.regex !== undefined) out.safe_regex = { regex: uri.regex };
  else out.prefix = "/";
  if (!match) return out;
  out.case_sensitive = !match.ignoreUriCase;
  const headers = [
    ...Object.entries(match.headers ?? {}).map(([name, value]) => headerMatcher(name.toLowerCase(), value)),
    ...Object.entries(match.withoutHeaders ?? {}).map(([name, value]) => {
      const matcher = headerMatcher(name.toLowerCase(), value);
      return { ...matcher, invert_match: true, ...(matcher.present_match ? {} : { treat_missing_header_as_empty: true }) };
    }),
  ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (match.method) headers.push(headerMatcher(":method", match.method));
  if (match.authority) headers.push(headerMatcher(":authority", match.authority));
  if (match.scheme) headers.push(headerMatcher(":scheme", match.scheme));
  if (headers.length > 0) out.headers = headers;
  const query = Object.entries(match.queryParams ?? {}).map(([name, value]) => ({ name, ...(isPresence(value) ? { present_match: true } : { string_match: stringMatch(value) }) }));
  if (query.length > 0) out.query_parameters = query;
  return out;
}

function headerMatcher(name: string, value: StringMatch): { name: string } & Json {
  return isPresence(value) ? { name, present_match: true } : { name, string_match: stringMatch(value) };
}

function isPresence(match: StringMatch): boolean {
  return match.regex === "*";
}

function stringMatch(match: StringMatch): Json {
  if (match.exact !== undefined) return { exact: match.exact };
  if (match.prefix !== undefined) return { prefix: match.prefix };
  return { safe_regex: { regex: match.regex } };
}

/** Istio's IsCatchAllRoute: `/` (prefix, or regex `.*`) with no header or query matches. */
function isCatchAll(route: Json): boolean {
  const match = route.match as Json;
  const everything = match.prefix === "/" || (match.safe_regex as Json | undefined)?.regex === ".*";
  return everything && !match.headers && !match.query_parameters;
}
