// Building blocks shared by the schemas of the Istio kinds (one file per kind beside this one).
import { z } from "zod";

/** Go-style durations as Istio writes them: "1s", "300ms", "1m30s". */
export const DURATION = /^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/;
export const duration = z.string().regex(DURATION, 'a duration such as "1s", "300ms" or "1m30s"');

export const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a lowercase DNS name (a-z, 0-9, '-', '.')");

/** `namespace` may be left out: the reader fills in its default namespace (`skiff validate -n`, as kubectl). */
export const metadata = z.looseObject({
  name: dnsLabel,
  namespace: dnsLabel.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const labels = z.record(z.string(), z.string());

export const stringMatch = z
  .strictObject({ exact: z.string().optional(), prefix: z.string().optional(), regex: z.string().optional() })
  .refine((m) => [m.exact, m.prefix, m.regex].filter((v) => v !== undefined).length === 1, {
    message: "exactly one of exact, prefix or regex",
  });
export type StringMatch = z.infer<typeof stringMatch>;

export const portSelector = z.strictObject({ number: z.number().int().min(1).max(65535) });

export const destination = z.strictObject({
  host: z.string().min(1),
  subset: z.string().min(1).optional(),
  port: portSelector.optional(),
});
export type Destination = z.infer<typeof destination>;

export const percent = z.strictObject({ value: z.number().min(0).max(100) });

/** Where a resource is visible (Istio's exportTo): "." its own namespace, "*" every namespace, "~" none, or
 * namespace names; unset means every namespace. */
export const exportTo = z
  .array(z.union([z.enum([".", "*", "~"]), dnsLabel]))
  .refine((list) => !list.includes("~") || list.length === 1, { message: '"~" (visible nowhere) cannot be combined with other entries' });

/** A workload selector: the labels a proxy (or workload) must have. */
export const workloadSelector = z.strictObject({ labels });

/** An IPv4 or IPv6 address. */
export const ipAddress = z.union([z.ipv4(), z.ipv6()], { message: "an IP address" });

/** Istio's WorkloadSelector of the security kinds (`selector: { matchLabels }`): the labels a workload must have. */
export const matchLabelsSelector = z.strictObject({ matchLabels: labels.default({}) });

/** Policy `targetRefs` (istio.type.v1beta1.PolicyTargetReference), as far as Skiff has what they target: Gateway API
 * Gateways, which are the proxies labelled `gateway.networking.k8s.io/gateway-name` (Istio's policy attachment). */
export const gatewayTargetRefs = z
  .array(
    z.strictObject({
      group: z.literal("gateway.networking.k8s.io", { message: "only Gateway API Gateways (group gateway.networking.k8s.io) can be targeted; Skiff has no waypoints" }),
      kind: z.literal("Gateway", { message: "only kind Gateway can be targeted (GatewayClass, Service and ServiceEntry target waypoints, which Skiff does not have)" }),
      name: z.string().min(1),
      namespace: z.string().optional(),
    }),
  )
  .min(1)
  .max(16);
