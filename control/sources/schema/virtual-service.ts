// VirtualService: the spec schema.
import { z } from "zod";
import { destination, duration, exportTo, percent, stringMatch } from "./common.js";

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

const httpMatch = z.strictObject({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  method: stringMatch.optional(),
  headers: z.record(z.string(), stringMatch).optional(),
  ignoreUriCase: z.boolean().optional(),
});
export type HttpMatch = z.infer<typeof httpMatch>;

const httpRoute = z.strictObject({
  name: z.string().optional(),
  match: z.array(httpMatch).optional(),
  route: z
    .array(z.strictObject({ destination, weight: z.number().int().min(0).max(100).optional() }))
    .min(1)
    .refine((routes) => routes.length === 1 || routes.every((r) => r.weight !== undefined), {
      message: "every destination needs a weight when there are several",
    })
    .refine((routes) => routes.length === 1 || routes.reduce((sum, r) => sum + (r.weight ?? 0), 0) === 100, {
      message: "weights must add up to 100",
    }),
  timeout: duration.optional(),
  retries: z
    .strictObject({
      attempts: z.number().int().min(0),
      perTryTimeout: duration.optional(),
      retryOn: retryOn.optional(),
      retryRemoteLocalities: z.boolean().optional(),
    })
    .refine((r) => r.attempts > 0 || (r.perTryTimeout === undefined && r.retryOn === undefined && r.retryRemoteLocalities === undefined), {
      message: "attempts: 0 turns retries off, so perTryTimeout, retryOn and retryRemoteLocalities would do nothing (Istio refuses them too)",
    })
    .optional(),
  mirror: destination.optional(),
  mirrorPercentage: percent.optional(),
});
export type HttpRoute = z.infer<typeof httpRoute>;

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
    hosts: z.array(z.string().min(1)).min(1),
    gateways: z.array(z.string().min(1)).optional(),
    http: z.array(httpRoute).default([]),
    tls: z.array(tlsRoute).default([]),
    tcp: z.array(tcpRoute).default([]),
    exportTo: exportTo.optional(),
  })
  .refine((vs) => vs.http.length + vs.tls.length + vs.tcp.length > 0, { message: "needs http, tls or tcp routes" });
