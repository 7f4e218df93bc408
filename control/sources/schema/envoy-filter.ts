// EnvoyFilter: the spec schema (only what the seed uses: CLUSTER + MERGE).
import { z } from "zod";
import { labels } from "./common.js";

export const envoyFilterSpec = z.strictObject({
  workloadSelector: z.strictObject({ labels }).optional(),
  configPatches: z
    .array(
      z.strictObject({
        applyTo: z.literal("CLUSTER", { message: 'only "CLUSTER" is implemented' }),
        match: z
          .strictObject({
            context: z.enum(["ANY", "SIDECAR_OUTBOUND", "GATEWAY"]).optional(),
            cluster: z
              .strictObject({
                portNumber: z.number().int().optional(),
                service: z.string().optional(),
                subset: z.string().optional(),
                name: z.string().optional(),
              })
              .optional(),
          })
          .optional(),
        patch: z.strictObject({
          operation: z.literal("MERGE", { message: 'only "MERGE" is implemented' }),
          value: z.record(z.string(), z.unknown()),
        }),
      }),
    )
    .min(1),
});
