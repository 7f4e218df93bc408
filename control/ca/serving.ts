// The control plane's own TLS identity: a key it makes in memory (never written, never sent), a certificate its CA
// signs for CONTROL_PLANE_NAME (which agents check, whatever address they dial, as istio-agent checks
// istiod.istio-system.svc), renewed at half its lifetime without a restart.
// Clients may present a certificate (a workload's, checked per call by peer.ts) or none (an agent's first CSR, with
// a bootstrap token); the TLS layer asks for one and verifies it against the root, but leaves refusing to each call,
// as istiod's port 15012 does for its CA and xDS services.
import { ServerCredentials } from "@grpc/grpc-js";
import type { CertificateAuthority } from "./authority.js";
import { CONTROL_PLANE_NAME } from "./protocol.js";
import { EC_P256, generateKeyPair, privateKeyPem, x509 } from "./x509.js";

export interface ServingOptions {
  ttlSeconds: number;
  log?: (line: string) => void;
}

export class ServingCredentials extends ServerCredentials {
  private timer?: NodeJS.Timeout;
  private stopped = false;

  private constructor(
    private readonly ca: CertificateAuthority,
    private readonly options: ServingOptions,
  ) {
    // requestCert: ask for a client certificate; rejectUnauthorized false: a client without one may still call the CA
    // with a bootstrap token. A certificate that does not verify is not reported to the calls (peer.ts).
    super({ requestCert: true, rejectUnauthorized: false }, undefined);
  }

  static async start(ca: CertificateAuthority, options: ServingOptions): Promise<ServingCredentials> {
    const credentials = new ServingCredentials(ca, options);
    await credentials.renew();
    return credentials;
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async renew(): Promise<void> {
    const { key, cert, lifetime } = await servingCertificate(this.ca, [], this.options.ttlSeconds);
    this.updateSecureContextOptions({ key, cert, ca: this.ca.rootPem });
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.renew().catch((error: Error) => this.options.log?.(`control plane certificate renewal failed: ${error.message}`));
    }, Math.max(1000, lifetime / 2));
    this.timer.unref();
    this.options.log?.(`control plane certificate renewed, valid ${Math.round(lifetime / 1000)} s`);
  }
}

/** A key made here (never written, never sent) and a certificate the CA signs for CONTROL_PLANE_NAME and `ips`: `cert`
 * is the leaf and intermediates, since the root is the clients' trust anchor, not part of what a server sends;
 * `lifetime` in milliseconds from now. */
export async function servingCertificate(ca: CertificateAuthority, ips: string[], ttlSeconds: number): Promise<{ key: string; cert: string; lifetime: number }> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256 });
  const chain = await ca.signServing(csr.toString("pem"), [CONTROL_PLANE_NAME], ips, ttlSeconds);
  return { key: await privateKeyPem(keys.privateKey), cert: chain.slice(0, -1).join(""), lifetime: new x509.X509Certificate(chain[0]!).notAfter.getTime() - Date.now() };
}
