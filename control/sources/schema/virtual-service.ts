// VirtualService: the spec schema.
import { z } from "zod";
import { destination, dnsLabel, duration, exportTo, labels, percent, stringMatch } from "./common.js";

/** The conditions Envoy's router retries on (x-envoy-retry-on and x-envoy-retry-grpc-on), as Istio's validation
 * lists them (pkg/config/validation/agent/validation.go, supportedRetryOnPolicies), and HTTP status codes. */
export const RETRY_ON = [
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "retriable-4xx",
  "refused-stream",
  "retriable-status-codes",
  "retriable-headers",
  "envoy-ratelimited",
  "http3-post-connect-failure",
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
] as const;

const retryOn = z.string().superRefine((value, context) => {
  for (const token of value.split(",").map((part) => part.trim())) {
    if ((RETRY_ON as readonly string[]).includes(token) || (/^\d{3}$/.test(token) && Number(token) >= 100 && Number(token) <= 599)) continue;
    context.addIssue({ code: "custom", message: `"${token}" is not a retry condition; use a comma-separated list of ${RETRY_ON.join(", ")} or HTTP status codes` });
  }
});

/** A header name Envoy can match or change: RFC 7230 token characters (Istio's ValidateHTTPHeaderName). */
const headerName = z.string().regex(/^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/, "an HTTP header name");

/** Headers Istio lets a route set: any name but pseudo-headers and Host, except `:authority` / `host`, which become
 * the route's authority rewrite. */
const settableHeaderName = z
  .string()
  .regex(/^:?[-!#$%&'*+.^_`|~0-9A-Za-z]+$/, "an HTTP header name")
  .refine((name) => !name.startsWith(":") || name.toLowerCase() === ":authority", { message: "only :authority among pseudo-headers (Istio refuses the others)" });

const headerOperations = z.strictObject({
  set: z.record(settableHeaderName, z.string()).optional(),
  add: z.record(settableHeaderName, z.string()).optional(),
  remove: z.array(headerName).optional(),
});

/** Header manipulation for requests and responses (Istio's Headers). */
export const headers = z.strictObject({ request: headerOperations.optional(), response: headerOperations.optional() });
export type Headers = z.infer<typeof headers>;

const port = z.number().int().min(1).max(65535);

const httpMatch = z.strictObject({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  scheme: stringMatch.optional(),
  method: stringMatch.optional(),
  authority: stringMatch.optional(),
  headers: z.record(headerName, stringMatch).optional(),
  withoutHeaders: z.record(headerName, stringMatch).optional(),
  queryParams: z.record(z.string().min(1), stringMatch).optional(),
  port: port.optional(),
  sourceLabels: labels.optional(),
  sourceNamespace: dnsLabel.optional(),
  gateways: z.array(z.string().min(1)).optional(),
  ignoreUriCase: z.boolean().optional(),
  statPrefix: z.string().min(1).optional(),
});
export type HttpMatch = z.infer<typeof httpMatch>;

const routeDestination = z.strictObject({ destination, weight: z.number().int().min(0).optional(), headers: headers.optional() });

/** gRPC status names Istio accepts for an abort (pkg/util/grpc/codes.go). */
export const GRPC_STATUS = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

const fault = z
  .strictObject({
    delay: z.strictObject({ fixedDelay: duration, percentage: percent.optional() }).optional(),
    abort: z
      .strictObject({
        httpStatus: z.number().int().min(200).max(599).optional(),
        grpcStatus: z.enum(GRPC_STATUS).optional(),
        percentage: percent.optional(),
      })
      .refine((abort) => (abort.httpStatus === undefined) !== (abort.grpcStatus === undefined), { message: "exactly one of httpStatus or grpcStatus" })
      .optional(),
  })
  .refine((f) => f.delay !== undefined || f.abort !== undefined, { message: "a fault needs a delay, an abort or both" });

/** The HTTP methods a CORS policy may allow (Istio's supportedCORSMethods). */
const CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const;

const corsPolicy = z.strictObject({
  allowOrigins: z.array(stringMatch).optional(),
  allowMethods: z.array(z.enum(CORS_METHODS)).optional(),
  allowHeaders: z.array(headerName).optional(),
  exposeHeaders: z.array(headerName).optional(),
  maxAge: duration.refine((value) => !/(ms|us|µs|ns)$/.test(value) && !value.includes("."), { message: "whole seconds (Envoy's max-age is in seconds)" }).optional(),
  allowCredentials: z.boolean().optional(),
  unmatchedPreflights: z.enum(["UNSPECIFIED", "FORWARD", "IGNORE"]).optional(),
});

const redirect = z
  .strictObject({
    uri: z.string().min(1).optional(),
    authority: z.string().min(1).optional(),
    port: port.optional(),
    derivePort: z.enum(["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]).optional(),
    scheme: z.enum(["http", "https"]).optional(),
    redirectCode: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)], { message: "one of 301, 302, 303, 307, 308 (what Envoy can answer)" }).optional(),
    prefixRewrite: z.string().optional(),
  })
  .refine((r) => !(r.uri !== undefined && r.prefixRewrite !== undefined), { message: "only one of uri or prefixRewrite" })
  .refine((r) => !(r.port !== undefined && r.derivePort !== undefined), { message: "only one of port or derivePort" })
  .refine((r) => [r.uri, r.prefixRewrite, r.authority, r.port, r.derivePort, r.scheme].some((v) => v !== undefined), {
    message: "a redirect needs uri, prefixRewrite, authority, scheme or port (Istio refuses an empty one)",
  });

const directResponse = z.strictObject({
  status: z.number().int().min(200).max(599),
  body: z
    .strictObject({ string: z.string().optional(), bytes: z.base64().optional() })
    .refine((b) => (b.string === undefined) !== (b.bytes === undefined), { message: "exactly one of string or bytes" })
    .refine((b) => (b.string?.length ?? (b.bytes?.length ?? 0) * 0.75) <= 1024 * 1024, { message: "at most 1 MiB (Istio refuses larger bodies)" })
    .optional(),
});

const rewrite = z
  .strictObject({
    uri: z.string().min(1).optional(),
    authority: z.string().min(1).optional(),
    uriRegexRewrite: z.strictObject({ match: z.string().min(1), rewrite: z.string() }).optional(),
  })
  .refine((r) => !(r.uri !== undefined && r.uriRegexRewrite !== undefined), { message: "only one of uri or uriRegexRewrite" })
  .refine((r) => r.uri !== undefined || r.authority !== undefined || r.uriRegexRewrite !== undefined, { message: "a rewrite needs uri, uriRegexRewrite or authority" });

const retries = z
  .strictObject({
    attempts: z.number().int().min(0),
    perTryTimeout: duration.optional(),
    retryOn: retryOn.optional(),
    retryRemoteLocalities: z.boolean().optional(),
    retryIgnorePreviousHosts: z.boolean().optional(),
    backoff: duration.optional(),
  })
  .refine((r) => r.attempts > 0 || (r.perTryTimeout === undefined && r.retryOn === undefined && r.retryRemoteLocalities === undefined), {
    message: "attempts: 0 turns retries off, so perTryTimeout, retryOn and retryRemoteLocalities would do nothing (Istio refuses them too)",
  });

const httpRoute = z
  .strictObject({
    name: z.string().optional(),
    match: z.array(httpMatch).optional(),
    route: z
      .array(routeDestination)
      .min(1)
      .refine((routes) => routes.length === 1 || routes.some((r) => (r.weight ?? 0) > 0), { message: "total destination weight = 0 (Istio refuses it)" })
      .optional(),
    redirect: redirect.optional(),
    directResponse: directResponse.optional(),
    delegate: z.strictObject({ name: dnsLabel, namespace: dnsLabel.optional() }).optional(),
    rewrite: rewrite.optional(),
    timeout: duration.optional(),
    retries: retries.optional(),
    fault: fault.optional(),
    mirror: destination.optional(),
    mirrors: z.array(z.strictObject({ destination, percentage: percent.optional() })).min(1).optional(),
    mirrorPercentage: percent.optional(),
    corsPolicy: corsPolicy.optional(),
    headers: headers.optional(),
  })
  .superRefine((http, context) => {
    // Istio's validateHTTPRouteConflict: one action per route.
    const issue = (path: string, message: string) => context.addIssue({ code: "custom", path: [path], message });
    const actions = (["route", "redirect", "directResponse", "delegate"] as const).filter((key) => http[key] !== undefined);
    if (actions.length === 0) issue("route", "a route needs route, redirect, directResponse or delegate");
    if (actions.length > 1) issue(actions[1]!, `only one of route, redirect, directResponse or delegate (this one has ${actions.join(" and ")})`);
    if (http.redirect || http.directResponse) {
      for (const key of ["fault", "rewrite"] as const) if (http[key]) issue(key, `${key} does nothing on a route that answers itself (Istio refuses it with ${http.redirect ? "redirect" : "directResponse"})`);
    }
    if (http.mirror && http.mirrors) issue("mirrors", "only one of mirror or mirrors (Istio refuses both)");
    if (http.mirrorPercentage && !http.mirror) issue("mirrorPercentage", "mirrorPercentage applies to mirror; give mirrors their own percentage");
    if (http.redirect?.prefixRewrite !== undefined && http.match?.some((m) => m.uri && m.uri.prefix === undefined)) {
      issue("redirect", "prefixRewrite needs every uri match to be a prefix match (Istio refuses it otherwise)");
    }
    const authorities = [http.rewrite?.authority, ...authorityHeaders(http.headers)].filter((v) => v !== undefined);
    if (authorities.length > 1) issue("headers", "the authority is rewritten more than once (rewrite.authority and :authority/host headers); Istio refuses it");
  });
export type HttpRoute = z.infer<typeof httpRoute>;

function authorityHeaders(headers: Headers | undefined): string[] {
  return [...Object.entries(headers?.request?.set ?? {}), ...Object.entries(headers?.request?.add ?? {})]
    .filter(([name]) => [":authority", "host"].includes(name.toLowerCase()))
    .map(([, value]) => value);
}

/** `tcp` and `tls` route destinations: one, or several with weights adding up to 100 (Istio's RouteDestination). */
const routeDestinations = z
  .array(z.strictObject({ destination, weight: z.number().int().min(0).max(100).optional() }))
  .min(1)
  .refine((routes) => routes.length === 1 || routes.every((r) => r.weight !== undefined), { message: "every destination needs a weight when there are several" })
  .refine((routes) => routes.length === 1 || routes.reduce((sum, r) => sum + (r.weight ?? 0), 0) === 100, { message: "weights must add up to 100" });

/** Match conditions Skiff evaluates when it generates a proxy's config (Istio's static predicates). */
const l4Match = {
  port: z.number().int().min(1).max(65535).optional(),
  gateways: z.array(z.string().min(1)).optional(),
  sourceLabels: z.record(z.string(), z.string()).optional(),
  sourceNamespace: z.string().min(1).optional(),
};

const tlsRoute = z.strictObject({
  match: z.array(z.strictObject({ sniHosts: z.array(z.string().min(1)).min(1), ...l4Match })).min(1),
  route: routeDestinations,
});
export type TlsRoute = z.infer<typeof tlsRoute>;

const tcpRoute = z.strictObject({
  match: z.array(z.strictObject(l4Match)).optional(),
  route: routeDestinations,
});
export type TcpRoute = z.infer<typeof tcpRoute>;

export const virtualServiceSpec = z
  .strictObject({
    /** Empty for a delegate, which only other VirtualServices' routes use (`delegate`). */
    hosts: z.array(z.string().min(1)).default([]),
    gateways: z.array(z.string().min(1)).optional(),
    http: z.array(httpRoute).default([]),
    tls: z.array(tlsRoute).default([]),
    tcp: z.array(tcpRoute).default([]),
    exportTo: exportTo.optional(),
  })
  .refine((vs) => vs.http.length + vs.tls.length + vs.tcp.length > 0, { message: "needs http, tls or tcp routes" })
  .superRefine((vs, context) => {
    const issue = (path: PropertyKey[], message: string) => context.addIssue({ code: "custom", path, message });
    if (vs.hosts.length === 0) {
      // Istio's ValidateVirtualService: what a delegate (no hosts) cannot have.
      if (vs.gateways) issue(["gateways"], "a delegate VirtualService (no hosts) takes no gateways: the VirtualService that delegates to it decides (Istio refuses them)");
      if (vs.tls.length + vs.tcp.length > 0) issue([vs.tls.length ? "tls" : "tcp"], "a delegate VirtualService (no hosts) has http routes only (Istio refuses tls and tcp ones)");
      vs.http.forEach((http, index) => http.delegate && issue(["http", index, "delegate"], "a delegate VirtualService cannot delegate again"));
    }
  });
