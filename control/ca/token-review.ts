// Kubernetes service account tokens as workload credentials (`skiff control-plane --kubernetes`), as istiod takes
// them: the agent sends the pod's projected token (audience `istio-ca`) as `authorization: Bearer`, and the control
// plane asks the API server whether it is valid with a TokenReview (authentication.k8s.io/v1), naming the audience
// it accepts. Only the API server decides: signature, expiry, audience, and that the service account (and the pod a
// token is bound to) still exists. The identity is the reviewed user `system:serviceaccount:<ns>:<sa>` in the group
// `system:serviceaccounts`. After istiod's security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go (TOKEN_AUDIENCES,
// default "istio-ca") and pkg/kube/tokenreview (ValidateK8sJwt, getTokenReviewResult). Unlike istiod, a token without
// an audience (a legacy "first-party" token) is never accepted: the audience is always part of the review.
// Every replica asks the same API server, so a token is accepted by any of them.
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig, type V1TokenReview } from "@kubernetes/client-node";
import { checkIdentityNames } from "./spiffe.js";
import { type TokenAuthenticator, TokenError, type TokenIdentity } from "./tokens.js";

/** The audience istio-agent's projected token is requested for, and istiod's default TOKEN_AUDIENCES. */
export const KUBERNETES_TOKEN_AUDIENCE = "istio-ca";
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts";
const REVIEW_TIMEOUT_MS = 5000;

export class KubernetesTokens implements TokenAuthenticator {
  readonly kind = "Kubernetes service account token";
  private readonly api: AuthenticationV1Api;

  /** `audiences`: a token is accepted when it is valid for at least one of them. */
  constructor(
    private readonly config: KubeConfig,
    readonly audiences: string[] = [KUBERNETES_TOKEN_AUDIENCE],
  ) {
    if (audiences.length === 0) throw new Error("Kubernetes tokens need at least one audience to check");
    this.api = config.makeApiClient(AuthenticationV1Api);
  }

  /** Logs, at start, when this control plane may not create TokenReviews (SelfSubjectAccessReview, as the
   * informers' access check in sources/kubernetes/access.ts): every first CSR would fail until RBAC allows it. */
  async reportMissingAccess(log: (line: string) => void): Promise<void> {
    try {
      const review = await this.config.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
        body: { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectAccessReview", spec: { resourceAttributes: { group: "authentication.k8s.io", resource: "tokenreviews", verb: "create" } } },
      });
      if (!review.status?.allowed) {
        log("CA: RBAC: this control plane may not create tokenreviews (API group authentication.k8s.io): no workload can get a first certificate until it may; grant its service account create on them (examples/kubernetes/rbac.yaml)");
      }
    } catch (error) {
      log(`CA: could not check whether this control plane may create tokenreviews (SelfSubjectAccessReview): ${briefly(error)}`);
    }
  }

  async authenticate(token: string): Promise<TokenIdentity> {
    let review: V1TokenReview;
    try {
      review = await withTimeout(
        this.api.createTokenReview({ body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences: this.audiences } } }),
        REVIEW_TIMEOUT_MS,
      );
    } catch (error) {
      // Not the token's fault (RBAC, the API server away): said apart, so that an operator looks at the right thing.
      // The request echoes the token in its body, so nothing of it may reach the message.
      throw new TokenReviewUnavailable(`the API server did not review the token (TokenReview: ${redact(briefly(error), token)})`);
    }
    const status = review.status ?? {};
    if (!status.authenticated) throw new TokenError(`the API server refused the token: ${redact(status.error || "not authenticated", token)}`);
    // An audience-aware server returns the audiences it checked; an empty list would mean it ignored ours.
    if (!status.audiences?.some((audience) => this.audiences.includes(audience))) {
      throw new TokenError(`the API server did not confirm the audience ${this.audiences.join(" or ")} (it returned ${JSON.stringify(status.audiences ?? [])})`);
    }
    const user = status.user ?? {};
    const subject = SERVICE_ACCOUNT_USER.exec(user.username ?? "");
    if (!subject || !user.groups?.includes(SERVICE_ACCOUNTS_GROUP)) throw new TokenError(`the token is not a service account's (user ${JSON.stringify(user.username ?? "")})`);
    const [, namespace, serviceAccount] = subject as unknown as [string, string, string];
    try {
      checkIdentityNames(namespace, serviceAccount);
    } catch (error) {
      throw new TokenError((error as Error).message);
    }
    return { namespace, serviceAccount };
  }
}

/** The token could not be reviewed (as opposed to: it was refused). */
export class TokenReviewUnavailable extends Error {
  override name = "TokenReviewUnavailable";
}

/** client-node's ApiException carries the whole response (headers, body); its first line says enough. */
function briefly(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: number }).code;
  const body = (error as { body?: unknown }).body;
  let reason: string | undefined;
  if (typeof body === "string") {
    try {
      reason = (JSON.parse(body) as { message?: string }).message;
    } catch {
      // Not a Status object.
    }
  }
  return code ? `HTTP ${code}${reason ? `: ${reason}` : ""}` : (text.split("\n")[0] ?? text);
}

function redact(text: string, token: string): string {
  return token ? text.split(token).join("[token]") : text;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
