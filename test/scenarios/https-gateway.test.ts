// Seed scenario "securing the gateway": HTTPS servers on one gateway port, each with its own certificate, chosen by
// SNI (the seed's "multiple virtual hosts with TLS"), MUTUAL TLS that refuses clients without a certificate from the
// configured CA, OPTIONAL_MUTUAL that verifies a certificate only when one is shown, and a plain HTTP server on the
// same port (issue 13 case 5). Certificates reach Envoy by SDS from the control plane; test certificates are made
// with openssl.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { send } from "../harness/client.js";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, type Mesh, serviceEntry, startMesh } from "./mesh.js";

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
}

/** A self-signed server certificate for `host` in `<dir>/<base>.crt` / `.key`. */
function selfSigned(dir: string, base: string, host: string): void {
  openssl(dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`, "-keyout", `${base}.key`, "-out", `${base}.crt`);
}

/** A CA and a client certificate it signed. */
function clientCa(dir: string): void {
  openssl(dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=clients-ca", "-keyout", "ca.key", "-out", "ca.crt");
  openssl(dir, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key", "-out", "client.csr");
  openssl(dir, "x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", "client.crt");
}

interface HttpsResult {
  status: number;
  upstream?: string;
  certificateFor: string;
}

describeE2E("scenario: HTTPS on the gateway (SDS)", () => {
  let webapp: Upstream;
  let catalog: Upstream;
  let mesh: Mesh;
  let port: number;
  let dir: string;

  function get(host: string, client?: { cert: Buffer; key: Buffer }): Promise<HttpsResult> {
    const certificate = host.startsWith("catalog") ? `${dir}/certs/catalog.crt` : `${dir}/credentials/${host.split(".")[0]}-credential/tls.crt`;
    return new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, servername: host, headers: { host }, ca: readFileSync(certificate), agent: false, ...client },
        (res) => {
          const peer = (res.socket as TLSSocket).getPeerCertificate();
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, upstream: res.headers["x-upstream"] as string | undefined, certificateFor: String(peer.subject.CN) }));
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  beforeAll(async () => {
    webapp = await startUpstream({ name: "webapp" });
    catalog = await startUpstream({ name: "catalog" });
    port = await freePort();
    mesh = await startMesh((configDir) => {
      dir = configDir;
      for (const folder of ["credentials/webapp-credential", "credentials/optional-credential", "certs", "other"]) mkdirSync(`${configDir}/${folder}`, { recursive: true });
      selfSigned(`${configDir}/credentials/webapp-credential`, "tls", "webapp.istioinaction.io");
      selfSigned(`${configDir}/certs`, "catalog", "catalog.istioinaction.io");
      clientCa(`${configDir}/certs`);
      // OPTIONAL_MUTUAL by credentialName verifies clients against the secret's ca.crt.
      selfSigned(`${configDir}/credentials/optional-credential`, "tls", "optional.istioinaction.io");
      copyFileSync(`${configDir}/certs/ca.crt`, `${configDir}/credentials/optional-credential/ca.crt`);
      // A client certificate from a CA the gateway does not trust.
      clientCa(`${configDir}/other`);
      return {
        "gateway.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: { name: coolstore-gateway, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: https-webapp, protocol: HTTPS }
    tls: { mode: SIMPLE, credentialName: webapp-credential }
    hosts: ["webapp.istioinaction.io"]
  - port: { number: ${port}, name: https-catalog, protocol: HTTPS }
    tls:
      mode: MUTUAL
      serverCertificate: certs/catalog.crt
      privateKey: certs/catalog.key
      caCertificates: certs/ca.crt
    hosts: ["catalog.istioinaction.io"]
  - port: { number: ${port}, name: http-plain, protocol: HTTP }
    hosts: ["plain.istioinaction.io"]
  - port: { number: ${port}, name: https-optional, protocol: HTTPS }
    tls:
      mode: OPTIONAL_MUTUAL
      credentialName: optional-credential
    hosts: ["optional.istioinaction.io"]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: plain-and-optional, namespace: shop }
spec:
  hosts: ["plain.istioinaction.io", "optional.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route: [{ destination: { host: webapp } }]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: webapp, namespace: shop }
spec:
  hosts: ["webapp.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route: [{ destination: { host: webapp } }]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: ["catalog.istioinaction.io"]
  gateways: [coolstore-gateway]
  http:
  - route: [{ destination: { host: catalog } }]
`,
        "services.yaml": [serviceEntry("webapp", 8080, { v1: webapp.port }), serviceEntry("catalog", 3000, { v1: catalog.port })].join("---\n"),
      };
    }, GATEWAY);
  });

  afterAll(async () => {
    await mesh?.stop();
    await webapp?.stop();
    await catalog?.stop();
  });

  it("presents each host's certificate by SNI and routes to its service", async () => {
    const result = await eventually(() => get("webapp.istioinaction.io"));
    expect(result).toEqual({ status: 200, upstream: "webapp", certificateFor: "webapp.istioinaction.io" });
  });

  it("requires a client certificate from the CA where the server is MUTUAL", async () => {
    const client = { cert: readFileSync(`${dir}/certs/client.crt`), key: readFileSync(`${dir}/certs/client.key`) };
    expect(await get("catalog.istioinaction.io", client)).toEqual({ status: 200, upstream: "catalog", certificateFor: "catalog.istioinaction.io" });
    await expect(get("catalog.istioinaction.io")).rejects.toThrow();
  });

  it("serves a plain HTTP server on the same port to clients that do not speak TLS", async () => {
    const response = await send(port, { headers: { host: "plain.istioinaction.io" } });
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("webapp");
    // The TLS servers are unchanged beside it.
    expect(await get("webapp.istioinaction.io")).toEqual({ status: 200, upstream: "webapp", certificateFor: "webapp.istioinaction.io" });
  });

  it("OPTIONAL_MUTUAL lets clients without a certificate in and refuses a certificate from an unknown CA", async () => {
    const trusted = { cert: readFileSync(`${dir}/certs/client.crt`), key: readFileSync(`${dir}/certs/client.key`) };
    const untrusted = { cert: readFileSync(`${dir}/other/client.crt`), key: readFileSync(`${dir}/other/client.key`) };
    expect(await get("optional.istioinaction.io")).toMatchObject({ status: 200, upstream: "webapp" });
    expect(await get("optional.istioinaction.io", trusted)).toMatchObject({ status: 200, upstream: "webapp" });
    await expect(get("optional.istioinaction.io", untrusted)).rejects.toThrow();
  });
});
