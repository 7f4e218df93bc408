// Every kind the control plane lists and watches across the cluster, in one place: the informers are made from this
// list (index.ts), the start-up access check asks the API server about each (access.ts), and the tests check that
// examples/kubernetes/rbac.yaml grants each (test/kubernetes/deployment.test.ts), so a kind added here, or an Istio
// kind added to schema/index.ts KINDS, cannot be forgotten in the RBAC rules unnoticed. The Secrets that
// `credentialName` names are not here: they are read one by one, by name, in their namespace (credentials.ts).
import { type Kind, KINDS } from "../schema/index.js";

export interface WatchedKind {
  kind: string;
  /** The API group ("" for the core group). */
  group: string;
  version: string;
  /** The resource as RBAC rules and URLs name it: services, telemetries. */
  plural: string;
}

/** The verbs an informer needs on each watched kind (client-go's reflector: list, then watch). */
export const INFORMER_VERBS = ["list", "watch"] as const;

/** The service registry, as istiod's Kubernetes controller reads it (Services, their EndpointSlices, the Pods behind
 * them for labels and service accounts, the Nodes for locality). */
export const REGISTRY_KINDS = {
  services: { kind: "Service", group: "", version: "v1", plural: "services" },
  endpointslices: { kind: "EndpointSlice", group: "discovery.k8s.io", version: "v1", plural: "endpointslices" },
  pods: { kind: "Pod", group: "", version: "v1", plural: "pods" },
  nodes: { kind: "Node", group: "", version: "v1", plural: "nodes" },
} as const satisfies Record<string, WatchedKind>;

/** One Istio kind as the API serves it: the newest version Skiff reads (the last in KINDS), and its plural as the
 * CRDs name it (gateways, authorizationpolicies, serviceentries, telemetries). */
export function istioKind(kind: Kind): WatchedKind & { kind: Kind } {
  const { group, versions } = KINDS[kind];
  return { kind, group, version: versions[versions.length - 1]!, plural: kind.toLowerCase().replace(/([^aeiou])y$/, "$1ie") + "s" };
}

/** Every Istio kind of KINDS. */
export function istioKinds(): Array<WatchedKind & { kind: Kind }> {
  return (Object.keys(KINDS) as Kind[]).map(istioKind);
}

/** Everything the informers watch: the Istio kinds, then the registry's kinds. */
export function watchedKinds(): WatchedKind[] {
  return [...istioKinds(), ...Object.values(REGISTRY_KINDS)];
}

/** How log lines and RBAC name it: `services`, `telemetries.telemetry.istio.io`. */
export function resourceName(kind: Pick<WatchedKind, "group" | "plural">): string {
  return kind.group ? `${kind.plural}.${kind.group}` : kind.plural;
}

/** The cluster-wide list/watch path: `/api/v1/services`, `/apis/networking.istio.io/v1/gateways`. */
export function watchPath(kind: WatchedKind): string {
  return kind.group ? `/apis/${kind.group}/${kind.version}/${kind.plural}` : `/api/${kind.version}/${kind.plural}`;
}
