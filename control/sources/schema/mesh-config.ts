// Istio's MeshConfig (the `mesh` file of istiod): the fields Skiff reads.
import { z } from "zod";
import { dnsLabel } from "./common.js";

export const meshConfigSchema = z.strictObject({
  outboundTrafficPolicy: z
    .strictObject({
      mode: z.literal("REGISTRY_ONLY", {
        message: 'only "REGISTRY_ONLY" is supported: without traffic capture there is no original destination to pass through to',
      }),
    })
    .optional(),
  /** Istio's config root namespace: EnvoyFilters (and TrafficExtensions) there apply to proxies of every namespace. */
  rootNamespace: dnsLabel.optional(),
});
