// DestinationRule: the spec schema.
import { z } from "zod";
import { duration, exportTo, labels } from "./common.js";

const loadBalancer = z
  .strictObject({
    simple: z.enum(["UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM"]).optional(),
    consistentHash: z
      .strictObject({
        httpHeaderName: z.string().optional(),
        httpCookie: z.strictObject({ name: z.string(), path: z.string().optional(), ttl: duration.optional() }).optional(),
        useSourceIp: z.boolean().optional(),
        httpQueryParameterName: z.string().optional(),
        minimumRingSize: z.number().int().positive().optional(),
      })
      .refine(
        (h) => [h.httpHeaderName, h.httpCookie, h.useSourceIp, h.httpQueryParameterName].filter((v) => v !== undefined).length === 1,
        { message: "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName" },
      )
      .optional(),
  })
  .refine((lb) => (lb.simple === undefined) !== (lb.consistentHash === undefined), { message: "exactly one of simple or consistentHash" });

/** ClientTLSSettings: how a client's sidecar talks TLS to the service (istio.io .../destination-rule/#ClientTLSSettings). */
export const clientTls = z
  .strictObject({
    mode: z.enum(["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
    clientCertificate: z.string().min(1).optional(),
    privateKey: z.string().min(1).optional(),
    caCertificates: z.string().min(1).optional(),
    credentialName: z.string().min(1).optional(),
    subjectAltNames: z.array(z.string().min(1)).optional(),
    sni: z.string().min(1).optional(),
    insecureSkipVerify: z.boolean().optional(),
  })
  .superRefine((tls, context) => {
    const files = tls.clientCertificate || tls.privateKey || tls.caCertificates || tls.credentialName;
    if (tls.mode === "ISTIO_MUTUAL" && files) {
      context.addIssue({ code: "custom", message: "ISTIO_MUTUAL uses the workload certificate: clientCertificate, privateKey, caCertificates and credentialName must be empty" });
    }
    if (tls.mode === "MUTUAL" && !tls.credentialName && !(tls.clientCertificate && tls.privateKey)) {
      context.addIssue({ code: "custom", message: "MUTUAL needs clientCertificate and privateKey (or credentialName)" });
    }
    if ((tls.mode === "SIMPLE" || tls.mode === "MUTUAL") && !tls.caCertificates && !tls.credentialName && !tls.insecureSkipVerify) {
      // Istio would verify against the operating system's roots; Skiff asks for the CA explicitly.
      context.addIssue({ code: "custom", message: `${tls.mode} needs caCertificates (or credentialName, or insecureSkipVerify: true): Skiff does not use the OS root store` });
    }
  });
export type ClientTls = z.infer<typeof clientTls>;

const trafficPolicy = z.strictObject({
  tls: clientTls.optional(),
  loadBalancer: loadBalancer.optional(),
  connectionPool: z
    .strictObject({
      tcp: z.strictObject({ maxConnections: z.number().int().positive().optional(), connectTimeout: duration.optional() }).optional(),
      http: z
        .strictObject({
          http1MaxPendingRequests: z.number().int().positive().optional(),
          http2MaxRequests: z.number().int().positive().optional(),
          maxRequestsPerConnection: z.number().int().min(0).optional(),
          maxRetries: z.number().int().min(0).optional(),
          idleTimeout: duration.optional(),
        })
        .optional(),
    })
    .optional(),
  outlierDetection: z
    .strictObject({
      consecutive5xxErrors: z.number().int().min(0).optional(),
      consecutiveGatewayErrors: z.number().int().min(0).optional(),
      interval: duration.optional(),
      baseEjectionTime: duration.optional(),
      maxEjectionPercent: z.number().int().min(0).max(100).optional(),
      minHealthPercent: z.number().int().min(0).max(100).optional(),
    })
    .optional(),
});
export type TrafficPolicy = z.infer<typeof trafficPolicy>;

export const destinationRuleSpec = z
  .strictObject({
    host: z.string().min(1),
    trafficPolicy: trafficPolicy.optional(),
    subsets: z.array(z.strictObject({ name: z.string().min(1), labels: labels.default({}), trafficPolicy: trafficPolicy.optional() })).optional(),
    exportTo: exportTo.optional(),
    /** Applies the rule only to the proxies of its namespace with these labels (Istio's istio.type.v1beta1.WorkloadSelector). */
    workloadSelector: z.strictObject({ matchLabels: labels }).optional(),
  })
  .superRefine((spec, context) => {
    spec.subsets?.forEach((subset, index) => {
      if (spec.subsets!.findIndex((other) => other.name === subset.name) !== index) {
        context.addIssue({ code: "custom", path: ["subsets", index, "name"], message: `subset ${subset.name} is already defined (Istio refuses duplicate subset names)` });
      }
    });
    if (spec.workloadSelector && spec.exportTo && !(spec.exportTo.length === 1 && spec.exportTo[0] === ".")) {
      context.addIssue({ code: "custom", path: ["exportTo"], message: 'a rule with a workloadSelector applies only in its own namespace, so exportTo can only be ["."] (Istio refuses others)' });
    }
  });
