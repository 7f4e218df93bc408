// The CA: a self-made root kept in the data directory with safe modes and reused after a restart, Istio's plugged-in
// `cacerts` layout, workload certificates with the caller's SPIFFE identity for the asked lifetime, and refusals of
// tampered or foreign CSRs. Chains are checked with openssl, an implementation independent of the one that made them.
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../control/ca/authority.js";
import { BootstrapTokens } from "../../control/ca/tokens.js";
import { EC_P256, generateKeyPair, x509 } from "../../control/ca/x509.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "skiff-ca-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function csrFor(uri?: string): Promise<string> {
  const keys = await generateKeyPair();
  const extensions = uri ? [new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }])] : [];
  return (await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256, extensions })).toString("pem");
}

/** openssl verify of a leaf against a root, with the intermediates as untrusted; the output, or the error. */
function opensslVerify(dir: string, chain: string[]): string {
  const [leaf, ...rest] = chain;
  writeFileSync(join(dir, "leaf.pem"), leaf!);
  writeFileSync(join(dir, "root.pem"), rest.at(-1)!);
  writeFileSync(join(dir, "untrusted.pem"), rest.slice(0, -1).join("") || rest.at(-1)!);
  try {
    return execFileSync("openssl", ["verify", "-CAfile", "root.pem", "-untrusted", "untrusted.pem", "leaf.pem"], { cwd: dir, encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    return String((error as { stderr?: string; stdout?: string }).stdout) + String((error as { stderr?: string }).stderr);
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe("CA: self-made root", () => {
  it("is made on first start with private modes, and the same root serves after a restart", async () => {
    const dataDir = tempDir();
    const first = await CertificateAuthority.open({ dataDir, trustDomain: "cluster.local" });
    expect(mode(join(dataDir, "ca"))).toBe(0o700);
    expect(mode(join(dataDir, "ca", "ca-key.pem"))).toBe(0o600);
    expect(mode(join(dataDir, "ca", "root-cert.pem"))).toBe(0o644);
    const root = new X509Certificate(first.rootPem);
    expect(root.ca).toBe(true);
    expect(root.subject).toBe("O=cluster.local");

    const before = await first.signWorkload(await csrFor(), { namespace: "shop", serviceAccount: "webapp" });
    const restarted = await CertificateAuthority.open({ dataDir, trustDomain: "cluster.local" });
    expect(restarted.rootPem).toBe(first.rootPem);
    // A certificate issued before the restart still verifies against the root served after it.
    expect(opensslVerify(tempDir(), [before[0]!, restarted.rootPem])).toContain("leaf.pem: OK");
  });

  it("refuses a data directory whose key others can read", async () => {
    const dataDir = tempDir();
    await CertificateAuthority.open({ dataDir, trustDomain: "cluster.local" });
    chmodSync(join(dataDir, "ca", "ca-key.pem"), 0o644);
    await expect(CertificateAuthority.open({ dataDir, trustDomain: "cluster.local" })).rejects.toThrow(/ca-key.pem has mode 644: the CA key must be private/);
  });
});

describe("CA: workload certificates", () => {
  it("carry the caller's SPIFFE identity as the only, critical SAN, with no subject, for 24 h by default", async () => {
    const ca = await CertificateAuthority.open({ dataDir: tempDir(), trustDomain: "example.org" });
    const chain = await ca.signWorkload(await csrFor(), { namespace: "shop", serviceAccount: "webapp" });
    expect(chain).toHaveLength(2);
    expect(chain[1]).toBe(ca.rootPem);
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe("URI:spiffe://example.org/ns/shop/sa/webapp");
    expect(leaf.subject ?? "").toBe("");
    expect(leaf.ca).toBe(false);
    const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    // 24 h plus Istio's 2-minute backdating for clock skew.
    expect(lifetime).toBe((24 * 3600 + 120) * 1000);
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: chain[0], encoding: "utf8" });
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(opensslVerify(tempDir(), chain)).toContain("leaf.pem: OK");
  });

  it("live as long as asked (seconds, for tests), never longer than the maximum", async () => {
    const ca = await CertificateAuthority.open({ dataDir: tempDir(), trustDomain: "cluster.local", maxWorkloadTtlSeconds: 3600 });
    const short = new X509Certificate((await ca.signWorkload(await csrFor(), { namespace: "a", serviceAccount: "b" }, 5))[0]!);
    expect(Date.parse(short.validTo) - Date.now()).toBeLessThanOrEqual(5000);
    const capped = new X509Certificate((await ca.signWorkload(await csrFor(), { namespace: "a", serviceAccount: "b" }, 99_999))[0]!);
    expect(Date.parse(capped.validTo) - Date.now()).toBeLessThanOrEqual(3600 * 1000);
  });

  it("refuses a tampered CSR (its signature no longer verifies)", async () => {
    const ca = await CertificateAuthority.open({ dataDir: tempDir(), trustDomain: "cluster.local" });
    const csr = new x509.Pkcs10CertificateRequest(await csrFor());
    // Swap in another public key: the request is now for a key its signature was not made with.
    const der = new Uint8Array(csr.rawData);
    const publicKey = new Uint8Array(csr.publicKey.rawData);
    const other = new Uint8Array((await x509.PublicKey.create((await generateKeyPair()).publicKey)).rawData);
    const at = Buffer.from(der).indexOf(Buffer.from(publicKey));
    der.set(other, at);
    const tampered = x509.PemConverter.encode(der.buffer, "CERTIFICATE REQUEST");
    await expect(ca.signWorkload(tampered, { namespace: "a", serviceAccount: "b" })).rejects.toThrow(/signature does not verify/);
    await expect(ca.signWorkload("not a csr", { namespace: "a", serviceAccount: "b" })).rejects.toThrow(/not a PEM PKCS#10 request/);
  });

  it("refuses a CSR that asks for another identity than the caller's", async () => {
    const ca = await CertificateAuthority.open({ dataDir: tempDir(), trustDomain: "cluster.local" });
    const csr = await csrFor("spiffe://cluster.local/ns/shop/sa/catalog");
    await expect(ca.signWorkload(csr, { namespace: "shop", serviceAccount: "webapp" })).rejects.toThrow(
      "the CSR asks for url:spiffe://cluster.local/ns/shop/sa/catalog, but the caller is spiffe://cluster.local/ns/shop/sa/webapp",
    );
    // Asking for exactly its own identity is fine.
    await expect(ca.signWorkload(await csrFor("spiffe://cluster.local/ns/shop/sa/webapp"), { namespace: "shop", serviceAccount: "webapp" })).resolves.toHaveLength(2);
  });
});

/** An offline root and an intermediate it signed, in Istio's cacerts layout, made with openssl as Istio's docs do. */
function pluggedInCa(dir: string): void {
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  writeFileSync(join(dir, "ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/O=Istio/CN=Root CA", "-keyout", "root-key.pem", "-out", "root-cert.pem");
  run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=Istio/CN=Intermediate CA", "-keyout", "ca-key.pem", "-out", "ca.csr");
  run("x509", "-req", "-in", "ca.csr", "-CA", "root-cert.pem", "-CAkey", "root-key.pem", "-CAcreateserial", "-days", "1", "-extfile", "ca.ext", "-out", "ca-cert.pem");
  writeFileSync(join(dir, "cert-chain.pem"), readFileSync(join(dir, "ca-cert.pem"), "utf8") + readFileSync(join(dir, "root-cert.pem"), "utf8"));
  chmodSync(join(dir, "ca-key.pem"), 0o600);
}

describe("CA: plugged-in cacerts", () => {
  it("signs with the intermediate; the chain is leaf, intermediate, root", async () => {
    const cacerts = tempDir();
    pluggedInCa(cacerts);
    const ca = await CertificateAuthority.open({ dataDir: tempDir(), cacertsDir: cacerts, trustDomain: "cluster.local" });
    expect(ca.rootPem).toBe(readFileSync(join(cacerts, "root-cert.pem"), "utf8"));
    const chain = await ca.signWorkload(await csrFor(), { namespace: "shop", serviceAccount: "webapp" });
    expect(chain.map((pem) => new X509Certificate(pem).subject ?? "")).toEqual(["", "O=Istio\nCN=Intermediate CA", "O=Istio\nCN=Root CA"]);
    expect(opensslVerify(tempDir(), chain)).toContain("leaf.pem: OK");
    // The leaf never outlives its signing certificate (1 day here).
    const leaf = new X509Certificate(chain[0]!);
    expect(Date.parse(leaf.validTo)).toBeLessThanOrEqual(Date.parse(new X509Certificate(chain[1]!).validTo));
  });

  it("names what is wrong with a bad layout", async () => {
    const cacerts = tempDir();
    pluggedInCa(cacerts);
    const open = () => CertificateAuthority.open({ dataDir: tempDir(), cacertsDir: cacerts, trustDomain: "cluster.local" });
    chmodSync(join(cacerts, "ca-key.pem"), 0o640);
    await expect(open()).rejects.toThrow(/ca-key.pem has mode 640/);
    chmodSync(join(cacerts, "ca-key.pem"), 0o600);
    writeFileSync(join(cacerts, "ca-key.pem"), readFileSync(join(cacerts, "root-key.pem")), { mode: 0o600 });
    await expect(open()).rejects.toThrow("plugged-in CA: ca-key.pem is not the key of ca-cert.pem");
    rmSync(join(cacerts, "ca-key.pem"));
    await expect(open()).rejects.toThrow(/ca-key.pem is missing/);
  });
});

describe("bootstrap tokens", () => {
  it("stand for one service account, until they expire; forged or foreign ones are refused", () => {
    const dataDir = tempDir();
    const tokens = BootstrapTokens.open(dataDir);
    expect(mode(join(dataDir, "token-key"))).toBe(0o600);
    const token = tokens.issue({ namespace: "shop", serviceAccount: "webapp" }, 60);
    expect(tokens.verify(token)).toEqual({ namespace: "shop", serviceAccount: "webapp" });
    expect(() => tokens.verify(token, Date.now() + 61_000)).toThrow("the token has expired");
    const [header, payload, signature] = token.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString());
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: "system:serviceaccount:shop:catalog" })).toString("base64url")}.${signature}`;
    expect(() => tokens.verify(forged)).toThrow("the token's signature does not verify");
    expect(() => BootstrapTokens.open(tempDir()).verify(token)).toThrow("the token's signature does not verify");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    expect(() => tokens.verify(none)).toThrow("not a Skiff bootstrap token");
    expect(tokens.verify(BootstrapTokens.open(dataDir).issue({ namespace: "a", serviceAccount: "b" }, 60))).toEqual({ namespace: "a", serviceAccount: "b" });
  });
});
