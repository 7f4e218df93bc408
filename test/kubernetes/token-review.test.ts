// Kubernetes service account tokens as the CA's credential for a first certificate (control/ca/token-review.ts),
// against a real kube-apiserver: tokens come from its TokenRequest API (what the kubelet projects into a pod), the
// review is its TokenReview API, made with the rights examples/kubernetes/rbac.yaml grants the control plane. A token
// for another audience, an expired or forged one, one of a deleted service account or of a deleted pod, a user that is
// not a service account are refused, each with a reason that never holds the token; without the RBAC rule the review
// itself fails.
import { createSign } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { KubernetesTokens, TokenReviewUnavailable } from "../../control/ca/token-review.js";
import { TokenError } from "../../control/ca/tokens.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { describeE2E } from "../harness/e2e.js";
import { type KubeCluster, startKubeCluster } from "../harness/kube-apiserver.js";

const NAMESPACE = "shop";
const ISSUER = "https://kubernetes.default.svc.cluster.local";

/** What `authenticate` refused with: the error's class and message, checked never to hold the token. */
async function refusal(tokens: KubernetesTokens, token: string): Promise<Error> {
  const error = await tokens.authenticate(token).then(
    (identity) => new Error(`accepted as ${JSON.stringify(identity)}`),
    (error: Error) => error,
  );
  expect(error.message).not.toContain(token);
  expect(error.message).not.toContain(token.split(".")[2]);
  return error;
}

/** A JWT's parts: header and claims decoded, and the signature. */
function decode(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; signature: string } {
  const [header, claims, signature] = token.split(".");
  const json = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
  return { header: json(header!), claims: json(claims!), signature: signature! };
}

/** Signs header and claims with an EC P-256 key as ES256 (JWS: r||s, RFC 7518 3.4). */
function signES256(header: Record<string, unknown>, claims: Record<string, unknown>, keyPem: string): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  const signature = createSign("SHA256").update(input).sign({ key: keyPem, dsaEncoding: "ieee-p1363" }).toString("base64url");
  return `${input}.${signature}`;
}

describeE2E("Kubernetes service account tokens (TokenReview)", () => {
  let cluster: KubeCluster;
  let tokens: KubernetesTokens;

  beforeAll(async () => {
    cluster = await startKubeCluster();
    await cluster.apply(readFileSync(join(PROJECT_ROOT, "examples", "kubernetes", "rbac.yaml"), "utf8"));
    await cluster.namespace(NAMESPACE);
    for (const name of ["webapp", "catalog", "gone"]) await cluster.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name, namespace: NAMESPACE } });
    // The reviewer is the control plane's service account of rbac.yaml.
    const config = new KubeConfig();
    config.loadFromFile(await cluster.serviceAccountKubeconfig("skiff-system", "skiff"));
    tokens = new KubernetesTokens(config);
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("accepts a projected token for istio-ca as its service account's identity", async () => {
    const token = await cluster.serviceAccountToken(NAMESPACE, "webapp", { audiences: ["istio-ca"], expirationSeconds: 600 });
    expect(await tokens.authenticate(token)).toEqual({ namespace: NAMESPACE, serviceAccount: "webapp" });
    // A token for several audiences, istio-ca among them, is for the CA too.
    const both = await cluster.serviceAccountToken(NAMESPACE, "catalog", { audiences: ["vault", "istio-ca"] });
    expect(await tokens.authenticate(both)).toEqual({ namespace: NAMESPACE, serviceAccount: "catalog" });
  });

  it("refuses a token for another audience, and the API server's own token", async () => {
    const vault = await refusal(tokens, await cluster.serviceAccountToken(NAMESPACE, "webapp", { audiences: ["vault"] }));
    expect(vault).toBeInstanceOf(TokenError);
    expect(vault.message).toMatch(/^the API server refused the token: .*audience/);
    const own = await refusal(tokens, await cluster.serviceAccountToken(NAMESPACE, "webapp"));
    expect(own).toBeInstanceOf(TokenError);
    expect(own.message).toMatch(/audience/);
  });

  it("refuses an expired token and a forged one", async () => {
    const real = decode(await cluster.serviceAccountToken(NAMESPACE, "webapp", { audiences: ["istio-ca"] }));
    // Signed with the API server's own key, for istio-ca, but an hour past its expiry.
    const now = Math.floor(Date.now() / 1000);
    const expired = signES256(real.header, { ...real.claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 }, cluster.serviceAccountSigningKey);
    const refusedExpired = await refusal(tokens, expired);
    expect(refusedExpired).toBeInstanceOf(TokenError);
    expect(refusedExpired.message).toMatch(/expired/);
    // The claims of webapp's token made to say catalog, with webapp's signature.
    const catalog = decode(await cluster.serviceAccountToken(NAMESPACE, "catalog", { audiences: ["istio-ca"] }));
    const encode = (part: Record<string, unknown>) => Buffer.from(JSON.stringify(part)).toString("base64url");
    const forged = `${encode(real.header)}.${encode({ ...real.claims, sub: catalog.claims.sub, "kubernetes.io": catalog.claims["kubernetes.io"] })}.${real.signature}`;
    const refusedForged = await refusal(tokens, forged);
    expect(refusedForged).toBeInstanceOf(TokenError);
    expect(refusedForged.message).toMatch(/^the API server refused the token/);
    // Signed with a key that is not the API server's.
    const { generateKeyPairSync } = await import("node:crypto");
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    expect(await refusal(tokens, signES256(real.header, real.claims, stranger))).toBeInstanceOf(TokenError);
    expect(await refusal(tokens, "not-a-jwt")).toBeInstanceOf(TokenError);
  });

  it("refuses the token of a service account deleted since", async () => {
    const token = await cluster.serviceAccountToken(NAMESPACE, "gone", { audiences: ["istio-ca"] });
    expect(await tokens.authenticate(token)).toEqual({ namespace: NAMESPACE, serviceAccount: "gone" });
    await cluster.delete({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "gone", namespace: NAMESPACE } });
    // The API server looks service accounts up through its own cache: give it a moment.
    await expect.poll(async () => (await refusal(tokens, token)).message, { timeout: 60_000 }).toMatch(/^the API server refused the token: .*serviceaccounts "gone" not found/);
    expect(await refusal(tokens, token)).toBeInstanceOf(TokenError);
  });

  it("refuses a token bound to a pod once the pod is gone, as the kubelet's projected tokens are", async () => {
    await cluster.pod(NAMESPACE, "webapp-1", { ip: "198.18.0.10", serviceAccount: "webapp" });
    const token = await cluster.serviceAccountToken(NAMESPACE, "webapp", { audiences: ["istio-ca"], pod: "webapp-1" });
    expect(await tokens.authenticate(token)).toEqual({ namespace: NAMESPACE, serviceAccount: "webapp" });
    await cluster.delete({ apiVersion: "v1", kind: "Pod", metadata: { name: "webapp-1", namespace: NAMESPACE } });
    await expect.poll(async () => (await refusal(tokens, token)).message, { timeout: 40_000 }).toBe("the API server refused the token: [invalid bearer token, service account token has been invalidated]");
  }, 120_000);

  it("refuses a user that is not a service account", async () => {
    // The admin's static token is valid for the API server's own audience only: reviewed for that audience, it
    // authenticates, but as a user, not a service account.
    const admin = (cluster.config.getCurrentUser() as { token: string }).token;
    const error = await refusal(new KubernetesTokens(cluster.config, [ISSUER]), admin);
    expect(error).toBeInstanceOf(TokenError);
    expect(error.message).toBe('the token is not a service account\'s (user "admin")');
  });

  it("cannot review without the tokenreviews rule of rbac.yaml, and says so at start and without the token", async () => {
    const config = new KubeConfig();
    config.loadFromFile(await cluster.serviceAccountKubeconfig(NAMESPACE, "webapp"));
    const token = await cluster.serviceAccountToken(NAMESPACE, "catalog", { audiences: ["istio-ca"] });
    const unauthorized = new KubernetesTokens(config);
    const error = await refusal(unauthorized, token);
    expect(error).toBeInstanceOf(TokenReviewUnavailable);
    expect(error.message).toMatch(/^the API server did not review the token \(TokenReview: HTTP 403: .*tokenreviews/);
    // Said at start, before any agent asks: the control plane checks its own access.
    const log: string[] = [];
    await unauthorized.reportMissingAccess((line) => log.push(line));
    expect(log).toEqual([expect.stringMatching(/^CA: RBAC: this control plane may not create tokenreviews .*examples\/kubernetes\/rbac.yaml/)]);
    const granted: string[] = [];
    await tokens.reportMissingAccess((line) => granted.push(line));
    expect(granted).toEqual([]);
  });
});
