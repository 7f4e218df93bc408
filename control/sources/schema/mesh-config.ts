// Istio's MeshConfig (the `mesh` file of istiod): the fields Skiff reads. Field names and meanings follow
// istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/.
import { z } from "zod";
import { dnsLabel } from "./common.js";
import { localityLbSetting } from "./destination-rule.js";

/** A collector's address as Istio names it: a service host (in the registry, or any resolvable name) and a port. */
const collector = {
  service: z.string().min(1),
  port: z.number().int().min(1).max(65535),
};

const extensionProvider = z
  .strictObject({
    name: z.string().min(1),
    prometheus: z.strictObject({}).optional(),
    zipkin: z.strictObject({ ...collector, maxTagLength: z.number().int().min(0).optional() }).optional(),
    opentelemetry: z.strictObject({ ...collector, maxTagLength: z.number().int().min(0).optional() }).optional(),
  })
  .refine((provider) => [provider.prometheus, provider.zipkin, provider.opentelemetry].filter(Boolean).length === 1, {
    message: "exactly one of prometheus, zipkin or opentelemetry",
  });
export type ExtensionProvider = z.infer<typeof extensionProvider>;

export const meshConfigSchema = z.strictObject({
  /** ALLOW_ANY (Istio's default) or REGISTRY_ONLY. */
  outboundTrafficPolicy: z.strictObject({ mode: z.enum(["ALLOW_ANY", "REGISTRY_ONLY"]) }).optional(),
  /** Istio's config root namespace: EnvoyFilters (and TrafficExtensions) there apply to proxies of every namespace. */
  rootNamespace: dnsLabel.optional(),
  /** The mesh-wide locality load balancing; a DestinationRule's own replaces it. Istio's default: `{ enabled: true }`. */
  localityLbSetting: localityLbSetting.optional(),
  /** Auto mTLS (default true): clients use mutual TLS to endpoints with a sidecar when no DestinationRule sets `tls`. */
  enableAutoMtls: z.boolean().optional(),
  /** Tracing by `defaultProviders.tracing` (Telemetry resources apply regardless, as in Istio). */
  enableTracing: z.boolean().optional(),
  defaultConfig: z
    .strictObject({ tracing: z.strictObject({ sampling: z.number().min(0).max(100).optional() }).optional() })
    .optional(),
  defaultProviders: z
    .strictObject({ tracing: z.array(z.string().min(1)).optional(), metrics: z.array(z.string().min(1)).optional() })
    .optional(),
  extensionProviders: z.array(extensionProvider).optional(),
});
