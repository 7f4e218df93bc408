// The HTTP filters of a listener that takes traffic into a workload (a gateway's listeners; a sidecar's inbound), in
// istiod's order (pilot/pkg/networking/core: Wasm plugins popped by phase around the built-in filters): Wasm AUTHN,
// jwt_authn (RequestAuthentication), Wasm AUTHZ, RBAC (AuthorizationPolicy: AUDIT, DENY, ALLOW), Wasm STATS, the
// other Wasm plugins; the router comes last (listeners.ts).
import type { MeshConfig } from "../sources/index.js";
import type { TranslationContext } from "../resources.js";
import { jwtFilter } from "./authn.js";
import { rbacHttpFilters, workloadPolicies } from "./authz.js";
import type { ExtensionOutput } from "./extensions.js";

export function workloadHttpFilters(mesh: MeshConfig, context: TranslationContext, wasm: Pick<ExtensionOutput, "httpFilters" | "phases">): Record<string, unknown>[] {
  const phase = (name: string) => wasm.httpFilters.filter((_, index) => wasm.phases[index] === name);
  const jwt = jwtFilter(mesh, context.proxy, (uri) => context.jwks?.(uri));
  const rbac = rbacHttpFilters(workloadPolicies(mesh.authorizationPolicies, mesh, context.proxy));
  return [...phase("AUTHN"), ...(jwt ? [jwt] : []), ...phase("AUTHZ"), ...rbac, ...phase("STATS"), ...phase("UNSPECIFIED_PHASE")];
}
