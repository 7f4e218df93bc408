// RequestAuthentication as istiod translates it (pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig):
// one jwt_authn filter for all the workload's rules (its namespace's and the root namespace's, selector matching),
// providers `origins-<i>` by issuer order; a token that is present must verify for one of the issuers, a request
// without a token passes (an AuthorizationPolicy can then require `requestPrincipals`); verified payloads go to
// dynamic metadata `payload`, where AuthorizationPolicy's request principals and claims are matched.
import type { MeshConfig } from "../sources/index.js";
import type { JwtRule } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { JWT_FILTER, JWT_PAYLOAD, workloadPolicies } from "./authz.js";
import { typed } from "./envoy.js";

type Json = Record<string, unknown>;

/** The jwt_authn HTTP filter for the workload's RequestAuthentications (none: undefined). `jwks(uri)` gives the
 * key set the control plane fetched for a `jwksUri`, undefined while it has none. */
export function jwtFilter(mesh: MeshConfig, proxy: ProxyIdentity, jwks: (uri: string) => string | undefined): Json | undefined {
  const rules = workloadPolicies(mesh.requestAuthentications, mesh, proxy)
    .flatMap((policy) => policy.spec.jwtRules ?? [])
    .sort((a, b) => (a.issuer < b.issuer ? -1 : a.issuer > b.issuer ? 1 : 0));
  if (rules.length === 0) return undefined;
  const providers: Json = {};
  rules.forEach((rule, index) => (providers[`origins-${index}`] = jwtProvider(rule, jwks)));
  const name = (index: number) => ({ provider_name: `origins-${index}` });
  // Istio's requirement: any one provider whose token verifies, or (all providers: that provider, or no token).
  const optional = rules.map((_, index) => ({ requires_any: { requirements: [name(index), { allow_missing: {} }] } }));
  const requires = rules.length === 1 ? optional[0] : { requires_any: { requirements: [...rules.map((_, index) => name(index)), { requires_all: { requirements: optional } }] } };
  return {
    name: JWT_FILTER,
    typed_config: typed("envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication", {
      providers,
      rules: [{ match: { prefix: "/" }, requires }],
      bypass_cors_preflight: true,
    }),
  };
}

/** A key set that matches no token: what istiod inlines when it could not fetch a jwksUri (its FakeJwks), so that
 * tokens of that issuer are refused rather than accepted unchecked. Envoy refuses an empty set, so this is one RSA
 * public key whose private key was thrown away when it was made. */
const NO_KEYS = JSON.stringify({
  keys: [
    {
      kty: "RSA",
      kid: "skiff-no-key",
      alg: "RS256",
      use: "sig",
      e: "AQAB",
      n: "zSLl3jfsRgY8cs6E1AS73t885yYP3krdZDTnolMXek1eh_fEttk4Hx8WIvhSic6oUMXoQM5Tw5xaw8YZz4-VMoWv4DhEJpp1UlwDSlYfVl401ccm23xBkvzwrSrdYnZkwZowli1bQlyJRDsnX_zZ4PXhxRko6R070qbrr5ay_mL6ZV4-TqHg2EQsYdTFghQh4TxhOtnhAGECIk5gBJ9trwHToVjt0ne8weoKRz_TozPcv_aNlareo4mJ5cunVEj6KTGiZJ1M4P8XqUimaezmq4IQ-Cp_GORsXQJBnYhncPidSPPDJJYQQmn7IkBosefr6qlhTTOqvVxXpbFPyHgFJw",
    },
  ],
});

function jwtProvider(rule: JwtRule, jwks: (uri: string) => string | undefined): Json {
  const keys = rule.jwks ?? (rule.jwksUri ? jwks(rule.jwksUri) : undefined) ?? NO_KEYS;
  return {
    issuer: rule.issuer,
    ...(rule.audiences ? { audiences: rule.audiences } : {}),
    ...(rule.forwardOriginalToken ? { forward: true } : {}),
    ...(rule.outputPayloadToHeader ? { forward_payload_header: rule.outputPayloadToHeader } : {}),
    ...(rule.fromHeaders ? { from_headers: rule.fromHeaders.map((header) => ({ name: header.name, ...(header.prefix ? { value_prefix: header.prefix } : {}) })) } : {}),
    ...(rule.fromParams ? { from_params: rule.fromParams } : {}),
    ...(rule.fromCookies ? { from_cookies: rule.fromCookies } : {}),
    ...(rule.outputClaimToHeaders ? { claim_to_headers: rule.outputClaimToHeaders.map(({ header, claim }) => ({ header_name: header, claim_name: claim })) } : {}),
    local_jwks: { inline_string: keys },
    payload_in_metadata: JWT_PAYLOAD,
    normalize_payload_in_metadata: { space_delimited_claims: [...new Set([...(rule.spaceDelimitedClaims ?? []), "permission", "scope"])].sort() },
  };
}
