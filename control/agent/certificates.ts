// The workload's certificate, as istio-agent's secret manager keeps it (security/pkg/nodeagent/cache): a private key
// made here, in memory, never sent anywhere; a CSR to the control plane's CA (Istio's CreateCertificate), the first
// one authenticated by a token (the pod's service account token in a cluster, else a bootstrap token), later ones by the current certificate; a new key and certificate at half
// the lifetime (SECRET_GRACE_PERIOD_RATIO 0.5, with istio-agent's 1% jitter).
import { type ChannelCredentials, Client, credentials as grpcCredentials, Metadata, status as grpcStatus } from "@grpc/grpc-js";
import { certificateService, CONTROL_PLANE_NAME, type CertificateRequest, type CertificateResponse } from "../ca/protocol.js";
import { spiffeId } from "../ca/spiffe.js";
import { EC_P256, generateKeyPair, privateKeyPem, x509 } from "../ca/x509.js";

export interface WorkloadCertificate {
  /** PEM private key (PKCS#8), for Envoy by SDS on the local socket only. */
  keyPem: string;
  /** The leaf and the intermediates, PEM. */
  chainPem: string;
  /** The trust anchor the CA returned last in the chain (Istio's ROOTCA). */
  rootPem: string;
  notAfter: Date;
  serial: string;
}

export interface CertificateClientOptions {
  /** The control plane, "HOST:PORT". */
  address: string;
  /** The root certificate that the control plane's serving certificate must chain to (`skiff ca root`). */
  rootPem: string;
  /** Returns the token for a first certificate (read anew each time: a projected token is replaced on disk): a
   * Kubernetes service account token in a cluster, else a bootstrap token. */
  token: () => string | undefined;
  /** Where the token comes from, for error messages (e.g. its file). */
  tokenSource?: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  /** Requested lifetime in seconds (0: the CA's default). */
  ttlSeconds?: number;
}

export const GRACE_PERIOD_RATIO = 0.5;
const JITTER = 0.01;

/** Options every channel to the control plane uses: its serving certificate names CONTROL_PLANE_NAME whatever
 * address is dialled, as istiod's names istiod.istio-system.svc. No limit on what it receives: every Wasm module
 * travels inline in ECDS, so one xDS response is as large as the modules it carries (grpc-js refuses messages over
 * 4 MiB by default; Envoy's own gRPC client has no such limit, and the relay must not add one). */
export const CONTROL_PLANE_CHANNEL_OPTIONS = {
  "grpc.ssl_target_name_override": CONTROL_PLANE_NAME,
  "grpc.default_authority": CONTROL_PLANE_NAME,
  "grpc.max_receive_message_length": -1,
};

/** Channel credentials to the control plane: its root, plus this workload's certificate once it has one. */
export function controlPlaneCredentials(rootPem: string, certificate?: WorkloadCertificate): ChannelCredentials {
  return certificate
    ? grpcCredentials.createSsl(Buffer.from(rootPem), Buffer.from(certificate.keyPem), Buffer.from(certificate.chainPem))
    : grpcCredentials.createSsl(Buffer.from(rootPem));
}

/** No replica answered, none in time, or the one that did could not check the credential now (its TokenReview
 * failed): asking again later may succeed, unlike a refusal. */
export class CaUnavailableError extends Error {
  override name = "CaUnavailableError";
}
const TRANSIENT = new Set<number>([grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED]);

/** Asks the CA for a certificate with a fresh key. With `current` (still valid) the request is authenticated by it;
 * otherwise by the bootstrap token. */
export async function requestCertificate(options: CertificateClientOptions, current?: WorkloadCertificate): Promise<WorkloadCertificate> {
  const keys = await generateKeyPair();
  const identity = spiffeId({ trustDomain: options.trustDomain, namespace: options.namespace, serviceAccount: options.serviceAccount });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: identity }])],
  });
  const useCertificate = current !== undefined && current.notAfter.getTime() > Date.now() + 1000;
  const metadata = new Metadata();
  if (!useCertificate) {
    const token = options.token();
    if (!token) throw new Error(`no valid certificate and no token to ask the CA with${options.tokenSource ? ` (nothing in ${options.tokenSource})` : ""}`);
    metadata.set("authorization", `Bearer ${token}`);
  }
  const client = new Client(options.address, controlPlaneCredentials(options.rootPem, useCertificate ? current : undefined), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    const response = await new Promise<CertificateResponse>((resolve, reject) => {
      const method = certificateService.CreateCertificate;
      const request: CertificateRequest = { csr: csr.toString("pem"), validity_duration: options.ttlSeconds ?? 0 };
      client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadata, { deadline: Date.now() + 10_000 }, (error, value) =>
        error ? reject(new (TRANSIENT.has(error.code) ? CaUnavailableError : Error)(`CA ${options.address}: ${grpcStatus[error.code]}: ${error.details}`)) : resolve(value!),
      );
    });
    const chain = response.cert_chain;
    if (chain.length < 2) throw new Error(`CA ${options.address}: the answer holds ${chain.length} certificate(s), expected the leaf and the root`);
    const leaf = new x509.X509Certificate(chain[0]!);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((name) => name.value) ?? [];
    if (!san.includes(identity)) throw new Error(`CA ${options.address}: the certificate names ${san.join(", ") || "nothing"}, not ${identity}`);
    return {
      keyPem: await privateKeyPem(keys.privateKey),
      chainPem: chain.slice(0, -1).map((pem) => (pem.endsWith("\n") ? pem : `${pem}\n`)).join(""),
      rootPem: chain.at(-1)!,
      notAfter: leaf.notAfter,
      serial: leaf.serialNumber,
    };
  } finally {
    client.close();
  }
}

/** When to replace a certificate: at GRACE_PERIOD_RATIO of its lifetime left, less a little jitter so that many
 * workloads do not renew at once. */
export function renewalDelayMs(certificate: WorkloadCertificate, issuedAt: number, random = Math.random()): number {
  const lifetime = certificate.notAfter.getTime() - issuedAt;
  const ratio = GRACE_PERIOD_RATIO + (random * 2 - 1) * JITTER;
  return Math.max(500, lifetime * (1 - ratio));
}
