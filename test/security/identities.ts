// Certificates and channels for security tests: a workload certificate straight from a CA (as the CA would sign an
// agent's CSR), and gRPC channel credentials to a secured control plane with or without one.
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import type { CertificateAuthority } from "../../control/ca/authority.js";
import { CONTROL_PLANE_CHANNEL_OPTIONS } from "../../control/agent/certificates.js";
import { EC_P256, generateKeyPair, privateKeyPem, x509 } from "../../control/ca/x509.js";

export interface IssuedCertificate {
  keyPem: string;
  chainPem: string;
}

export async function workloadCertificate(ca: CertificateAuthority, namespace: string, serviceAccount: string, ttlSeconds?: number): Promise<IssuedCertificate> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256 });
  const chain = await ca.signWorkload(csr.toString("pem"), { namespace, serviceAccount }, ttlSeconds);
  return { keyPem: await privateKeyPem(keys.privateKey), chainPem: chain.slice(0, -1).join("") };
}

/** TLS to the control plane, trusting `rootPem`, presenting `certificate` if given. */
export function tlsChannel(rootPem: string, certificate?: IssuedCertificate): { credentials: ChannelCredentials; options: typeof CONTROL_PLANE_CHANNEL_OPTIONS } {
  return {
    credentials: certificate
      ? credentials.createSsl(Buffer.from(rootPem), Buffer.from(certificate.keyPem), Buffer.from(certificate.chainPem))
      : credentials.createSsl(Buffer.from(rootPem)),
    options: CONTROL_PLANE_CHANNEL_OPTIONS,
  };
}
