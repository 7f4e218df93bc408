// Gateway: the spec schema.
import { z } from "zod";
import { labels } from "./common.js";

const gatewayServer = z.strictObject({
  name: z.string().optional(),
  port: z.strictObject({
    number: z.number().int().min(1).max(65535),
    name: z.string().optional(),
    protocol: z.enum(["HTTP", "HTTP2", "HTTPS", "TCP", "TLS"]),
  }),
  hosts: z.array(z.string().min(1)).min(1),
  tls: z
    .strictObject({
      httpsRedirect: z.boolean().optional(),
      mode: z.enum(["PASSTHROUGH", "SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"]).optional(),
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
