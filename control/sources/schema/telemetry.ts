// Telemetry (telemetry.istio.io): the spec schema. Istio's reference: istio.io/latest/docs/reference/config/telemetry/.
// Implemented: `selector`, `tracing` (providers, randomSamplingPercentage, customTags, disableSpanReporting, match
// mode) and `metrics` (providers, overrides with `disabled`, which turns the istio-stats filter off). Not: accessLogging,
// targetRefs, metric tagOverrides.
import { z } from "zod";
import { labels } from "./common.js";

const providerRef = z.strictObject({ name: z.string().min(1) });

const customTag = z
  .strictObject({
    literal: z.strictObject({ value: z.string() }).optional(),
    environment: z.strictObject({ name: z.string().min(1), defaultValue: z.string().optional() }).optional(),
    header: z.strictObject({ name: z.string().min(1), defaultValue: z.string().optional() }).optional(),
  })
  .refine((tag) => [tag.literal, tag.environment, tag.header].filter(Boolean).length === 1, {
    message: "exactly one of literal, environment or header",
  });
export type CustomTag = z.infer<typeof customTag>;

export const TRACING_MODES = ["CLIENT_AND_SERVER", "CLIENT", "SERVER"] as const;

const tracing = z.strictObject({
  match: z.strictObject({ mode: z.enum(TRACING_MODES) }).optional(),
  providers: z.array(providerRef).max(1, "Istio supports one tracing provider per Telemetry").optional(),
  randomSamplingPercentage: z.number().min(0).max(100).optional(),
  disableSpanReporting: z.boolean().optional(),
  customTags: z.record(z.string(), customTag).optional(),
});

const metrics = z.strictObject({
  providers: z.array(providerRef).optional(),
  overrides: z
    .array(
      z.strictObject({
        match: z.strictObject({ metric: z.literal("ALL_METRICS", { message: 'only "ALL_METRICS" is implemented' }).optional(), mode: z.enum(TRACING_MODES).optional() }).optional(),
        disabled: z.boolean().optional(),
      }),
    )
    .optional(),
});

export const telemetrySpec = z.strictObject({
  selector: z.strictObject({ matchLabels: labels }).optional(),
  tracing: z.array(tracing).max(1, "one tracing entry is implemented").optional(),
  metrics: z.array(metrics).max(1, "one metrics entry is implemented").optional(),
});
