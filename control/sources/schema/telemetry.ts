// Telemetry (telemetry.istio.io): the spec schema. Istio's reference: istio.io/latest/docs/reference/config/telemetry/.
// Implemented: `selector`, `tracing` (providers, randomSamplingPercentage, customTags, disableSpanReporting, match
// mode) and `metrics` (providers, overrides by metric and mode with `disabled`: the istio-stats filter off for a side,
// or a metric dropped; `tagOverrides` with REMOVE). Not: accessLogging, targetRefs, tagOverrides UPSERT (its value
// is a CEL expression), customMetric, reportingInterval, the
// tracing fields useRequestIdForTraceSampling, enableIstioTags, disableContextPropagation (refused as unknown fields).
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

/** Istio's metrics (MetricSelector.IstioMetric) that the istio-stats filter records; Istio's gRPC message counters
 * (GRPC_REQUEST_MESSAGES, GRPC_RESPONSE_MESSAGES) are not recorded, so an override of them is refused. */
export const ISTIO_METRICS = [
  "ALL_METRICS",
  "REQUEST_COUNT",
  "REQUEST_DURATION",
  "REQUEST_SIZE",
  "RESPONSE_SIZE",
  "TCP_OPENED_CONNECTIONS",
  "TCP_CLOSED_CONNECTIONS",
  "TCP_SENT_BYTES",
  "TCP_RECEIVED_BYTES",
] as const;
export type IstioMetric = (typeof ISTIO_METRICS)[number];

/** The labels of Istio's standard metrics (istio.io/latest/docs/reference/config/metrics/), as istio-stats writes them. */
export const ISTIO_LABELS: readonly string[] = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_canonical_service",
  "source_canonical_revision",
  "source_cluster",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_service",
  "destination_service_name",
  "destination_service_namespace",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_cluster",
  "request_protocol",
  "response_code",
  "grpc_response_status",
  "response_flags",
  "connection_security_policy",
];

/** tagOverrides: REMOVE takes a label off the metric (Istio's stats config `tags_to_remove`); UPSERT (Istio's default
 * operation) sets a label to a CEL expression, which the istio-stats filter does not evaluate, so it is refused. */
const tagOverrides = z
  .record(
    z.string(),
    z.strictObject({
      operation: z.literal("REMOVE", { message: 'only "REMOVE" is implemented (UPSERT\'s value is a CEL expression the istio-stats filter does not evaluate)' }),
    }),
  )
  .superRefine((tags, context) => {
    for (const name of Object.keys(tags)) {
      if (!ISTIO_LABELS.includes(name)) context.addIssue({ code: "custom", path: [name], message: `not a label of Istio's metrics (${ISTIO_LABELS.join(", ")})` });
    }
  });

const metrics = z.strictObject({
  providers: z.array(providerRef).optional(),
  overrides: z
    .array(
      z.strictObject({
        match: z
          .strictObject({
            metric: z.enum(ISTIO_METRICS, { message: `one of ${ISTIO_METRICS.join(", ")} (the istio-stats filter records no gRPC message counts)` }).optional(),
            mode: z.enum(TRACING_MODES).optional(),
          })
          .optional(),
        disabled: z.boolean().optional(),
        tagOverrides: tagOverrides.optional(),
      }),
    )
    .optional(),
});

export const telemetrySpec = z.strictObject({
  selector: z.strictObject({ matchLabels: labels }).optional(),
  // Several entries apply in order, each to the sides its match.mode names (istiod's merge).
  tracing: z.array(tracing).optional(),
  metrics: z.array(metrics).optional(),
});
