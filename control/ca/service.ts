// The CA's gRPC service (Istio's IstioCertificateService): authenticates the caller by its workload certificate or a
// bearer token (a bootstrap token, or with --kubernetes a service account token the API server reviews), then signs
// the CSR for that caller's identity. Like istiod, it answers a failed authentication with an opaque "request
// authenticate failure" and logs the reason (never the token itself).
import { type sendUnaryData, type ServerUnaryCall, status as grpcStatus, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { type CertificateAuthority, CertificateRequestError } from "./authority.js";
import { bearerToken, certificateIdentity } from "./peer.js";
import type { CertificateRequest, CertificateResponse } from "./protocol.js";
import { spiffeId } from "./spiffe.js";
import { type TokenAuthenticator, TokenError, type TokenIdentity } from "./tokens.js";

export function certificateServiceHandlers(ca: CertificateAuthority, tokens: TokenAuthenticator, log: (line: string) => void): UntypedServiceImplementation {
  const sign = (call: ServerUnaryCall<CertificateRequest, CertificateResponse>, callback: sendUnaryData<CertificateResponse>, identity: TokenIdentity, how: string) => {
    const peer = call.getPeer();
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
  };
  return {
    CreateCertificate: (call: ServerUnaryCall<CertificateRequest, CertificateResponse>, callback: sendUnaryData<CertificateResponse>) => {
      const identity = certificateIdentity(call, ca.trustDomain);
      if (identity) return sign(call, callback, identity, "certificate");
      const token = bearerToken(call);
      const refused = (reason: string, code = grpcStatus.UNAUTHENTICATED, details = "request authenticate failure") => {
        log(`CA: refused a CSR from ${call.getPeer()}: ${reason}`);
        callback({ code, details });
      };
      if (!token) return refused("neither a workload certificate nor a bearer token");
      tokens.authenticate(token).then(
        (identity) => sign(call, callback, identity, tokens.kind),
        (error: Error) =>
          error instanceof TokenError
            ? refused(`${tokens.kind}: ${error.message}`)
            : // The token could not be checked (e.g. the API server is away): the agent may retry.
              refused(`${tokens.kind}: ${error.message}`, grpcStatus.UNAVAILABLE, "the credential cannot be checked now"),
      );
    },
  };
}
