// Who is on the other end of a gRPC call: the workload identity of a verified client certificate. grpc-js reports a
// peer certificate only when the TLS handshake verified it against the CA (`socket.authorized`: chain and validity
// dates checked by OpenSSL); what is left here is the SPIFFE ID and the trust domain.
import type { PeerCertificate } from "node:tls";
import type { Metadata } from "@grpc/grpc-js";
import { parseSpiffeId, type WorkloadIdentity } from "./spiffe.js";

/** The parts of a grpc-js server call (unary or stream) this needs. */
export interface AuthenticatedCall {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
  metadata: Metadata;
}

/** The identity of the caller's certificate, if it presented one that verified and that names a SPIFFE identity of
 * `trustDomain`; otherwise undefined. */
export function certificateIdentity(call: AuthenticatedCall, trustDomain: string): WorkloadIdentity | undefined {
  const certificate = call.getAuthContext()?.sslPeerCertificate;
  if (!certificate) return undefined;
  const uris = (certificate.subjectaltname ?? "")
    .split(", ")
    .filter((name) => name.startsWith("URI:"))
    .map((name) => parseSpiffeId(name.slice(4)));
  // Exactly one SPIFFE URI, as Istio issues them; a certificate with several identities is not a workload's.
  if (uris.length !== 1 || !uris[0] || uris[0].trustDomain !== trustDomain) return undefined;
  return uris[0];
}

/** The bearer token of the call's `authorization` metadata, if any. */
export function bearerToken(call: AuthenticatedCall): string | undefined {
  const value = call.metadata.get("authorization")[0];
  const match = typeof value === "string" ? /^Bearer\s+(\S+)$/i.exec(value) : null;
  return match?.[1];
}
