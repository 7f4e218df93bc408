// Which proxies a namespaced policy (EnvoyFilter, TrafficExtension) applies to, as istiod attaches them
// (pilot/pkg/model/policyattachment.go ShouldAttachPolicy, and the namespaces PushContext looks in): the proxies of
// the policy's namespace, or of every namespace when the policy is in the root namespace; then by workload selector,
// or, for Gateway API gateways, by `targetRefs`.
import type { ProxyIdentity } from "../resources.js";

/** The proxy label that names the Gateway API Gateway a proxy serves (istio: label.IoK8sNetworkingGatewayGatewayName). */
export const GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name";

export interface Attachable {
  namespace: string;
  /** Labels the proxy must all have; none: every proxy of the namespace. */
  selector?: Record<string, string>;
  /** Gateway API Gateways by name (Istio's PolicyTargetReference, as the schemas accept it). */
  targetRefs?: Array<{ name: string; namespace?: string }>;
}

export function attaches(policy: Attachable, proxy: ProxyIdentity, rootNamespace: string): boolean {
  if (policy.namespace !== proxy.namespace && policy.namespace !== rootNamespace) return false;
  const targetRefs = policy.targetRefs ?? [];
  const gatewayName = proxy.labels[GATEWAY_NAME_LABEL];
  // Not a Gateway API gateway, or a policy without targetRefs: by selector (a policy with targetRefs never applies
  // to other proxies; ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY, on by default, lets selectors pick gateways too).
  if (gatewayName === undefined || targetRefs.length === 0) {
    return targetRefs.length === 0 && Object.entries(policy.selector ?? {}).every(([key, value]) => proxy.labels[key] === value);
  }
  return policy.namespace === proxy.namespace && targetRefs.some((ref) => ref.name === gatewayName && (ref.namespace ?? proxy.namespace) === proxy.namespace);
}
