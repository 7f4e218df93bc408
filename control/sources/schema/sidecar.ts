// Sidecar: the spec schema. What Istio's Sidecar resource scopes (istio.io/latest/docs/reference/config/networking/
// sidecar/): which services and VirtualServices a sidecar receives (egress hosts `namespace/host`), which inbound
// ports it serves (ingress), and its own outboundTrafficPolicy. TLS on ingress, connection pools and egressProxy are
// not implemented (refused by name, as every unknown field).
import { z } from "zod";
import { labels } from "./common.js";

const captureMode = z.enum(["DEFAULT", "IPTABLES", "NONE"]);

const sidecarPort = z.strictObject({
  number: z.number().int().min(1).max(65535),
  protocol: z.enum(["HTTP", "HTTP2", "GRPC", "TCP", "TLS", "HTTPS"]).default("HTTP"),
  name: z.string().min(1).optional(),
});

export const sidecarSpec = z.strictObject({
  workloadSelector: z.strictObject({ labels }).optional(),
  ingress: z
    .array(
      z.strictObject({
        port: sidecarPort,
        bind: z.string().min(1).optional(),
        captureMode: captureMode.optional(),
        /** `127.0.0.1:PORT` (the app on loopback) or `0.0.0.0:PORT` (the app on the pod's address); unset: the
         * connection's original destination (Istio's inbound passthrough). */
        defaultEndpoint: z
          .string()
          .regex(/^(127\.0\.0\.1|0\.0\.0\.0):\d{1,5}$/, 'an address "127.0.0.1:PORT" or "0.0.0.0:PORT" (unix sockets are not implemented)')
          .optional(),
      }),
    )
    .optional(),
  egress: z
    .array(
      z.strictObject({
        port: sidecarPort.optional(),
        bind: z.string().min(1).optional(),
        captureMode: captureMode.optional(),
        hosts: z.array(z.string().regex(/^~?[^/]+\/[^/]+$/, 'a host as "namespace/dnsName" ("./" for the Sidecar\'s namespace, "*/" for any)')).min(1),
      }),
    )
    .optional()
    // Istio's validation: only the last egress listener may omit its port (the catch-all one).
    .refine((egress) => !egress || egress.slice(0, -1).every((listener) => listener.port !== undefined), {
      message: "only the last egress listener may be without a port (the catch-all one)",
    }),
  outboundTrafficPolicy: z.strictObject({ mode: z.enum(["ALLOW_ANY", "REGISTRY_ONLY"]) }).optional(),
});
export type SidecarSpec = z.infer<typeof sidecarSpec>;
