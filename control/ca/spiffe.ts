// Workload identities as Istio writes them: the SPIFFE ID `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`
// (istio/pkg/spiffe/spiffe.go), carried as the only URI SAN of a workload certificate.

export interface WorkloadIdentity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** Istio's default trust domain (MeshConfig.trustDomain). */
export const DEFAULT_TRUST_DOMAIN = "cluster.local";

export function spiffeId(identity: WorkloadIdentity): string {
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

const SPIFFE = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

/** The identity a SPIFFE ID names, or undefined for any other URI. */
export function parseSpiffeId(uri: string): WorkloadIdentity | undefined {
  const match = SPIFFE.exec(uri);
  if (!match) return undefined;
  return { trustDomain: match[1]!, namespace: match[2]!, serviceAccount: match[3]! };
}

/** The principal Istio's authorization matches (`principals` in AuthorizationPolicy): the SPIFFE ID without its
 * scheme, `<trust-domain>/ns/<namespace>/sa/<service-account>`. */
export function principalOf(identity: WorkloadIdentity): string {
  return spiffeId(identity).slice("spiffe://".length);
}

/** The service account name as Kubernetes tokens carry it: `system:serviceaccount:<namespace>:<name>`. */
export function serviceAccountSubject(identity: Omit<WorkloadIdentity, "trustDomain">): string {
  return `system:serviceaccount:${identity.namespace}:${identity.serviceAccount}`;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Checks that namespace and service account are DNS names (what Kubernetes allows), so they cannot smuggle a `/`
 * into a SPIFFE ID. */
export function checkIdentityNames(namespace: string, serviceAccount: string): void {
  if (!NAME.test(namespace)) throw new Error(`namespace "${namespace}" is not a lowercase DNS name`);
  if (!NAME.test(serviceAccount)) throw new Error(`service account "${serviceAccount}" is not a lowercase DNS name`);
}
