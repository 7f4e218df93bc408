// The one place that sets up @peculiar/x509 (X.509 certificates and PKCS#10 requests on WebCrypto, i.e. Node's native
// crypto: no hand-written ASN.1, no crypto in JavaScript) and converts between it and Node's KeyObjects and PEM.
import "reflect-metadata"; // tsyringe, which @peculiar/x509 uses internally, needs the Reflect polyfill loaded first
import * as x509 from "@peculiar/x509";
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

/** Workload and CA keys Skiff generates: ECDSA P-256 with SHA-256 (Istio's ECC_SIGNATURE_ALGORITHM=ECDSA). */
export const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export type SigningAlgorithm = typeof EC_P256 | { name: "RSASSA-PKCS1-v1_5"; hash: "SHA-256" };

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A private key as PKCS#8 PEM. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n?$/, "\n")}-----END PRIVATE KEY-----\n`;
}

/** Imports a PEM private key of any common form (PKCS#8, PKCS#1 RSA, SEC1 EC), as a plugged-in CA may have it, with
 * the signing algorithm that goes with it. */
export async function importPrivateKey(pem: string): Promise<{ privateKey: CryptoKey; publicKey: CryptoKey; algorithm: SigningAlgorithm }> {
  const key = createPrivateKey(pem);
  const algorithm = signingAlgorithmOf(key);
  const privateKey = await webcrypto.subtle.importKey("pkcs8", key.export({ type: "pkcs8", format: "der" }), algorithm, true, ["sign"]);
  const publicKey = await webcrypto.subtle.importKey("spki", createPublicKey(key).export({ type: "spki", format: "der" }), algorithm, true, ["verify"]);
  return { privateKey, publicKey, algorithm };
}

function signingAlgorithmOf(key: KeyObject): SigningAlgorithm {
  if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return EC_P256;
  if (key.asymmetricKeyType === "rsa") return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  throw new Error(`unsupported CA key (${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.namedCurve ?? ""}): use ECDSA P-256 or RSA`);
}

/** A positive 128-bit serial number, as hex (RFC 5280 allows up to 20 octets; Istio uses 128 random bits). */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f;
  return bytes.toString("hex");
}

/** The certificates of a PEM bundle, in order. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`)) ?? [];
}
