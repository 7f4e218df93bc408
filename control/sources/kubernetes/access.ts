// At start, the control plane asks the API server whether it may list and watch every kind it watches
// (SelfSubjectAccessReview, which every authenticated user may create: the API server's own RBAC answer, as
// `kubectl auth can-i` asks it). An informer that is refused would otherwise retry quietly: refused `list`, the control
// plane never syncs and serves nothing; refused only `watch`, it syncs once and then never sees a change. Each kind
// it may not read is reported by name, with the verbs missing, before any informer has failed.
import { AuthorizationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { describe } from "./informer.js";
import { INFORMER_VERBS, resourceName, type WatchedKind } from "./kinds.js";

export interface MissingAccess {
  kind: WatchedKind;
  verbs: string[];
}

/** The kinds among `kinds` this client may not list or watch cluster-wide, with the verbs it lacks. */
export async function missingAccess(config: KubeConfig, kinds: WatchedKind[]): Promise<MissingAccess[]> {
  const api = config.makeApiClient(AuthorizationV1Api);
  const answers = await Promise.all(
    kinds.map(async (kind) => {
      const verbs: string[] = [];
      for (const verb of INFORMER_VERBS) {
        const review = await api.createSelfSubjectAccessReview({
          body: { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", spec: { resourceAttributes: { group: kind.group, resource: kind.plural, verb } } },
        });
        if (!review.status?.allowed) verbs.push(verb);
      }
      return { kind, verbs };
    }),
  );
  return answers.filter((answer) => answer.verbs.length > 0);
}

/** The line that names a kind the control plane may not read and what that does to it. */
export function missingAccessLine({ kind, verbs }: MissingAccess): string {
  const effect = verbs.includes("list") ? "it cannot sync, and serves nothing until it may" : "it would never see a change after its first list";
  return (
    `kubernetes: RBAC: this control plane may not ${verbs.join(" or ")} ${resourceName(kind)} (kind ${kind.kind}, API group "${kind.group}"): ` +
    `${effect}; grant its service account ${INFORMER_VERBS.join(" and ")} on it (examples/kubernetes/rbac.yaml)`
  );
}

/** Logs a line per kind the control plane may not read; a failed check is logged and left to the informers. */
export async function reportMissingAccess(config: KubeConfig, kinds: WatchedKind[], log: (line: string) => void): Promise<void> {
  try {
    for (const missing of await missingAccess(config, kinds)) log(missingAccessLine(missing));
  } catch (error) {
    log(`kubernetes: could not check this control plane's access (SelfSubjectAccessReview): ${describe(error)}`);
  }
}
