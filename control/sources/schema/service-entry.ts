// ServiceEntry: the spec schema.
import { z } from "zod";
import { labels } from "./common.js";

export const serviceEntrySpec = z.strictObject({
  hosts: z.array(z.string().min(1)).min(1),
  ports: z
    .array(
      z.strictObject({
        number: z.number().int().min(1).max(65535),
        name: z.string().min(1),
        protocol: z.enum(["HTTP", "HTTP2", "GRPC"]).default("HTTP"),
        targetPort: z.number().int().min(1).max(65535).optional(),
      }),
    )
    .min(1),
  location: z.enum(["MESH_EXTERNAL", "MESH_INTERNAL"]).optional(),
  resolution: z.enum(["STATIC", "DNS"]).default("STATIC"),
  endpoints: z
    .array(
      z.strictObject({
        address: z.string().min(1),
        ports: z.record(z.string(), z.number().int().min(1).max(65535)).optional(),
        labels: labels.optional(),
        weight: z.number().int().positive().optional(),
      }),
    )
    .default([]),
});
