// The Istio resources Skiff reads, as zod schemas. Objects are strict: a field Skiff does not implement is an error
// naming that field, rather than configuration that silently does nothing. Field names and meanings follow Istio's
// API reference (istio.io/latest/docs/reference/config/networking/ and .../proxy/extensions/wasm-plugin/).
import { z } from "zod";

/** Go-style durations as Istio writes them: "1s", "300ms", "1m30s". */
export const DURATION = /^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/;
const duration = z.string().regex(DURATION, 'a duration such as "1s", "300ms" or "1m30s"');

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a lowercase DNS name (a-z, 0-9, '-', '.')");

const metadata = z.looseObject({
  name: dnsLabel,
  namespace: dnsLabel.default("default"),
  labels: z.record(z.string(), z.string()).optional(),
});

const labels = z.record(z.string(), z.string());

const stringMatch = z
  .strictObject({ exact: z.string().optional(), prefix: z.string().optional(), regex: z.string().optional() })
  .refine((m) => [m.exact, m.prefix, m.regex].filter((v) => v !== undefined).length === 1, {
    message: "exactly one of exact, prefix or regex",
  });
export type StringMatch = z.infer<typeof stringMatch>;

const portSelector = z.strictObject({ number: z.number().int().min(1).max(65535) });

const destination = z.strictObject({
  host: z.string().min(1),
  subset: z.string().min(1).optional(),
  port: portSelector.optional(),
});
export type Destination = z.infer<typeof destination>;

const percent = z.strictObject({ value: z.number().min(0).max(100) });

// --- Gateway -------------------------------------------------------------------------------------------------------

const gatewayServer = z.strictObject({
  name: z.string().optional(),
  port: z.strictObject({
    number: z.number().int().min(1).max(65535),
    name: z.string().optional(),
    protocol: z.enum(["HTTP", "HTTP2", "HTTPS"]),
  }),
  hosts: z.array(z.string().min(1)).min(1),
  tls: z
    .strictObject({
      httpsRedirect: z.boolean().optional(),
      mode: z.enum(["SIMPLE", "MUTUAL", "PASSTHROUGH", "ISTIO_MUTUAL"]).optional(),
      credentialName: z.string().optional(),
      serverCertificate: z.string().optional(),
      privateKey: z.string().optional(),
      caCertificates: z.string().optional(),
    })
    .optional(),
});
export type GatewayServer = z.infer<typeof gatewayServer>;

export const gatewaySpec = z.strictObject({
  selector: labels.default({}),
  servers: z.array(gatewayServer).min(1),
});

// --- VirtualService ------------------------------------------------------------------------------------------------

const httpMatch = z.strictObject({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  method: stringMatch.optional(),
  headers: z.record(z.string(), stringMatch).optional(),
  ignoreUriCase: z.boolean().optional(),
});
export type HttpMatch = z.infer<typeof httpMatch>;

const httpRoute = z.strictObject({
  name: z.string().optional(),
  match: z.array(httpMatch).optional(),
  route: z
    .array(z.strictObject({ destination, weight: z.number().int().min(0).max(100).optional() }))
    .min(1)
    .refine((routes) => routes.length === 1 || routes.every((r) => r.weight !== undefined), {
      message: "every destination needs a weight when there are several",
    })
    .refine((routes) => routes.length === 1 || routes.reduce((sum, r) => sum + (r.weight ?? 0), 0) === 100, {
      message: "weights must add up to 100",
    }),
  timeout: duration.optional(),
  retries: z
    .strictObject({
      attempts: z.number().int().min(0),
      perTryTimeout: duration.optional(),
      retryOn: z.string().optional(),
      retryRemoteLocalities: z.boolean().optional(),
    })
    .optional(),
  mirror: destination.optional(),
  mirrorPercentage: percent.optional(),
});
export type HttpRoute = z.infer<typeof httpRoute>;

export const virtualServiceSpec = z.strictObject({
  hosts: z.array(z.string().min(1)).min(1),
  gateways: z.array(z.string().min(1)).optional(),
  http: z.array(httpRoute).min(1),
});

// --- DestinationRule -----------------------------------------------------------------------------------------------

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

const trafficPolicy = z.strictObject({
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

export const destinationRuleSpec = z.strictObject({
  host: z.string().min(1),
  trafficPolicy: trafficPolicy.optional(),
  subsets: z.array(z.strictObject({ name: z.string().min(1), labels: labels.default({}), trafficPolicy: trafficPolicy.optional() })).optional(),
});

// --- ServiceEntry --------------------------------------------------------------------------------------------------

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

// --- WasmPlugin ----------------------------------------------------------------------------------------------------

export const WASM_PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"] as const;

export const wasmPluginSpec = z.strictObject({
  selector: z.strictObject({ matchLabels: labels }).optional(),
  url: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits").optional(),
  pluginName: z.string().optional(),
  pluginConfig: z.record(z.string(), z.unknown()).optional(),
  phase: z.enum(WASM_PHASES).optional(),
  priority: z.number().int().optional(),
  failStrategy: z.enum(["FAIL_CLOSE", "FAIL_OPEN"]).optional(),
  type: z.enum(["HTTP"]).optional(),
});

// --- EnvoyFilter (only what the seed uses: CLUSTER + MERGE) -------------------------------------------------------

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

// --- Istio's MeshConfig (the `mesh` file of istiod), only the fields Skiff reads -----------------------------------

export const meshConfigSchema = z.strictObject({
  outboundTrafficPolicy: z
    .strictObject({
      mode: z.literal("REGISTRY_ONLY", {
        message: 'only "REGISTRY_ONLY" is supported: without traffic capture there is no original destination to pass through to',
      }),
    })
    .optional(),
});

export const KINDS = {
  Gateway: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: gatewaySpec },
  VirtualService: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: virtualServiceSpec },
  DestinationRule: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: destinationRuleSpec },
  ServiceEntry: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: serviceEntrySpec },
  EnvoyFilter: { group: "networking.istio.io", versions: ["v1alpha3"], spec: envoyFilterSpec },
  WasmPlugin: { group: "extensions.istio.io", versions: ["v1alpha1"], spec: wasmPluginSpec },
} as const;

export type Kind = keyof typeof KINDS;

export const resourceEnvelope = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata,
  spec: z.unknown(),
});
