// The CA's gRPC service (Istio's IstioCertificateService): authenticates the caller by its workload certificate or a
// bootstrap token, then signs the CSR for that caller's identity. Like istiod, it answers a failed authentication
// with an opaque "request authenticate failure" and logs the reason (never the token itself).
import { type sendUnaryData, type ServerUnaryCall, status as grpcStatus, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { type CertificateAuthority, CertificateRequestError } from "./authority.js";
import { bearerToken, certificateIdentity } from "./peer.js";
import type { CertificateRequest, CertificateResponse } from "./protocol.js";
import { spiffeId } from "./spiffe.js";
import { type BootstrapTokens, TokenError } from "./tokens.js";

export function certificateServiceHandlers(ca: CertificateAuthority, tokens: BootstrapTokens, log: (line: string) => void): UntypedServiceImplementation {
  return {
    CreateCertificate: (call: ServerUnaryCall<CertificateRequest, CertificateResponse>, callback: sendUnaryData<CertificateResponse>) => {
      const peer = call.getPeer();
      let identity: { namespace: string; serviceAccount: string } | undefined = certificateIdentity(call, ca.trustDomain);
      let how = "certificate";
      if (!identity) {
        const token = bearerToken(call);
        how = "bootstrap token";
        try {
          if (!token) throw new TokenError("neither a workload certificate nor a bearer token");
          identity = tokens.verify(token);
        } catch (error) {
          log(`CA: refused a CSR from ${peer}: ${error instanceof TokenError ? error.message : (error as Error).message}`);
          callback({ code: grpcStatus.UNAUTHENTICATED, details: "request authenticate failure" });
          return;
        }
      }
      const who = spiffeId({ ...identity, trustDomain: ca.trustDomain });
      ca.signWorkload(call.request.csr, identity, call.request.validity_duration).then(
        (chain) => {
          log(`CA: signed a certificate for ${who} (${how}, ${peer})`);
          callback(null, { cert_chain: chain });
        },
        (error: Error) => {
          log(`CA: refused a CSR from ${who} (${peer}): ${error.message}`);
          callback({ code: error instanceof CertificateRequestError ? grpcStatus.INVALID_ARGUMENT : grpcStatus.INTERNAL, details: `CSR signing error (${error.message})` });
        },
      );
    },
  };
}
