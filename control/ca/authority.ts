// The control plane's certificate authority, as istiod's (security/pkg/pki/ca, security/pkg/server/ca): a root it
// makes on first start and keeps in its data directory, or a plugged-in CA in Istio's `cacerts` layout; it signs
// workload CSRs with the caller's SPIFFE identity (never one the CSR asks for) for a short time.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkIdentityNames, spiffeId, type WorkloadIdentity } from "./spiffe.js";
import { EC_P256, generateKeyPair, importPrivateKey, privateKeyPem, serialNumber, type SigningAlgorithm, splitPem, x509 } from "./x509.js";

/** Istio's defaults (security/pkg/cmd/constants.go): workload certificates live 24 h, at most 90 days; a self-made
 * root 10 years; leaf certificates start 2 minutes in the past for clock skew (pki/util ClockSkewGracePeriod). */
export const DEFAULT_WORKLOAD_TTL_SECONDS = 24 * 3600;
export const MAX_WORKLOAD_TTL_SECONDS = 90 * 24 * 3600;
const ROOT_TTL_MS = 3650 * 24 * 3600 * 1000;
const CLOCK_SKEW_MS = 2 * 60 * 1000;

/** The files of Istio's plugged-in CA (the `cacerts` secret) and of the root Skiff makes, by the same names. */
export const CACERTS_FILES = { signingCert: "ca-cert.pem", signingKey: "ca-key.pem", root: "root-cert.pem", chain: "cert-chain.pem" } as const;

export interface CertificateAuthorityOptions {
  /** Where the self-made root is kept (`<dataDir>/ca/`, mode 0700, the key 0600). */
  dataDir: string;
  /** Plugged-in CA: a folder with ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem, as Istio's `cacerts`. */
  cacertsDir?: string;
  trustDomain: string;
  /** Lifetime of a workload certificate when the request names none (default 24 h). */
  workloadTtlSeconds?: number;
  /** The longest lifetime a request may ask for (default 90 days). */
  maxWorkloadTtlSeconds?: number;
}

/** A request the CA refuses: a CSR that does not verify or names another identity, an expired signing certificate. */
export class CertificateRequestError extends Error {
  override name = "CertificateRequestError";
}

interface SigningMaterial {
  cert: x509.X509Certificate;
  key: CryptoKey;
  algorithm: SigningAlgorithm;
  /** Certificates between the signing certificate and the root (the signing one first), root excluded. */
  intermediates: string[];
  rootPem: string;
}

export class CertificateAuthority {
  private constructor(
    private readonly signing: SigningMaterial,
    readonly trustDomain: string,
    private readonly defaultTtlSeconds: number,
    private readonly maxTtlSeconds: number,
    /** "self-made root in <dir>" or "plugged-in CA from <dir>", for the start-up log. */
    readonly origin: string,
  ) {}

  /** Loads the plugged-in CA, or the root kept in the data directory, or makes and keeps one. */
  static async open(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const material = options.cacertsDir
      ? await loadCaFiles(options.cacertsDir, "plugged-in CA")
      : await loadOrCreateRoot(join(options.dataDir, "ca"), options.trustDomain);
    const origin = options.cacertsDir ? `plugged-in CA from ${options.cacertsDir}` : `self-made root in ${join(options.dataDir, "ca")}`;
    return new CertificateAuthority(
      material,
      options.trustDomain,
      options.workloadTtlSeconds ?? DEFAULT_WORKLOAD_TTL_SECONDS,
      options.maxWorkloadTtlSeconds ?? MAX_WORKLOAD_TTL_SECONDS,
      origin,
    );
  }

  /** The trust anchor (root-cert.pem) workloads verify peers against: Istio's `ROOTCA`. */
  get rootPem(): string {
    return this.signing.rootPem;
  }

  /** Signs a workload CSR for `identity` (the authenticated caller, never read from the CSR). Returns the chain as
   * Istio's CreateCertificate does: the leaf, the intermediates, the root last. */
  async signWorkload(csrPem: string, identity: Omit<WorkloadIdentity, "trustDomain">, ttlSeconds?: number): Promise<string[]> {
    checkIdentityNames(identity.namespace, identity.serviceAccount);
    const uri = spiffeId({ ...identity, trustDomain: this.trustDomain });
    const csr = await verifiedRequest(csrPem);
    // Istio ignores what the CSR asks for; a request naming someone else is refused here, so the mistake shows.
    const san = csr.extensions.find((extension) => extension instanceof x509.SubjectAlternativeNameExtension);
    const asked = san instanceof x509.SubjectAlternativeNameExtension ? san.names.items : [];
    const foreign = asked.find((name) => name.type !== "url" || name.value !== uri);
    if (foreign) throw new CertificateRequestError(`the CSR asks for ${foreign.type}:${foreign.value}, but the caller is ${uri}`);
    const ttl = Math.min(ttlSeconds && ttlSeconds > 0 ? ttlSeconds : this.defaultTtlSeconds, this.maxTtlSeconds);
    return this.sign(csr, [{ type: "url", value: uri }], ttl);
  }

  /** A serving certificate for the control plane itself (DNS names and IP addresses), from a CSR it made. */
  async signServing(csrPem: string, dnsNames: string[], ips: string[], ttlSeconds: number): Promise<string[]> {
    const csr = await verifiedRequest(csrPem);
    const names = [...dnsNames.map((value) => ({ type: "dns" as const, value })), ...ips.map((value) => ({ type: "ip" as const, value }))];
    return this.sign(csr, names, ttlSeconds);
  }

  private async sign(csr: x509.Pkcs10CertificateRequest, names: x509.JsonGeneralName[], ttlSeconds: number): Promise<string[]> {
    const now = Date.now();
    const caNotAfter = this.signing.cert.notAfter.getTime();
    if (caNotAfter <= now) throw new CertificateRequestError(`the signing certificate expired at ${this.signing.cert.notAfter.toISOString()}`);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      // An empty subject, as Istio's workload certificates have; the identity is the SAN, hence critical (RFC 5280).
      subject: "",
      issuer: this.signing.cert.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now + ttlSeconds * 1000, caNotAfter)),
      publicKey: csr.publicKey,
      signingKey: this.signing.key,
      signingAlgorithm: this.signing.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.AuthorityKeyIdentifierExtension.create(this.signing.cert),
        new x509.SubjectAlternativeNameExtension(names, true),
      ],
    });
    return [leaf.toString("pem") + "\n", ...this.signing.intermediates, this.signing.rootPem];
  }
}

async function verifiedRequest(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (error) {
    throw new CertificateRequestError(`the CSR is not a PEM PKCS#10 request: ${(error as Error).message}`);
  }
  // The CSR's signature proves the caller holds the private key of the public key it wants certified.
  if (!(await csr.verify().catch(() => false))) throw new CertificateRequestError("the CSR's signature does not verify (tampered, or not signed by its key)");
  return csr;
}

/** The self-made root of `dir`, made on first start. The directory is 0700 and the key 0600, checked on every start. */
async function loadOrCreateRoot(dir: string, trustDomain: string): Promise<SigningMaterial> {
  if (existsSync(join(dir, CACERTS_FILES.signingKey))) {
    checkPrivate(dir, "the CA folder");
    return loadCaFiles(dir, "the CA in the data directory");
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const keys = await generateKeyPair();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    // Istio's self-signed root names the trust domain as its organisation.
    name: [{ O: [trustDomain] }],
    notBefore: new Date(Date.now() - CLOCK_SKEW_MS),
    notAfter: new Date(Date.now() + ROOT_TTL_MS),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const rootPem = root.toString("pem") + "\n";
  // The key first, created exclusively with its final mode: it is never readable by anyone else, even briefly.
  writeFileSync(join(dir, CACERTS_FILES.signingKey), await privateKeyPem(keys.privateKey), { mode: 0o600, flag: "wx" });
  writeFileSync(join(dir, CACERTS_FILES.signingCert), rootPem, { mode: 0o644 });
  writeFileSync(join(dir, CACERTS_FILES.root), rootPem, { mode: 0o644 });
  writeFileSync(join(dir, CACERTS_FILES.chain), "", { mode: 0o644 });
  return { cert: root, key: keys.privateKey, algorithm: EC_P256, intermediates: [], rootPem };
}

/** Refuses a key (or its folder) that others can read, as ssh does. */
export function checkPrivate(path: string, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) throw new Error(`${path} has mode ${mode.toString(8)}: ${what} must be private to its owner (chmod go-rwx)`);
}

/** Istio's `cacerts` layout: checks that the key is the signing certificate's, that the certificate may sign, and
 * that it chains (through cert-chain.pem) to root-cert.pem. */
async function loadCaFiles(dir: string, what: string): Promise<SigningMaterial> {
  const read = (file: string) => {
    const path = join(dir, file);
    if (!existsSync(path)) throw new Error(`${what}: ${path} is missing (expected ${Object.values(CACERTS_FILES).join(", ")})`);
    return readFileSync(path, "utf8");
  };
  const keyPath = join(dir, CACERTS_FILES.signingKey);
  if (existsSync(keyPath)) checkPrivate(keyPath, "the CA key");
  const signingPem = splitPem(read(CACERTS_FILES.signingCert))[0];
  const rootPem = splitPem(read(CACERTS_FILES.root))[0];
  const keyPem = read(CACERTS_FILES.signingKey);
  const chainText = existsSync(join(dir, CACERTS_FILES.chain)) ? read(CACERTS_FILES.chain) : "";
  if (!signingPem) throw new Error(`${what}: ${CACERTS_FILES.signingCert} holds no certificate`);
  if (!rootPem) throw new Error(`${what}: ${CACERTS_FILES.root} holds no certificate`);
  const signing = new X509Certificate(signingPem);
  const root = new X509Certificate(rootPem);
  if (!signing.ca) throw new Error(`${what}: ${CACERTS_FILES.signingCert} is not a CA certificate (basicConstraints CA:TRUE)`);
  if (!signing.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`${what}: ${CACERTS_FILES.signingKey} is not the key of ${CACERTS_FILES.signingCert}`);
  // Intermediates: cert-chain.pem as Istio documents it (the signing certificate, further intermediates, the root),
  // kept in that order without the root and without repeating the signing certificate.
  const chain = splitPem(chainText).filter((pem) => !new X509Certificate(pem).raw.equals(root.raw));
  const intermediates = chain.length > 0 && new X509Certificate(chain[0]!).raw.equals(signing.raw) ? chain : [signingPem, ...chain];
  const path = [...intermediates.map((pem) => new X509Certificate(pem)), root];
  if (signing.raw.equals(root.raw)) path.splice(0, path.length, root);
  for (let i = 0; i + 1 < path.length; i++) {
    if (!path[i]!.checkIssued(path[i + 1]!) || !path[i]!.verify(path[i + 1]!.publicKey)) {
      throw new Error(`${what}: ${path[i]!.subject || "a certificate"} in the chain is not signed by ${path[i + 1]!.subject || "the next one"} (check ${CACERTS_FILES.chain} and ${CACERTS_FILES.root})`);
    }
  }
  if (!root.verify(root.publicKey)) throw new Error(`${what}: ${CACERTS_FILES.root} is not a self-signed root`);
  const { privateKey, algorithm } = await importPrivateKey(keyPem);
  return {
    cert: new x509.X509Certificate(signingPem),
    key: privateKey,
    algorithm,
    intermediates: signing.raw.equals(root.raw) ? [] : intermediates,
    rootPem,
  };
}
