// DestinationRule: the spec schema.
import { z } from "zod";
import { duration, labels } from "./common.js";

const loadBalancer = z
  .strictObject({
    simple: z.enum(["UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM"]).optional(),
    consistentHash: z
      .strictObject({
        httpHeaderName: z.string().optional(),
        httpCookie: z.strictObject({ name: z.string(), path: z.string().optional(), ttl: duration.optional() }).optional(),
        useSourceIp: z.boolean().optional(),
        httpQueryParameterName: z.string().optional(),
        minimumRingSize: z.number().int().positive().optional(),
      })
      .refine(
        (h) => [h.httpHeaderName, h.httpCookie, h.useSourceIp, h.httpQueryParameterName].filter((v) => v !== undefined).length === 1,
        { message: "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName" },
      )
      .optional(),
  })
  .refine((lb) => (lb.simple === undefined) !== (lb.consistentHash === undefined), { message: "exactly one of simple or consistentHash" });

const trafficPolicy = z.strictObject({
  loadBalancer: loadBalancer.optional(),
  connectionPool: z
    .strictObject({
      tcp: z.strictObject({ maxConnections: z.number().int().positive().optional(), connectTimeout: duration.optional() }).optional(),
      http: z
        .strictObject({
          http1MaxPendingRequests: z.number().int().positive().optional(),
          http2MaxRequests: z.number().int().positive().optional(),
          maxRequestsPerConnection: z.number().int().min(0).optional(),
          maxRetries: z.number().int().min(0).optional(),
          idleTimeout: duration.optional(),
        })
        .optional(),
    })
    .optional(),
  outlierDetection: z
    .strictObject({
      consecutive5xxErrors: z.number().int().min(0).optional(),
      consecutiveGatewayErrors: z.number().int().min(0).optional(),
      interval: duration.optional(),
      baseEjectionTime: duration.optional(),
      maxEjectionPercent: z.number().int().min(0).max(100).optional(),
      minHealthPercent: z.number().int().min(0).max(100).optional(),
    })
    .optional(),
});
export type TrafficPolicy = z.infer<typeof trafficPolicy>;

export const destinationRuleSpec = z.strictObject({
  host: z.string().min(1),
  trafficPolicy: trafficPolicy.optional(),
  subsets: z.array(z.strictObject({ name: z.string().min(1), labels: labels.default({}), trafficPolicy: trafficPolicy.optional() })).optional(),
});
