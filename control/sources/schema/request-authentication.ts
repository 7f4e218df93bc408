// RequestAuthentication (security.istio.io): the spec schema. Which JWTs a workload accepts; a request with an
// invalid token is refused, one without a token passes (an AuthorizationPolicy can then require requestPrincipals)
// (istio.io/latest/docs/reference/config/security/request_authentication/).
import { z } from "zod";
import { duration, matchLabelsSelector } from "./common.js";

const jwtRule = z
  .strictObject({
    issuer: z.string().min(1),
    audiences: z.array(z.string().min(1)).optional(),
    /** Fetched by the control plane, which inlines the keys into Envoy's configuration (Istio's default, istiod mode). */
    jwksUri: z.url({ protocol: /^https?$/, message: "an http(s) URL" }).optional(),
    /** The JSON Web Key Set itself, as a JSON string. */
    jwks: z
      .string()
      .refine((text) => {
        try {
          return Array.isArray((JSON.parse(text) as { keys?: unknown }).keys);
        } catch {
          return false;
        }
      }, 'a JSON Web Key Set: {"keys": [...]}')
      .optional(),
    fromHeaders: z.array(z.strictObject({ name: z.string().min(1), prefix: z.string().optional() })).optional(),
    fromParams: z.array(z.string().min(1)).optional(),
    fromCookies: z.array(z.string().min(1)).optional(),
    outputPayloadToHeader: z.string().min(1).optional(),
    outputClaimToHeaders: z.array(z.strictObject({ header: z.string().min(1), claim: z.string().min(1) })).optional(),
    forwardOriginalToken: z.boolean().optional(),
    timeout: duration.optional(),
    spaceDelimitedClaims: z.array(z.string().min(1)).optional(),
  })
  .refine((rule) => !(rule.jwks && rule.jwksUri), { message: "set jwks or jwksUri, not both", path: ["jwks"] });
export type JwtRule = z.infer<typeof jwtRule>;

export const requestAuthenticationSpec = z.strictObject({
  selector: matchLabelsSelector.optional(),
  jwtRules: z.array(jwtRule).optional(),
});
