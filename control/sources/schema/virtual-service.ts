// VirtualService: the spec schema.
import { z } from "zod";
import { destination, duration, percent, stringMatch } from "./common.js";

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
      retryOn: z.string().optional(),
      retryRemoteLocalities: z.boolean().optional(),
    })
    .optional(),
  mirror: destination.optional(),
  mirrorPercentage: percent.optional(),
});
export type HttpRoute = z.infer<typeof httpRoute>;

export const virtualServiceSpec = z.strictObject({
  hosts: z.array(z.string().min(1)).min(1),
  gateways: z.array(z.string().min(1)).optional(),
  http: z.array(httpRoute).min(1),
});
