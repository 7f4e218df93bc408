// Bootstrap credentials: a token the control plane issues for one workload identity (namespace, service account),
// which that workload's agent presents once to get its first certificate; later renewals authenticate with the
// certificate itself. This plays the role of the Kubernetes service account token istio-agent sends to istiod
// (`authorization: Bearer <JWT>`, `sub: system:serviceaccount:<ns>:<sa>`), and has its form: a JWT signed with
// HS256 (RFC 7519, RFC 7515) under a key kept in the data directory (0600) that never leaves the control plane.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkPrivate } from "./authority.js";
import { checkIdentityNames, serviceAccountSubject } from "./spiffe.js";

export interface TokenIdentity {
  namespace: string;
  serviceAccount: string;
}

/** The audience a bootstrap token is for (istio-agent's tokens are for `istio-ca`). */
export const TOKEN_AUDIENCE = "skiff-ca";
const ISSUER = "skiff";
const HEADER = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
const SUBJECT = /^system:serviceaccount:([^:]+):([^:]+)$/;

/** Who vouches for the identity of a bearer token on a first CSR: the control plane's own bootstrap tokens (the
 * folder mode), or the Kubernetes API server (token-review.ts, with --kubernetes). */
export interface TokenAuthenticator {
  /** What the log calls a token of this kind. */
  readonly kind: string;
  /** The identity the token stands for; rejects with TokenError (a reason safe to log) when it is refused. */
  authenticate(token: string): Promise<TokenIdentity>;
}

/** A token that is refused; the message says why and never holds the token. */
export class TokenError extends Error {
  override name = "TokenError";
}

export class BootstrapTokens implements TokenAuthenticator {
  readonly kind = "bootstrap token";

  private constructor(private readonly key: Buffer) {}

  /** The signing key of `<dataDir>/token-key`, made on first use (0600). */
  static open(dataDir: string): BootstrapTokens {
    const path = join(dataDir, "token-key");
    if (!existsSync(path)) {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      writeFileSync(path, randomBytes(32).toString("base64") + "\n", { mode: 0o600, flag: "wx" });
    }
    checkPrivate(path, "the token key");
    return new BootstrapTokens(Buffer.from(readFileSync(path, "utf8").trim(), "base64"));
  }

  issue(identity: TokenIdentity, ttlSeconds: number, now = Date.now()): string {
    checkIdentityNames(identity.namespace, identity.serviceAccount);
    const iat = Math.floor(now / 1000);
    const payload = base64url(JSON.stringify({ iss: ISSUER, aud: TOKEN_AUDIENCE, sub: serviceAccountSubject(identity), iat, exp: iat + ttlSeconds }));
    return `${HEADER}.${payload}.${this.signature(`${HEADER}.${payload}`)}`;
  }

  /** The identity a token stands for; throws TokenError when it is malformed, forged, expired or for another
   * audience. Only HS256 under this key is accepted (no `alg` from the token is trusted). */
  verify(token: string, now = Date.now()): TokenIdentity {
    const parts = token.split(".");
    if (parts.length !== 3 || parts[0] !== HEADER) throw new TokenError("not a Skiff bootstrap token");
    const expected = Buffer.from(this.signature(`${parts[0]}.${parts[1]}`));
    const given = Buffer.from(parts[2]!);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new TokenError("the token's signature does not verify");
    let claims: { iss?: unknown; aud?: unknown; sub?: unknown; exp?: unknown };
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    } catch {
      throw new TokenError("the token's claims are not JSON");
    }
    if (claims.iss !== ISSUER || claims.aud !== TOKEN_AUDIENCE) throw new TokenError(`the token is not for ${TOKEN_AUDIENCE}`);
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) throw new TokenError("the token has expired");
    const subject = SUBJECT.exec(typeof claims.sub === "string" ? claims.sub : "");
    if (!subject) throw new TokenError("the token names no service account");
    return { namespace: subject[1]!, serviceAccount: subject[2]! };
  }

  async authenticate(token: string): Promise<TokenIdentity> {
    return this.verify(token);
  }

  private signature(input: string): string {
    return createHmac("sha256", this.key).update(input).digest("base64url");
  }
}

function base64url(text: string): string {
  return Buffer.from(text).toString("base64url");
}
