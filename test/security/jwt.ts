// JWTs for authentication tests: an RS256 key pair whose public half is a JSON Web Key Set (inline `jwks`, or served
// as a `jwksUri`), and tokens signed with it. Node's crypto only: no JWT library is needed to make test tokens.
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";

export interface Signer {
  jwks: string;
  token(claims: Record<string, unknown>): string;
}

/** A signer for `issuer` (the `iss` of its tokens, which expire in an hour unless `claims` say otherwise). */
export function signer(kid: string, issuer: string): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };
  return { jwks: JSON.stringify({ keys: [jwk] }), token: (claims) => jwt(privateKey, kid, { iss: issuer, ...claims }) };
}

function jwt(key: KeyObject, kid: string, claims: Record<string, unknown>): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const input = `${encode({ alg: "RS256", typ: "JWT", kid })}.${encode({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${input}.${sign("sha256", Buffer.from(input), key).toString("base64url")}`;
}
