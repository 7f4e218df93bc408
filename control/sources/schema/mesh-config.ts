// Istio's MeshConfig (the `mesh` file of istiod): the fields Skiff reads.
import { z } from "zod";
import { dnsLabel } from "./common.js";
import { localityLbSetting } from "./destination-rule.js";

export const meshConfigSchema = z.strictObject({
  /** ALLOW_ANY (Istio's default) or REGISTRY_ONLY. */
  outboundTrafficPolicy: z.strictObject({ mode: z.enum(["ALLOW_ANY", "REGISTRY_ONLY"]) }).optional(),
  /** Istio's config root namespace: EnvoyFilters (and TrafficExtensions) there apply to proxies of every namespace. */
  rootNamespace: dnsLabel.optional(),
  /** The mesh-wide locality load balancing; a DestinationRule's own replaces it. Istio's default: `{ enabled: true }`. */
  localityLbSetting: localityLbSetting.optional(),
  /** Auto mTLS (default true): clients use mutual TLS to endpoints with a sidecar when no DestinationRule sets `tls`. */
  enableAutoMtls: z.boolean().optional(),
});
