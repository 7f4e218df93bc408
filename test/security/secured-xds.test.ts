// The secured control plane (issue 12 item 5): xDS over TLS, served only to a caller with a workload certificate of
// this mesh, and only as that certificate's identity; the CA on the same port signs a CSR for a caller authenticated
// by its certificate or a bootstrap token, and refuses a tampered one. Raw gRPC clients play the attackers.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, credentials, Metadata, status as grpcStatus } from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../control/ca/authority.js";
import { certificateService, type CertificateResponse } from "../../control/ca/protocol.js";
import { EC_P256, generateKeyPair, x509 } from "../../control/ca/x509.js";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { TypeUrl } from "../../control/resources.js";
import { AdsClient } from "../control/ads-client.js";
import { serviceEntry } from "../scenarios/mesh.js";
import { type IssuedCertificate, tlsChannel, workloadCertificate } from "./identities.js";

const node = (id: string, namespace: string, serviceAccount?: string) => ({
  node: { id, metadata: { ROLE: "sidecar", NAMESPACE: namespace, ...(serviceAccount ? { SERVICE_ACCOUNT: serviceAccount } : {}) } },
  type_url: TypeUrl.Cluster,
});

/** Opens an ADS stream, sends `request`, and reports what came first: a response, or the error that ended it. */
async function tryAds(port: number, channel: ConstructorParameters<typeof AdsClient>[2], request: Record<string, unknown>): Promise<{ response?: unknown; code?: number; details?: string }> {
  const client = new AdsClient(port, false, channel);
  try {
    client.send(request);
    let response: unknown;
    void client.next().then((first) => (response = first));
    for (let waited = 0; response === undefined && client.closed === undefined && waited < 20_000; waited += 25) await sleep(25);
    // A refused stream may still be delivering its status: give a response the chance to show up if there was one.
    await sleep(100);
    const error = client.closed as { code?: number; details?: string } | undefined;
    return { response, code: error?.code, details: error?.details };
  } finally {
    client.close();
  }
}

function createCertificate(port: number, channel: ReturnType<typeof tlsChannel> | undefined, csr: string, token?: string): Promise<CertificateResponse> {
  const client = new Client(`127.0.0.1:${port}`, channel?.credentials ?? credentials.createInsecure(), channel?.options);
  const metadata = new Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  const method = certificateService.CreateCertificate;
  return new Promise<CertificateResponse>((resolve, reject) =>
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, { csr }, metadata, (error, value) => {
      client.close();
      return error ? reject(error) : resolve(value!);
    }),
  ).finally(() => client.close());
}

async function csr(): Promise<string> {
  return (await x509.Pkcs10CertificateRequestGenerator.create({ keys: await generateKeyPair(), signingAlgorithm: EC_P256 })).toString("pem");
}

describe("secured control plane", () => {
  let dir: string;
  let controlPlane: ControlPlane;
  let log: string[];
  let webapp: IssuedCertificate;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-secured-"));
    writeFileSync(join(dir, "services.yaml"), serviceEntry("catalog", 3000, { v1: 8000 }));
    log = [];
    controlPlane = await startControlPlane({ configDir: dir, xdsPort: 0, httpPort: 0, log: (line) => log.push(line), security: { dataDir: join(dir, "data") } });
    webapp = await workloadCertificate(controlPlane.ca!, "shop", "webapp");
  });

  afterAll(async () => {
    await controlPlane?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves a proxy whose certificate is the identity its node claims", async () => {
    const result = await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem, webapp), node("webapp-1", "shop", "webapp"));
    expect(result.code).toBeUndefined();
    expect(result.response).toMatchObject({ type_url: TypeUrl.Cluster });
    // A node that names no service account is served as its certificate's.
    expect((await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem, webapp), node("webapp-2", "shop"))).response).toBeDefined();
  });

  it("refuses plain text, TLS without a certificate, and a certificate of another CA: nothing is sent", async () => {
    const plain = await tryAds(controlPlane.xds.port, undefined, node("webapp-1", "shop", "webapp"));
    expect(plain.response).toBeUndefined();
    expect(plain.code).toBe(grpcStatus.UNAVAILABLE);

    const anonymous = await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem), node("webapp-1", "shop", "webapp"));
    expect(anonymous.response).toBeUndefined();
    expect(anonymous.code).toBe(grpcStatus.UNAUTHENTICATED);

    // Another mesh's CA, with the same SPIFFE names: its certificates do not verify against this root.
    const otherCa = await CertificateAuthority.open({ dataDir: join(dir, "other-ca"), trustDomain: "cluster.local" });
    const foreign = await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem, await workloadCertificate(otherCa, "shop", "webapp")), node("webapp-1", "shop", "webapp"));
    expect(foreign.response).toBeUndefined();
    expect(foreign.code).toBe(grpcStatus.UNAUTHENTICATED);
  });

  it("refuses a certificate of this root for another trust domain, and an expired one", async () => {
    // The same root, configured for another trust domain (as after a trust domain migration gone wrong).
    const sameRoot = await CertificateAuthority.open({ dataDir: join(dir, "data"), trustDomain: "other.example" });
    const otherDomain = await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem, await workloadCertificate(sameRoot, "shop", "webapp")), node("x", "shop"));
    expect(otherDomain.code).toBe(grpcStatus.UNAUTHENTICATED);
    expect(otherDomain.response).toBeUndefined();

    const shortLived = await workloadCertificate(controlPlane.ca!, "shop", "webapp", 1);
    await sleep(1500);
    const expired = await tryAds(controlPlane.xds.port, tlsChannel(controlPlane.ca!.rootPem, shortLived), node("webapp-9", "shop", "webapp"));
    expect(expired.code).toBe(grpcStatus.UNAUTHENTICATED);
    expect(expired.response).toBeUndefined();
  });

  it("refuses another workload's node: other service account, other namespace, or a node id another identity holds", async () => {
    const channel = tlsChannel(controlPlane.ca!.rootPem, webapp);
    const otherAccount = await tryAds(controlPlane.xds.port, channel, node("catalog-1", "shop", "catalog"));
    expect(otherAccount).toMatchObject({ response: undefined, code: grpcStatus.PERMISSION_DENIED });
    expect(otherAccount.details).toBe("the certificate is shop/webapp, the node claims shop/catalog");
    const otherNamespace = await tryAds(controlPlane.xds.port, channel, node("webapp-1", "billing", "webapp"));
    expect(otherNamespace).toMatchObject({ response: undefined, code: grpcStatus.PERMISSION_DENIED });

    // catalog's proxy is connected; webapp's certificate cannot open a stream under catalog's node id.
    const catalog = new AdsClient(controlPlane.xds.port, false, tlsChannel(controlPlane.ca!.rootPem, await workloadCertificate(controlPlane.ca!, "shop", "catalog")));
    try {
      catalog.send(node("catalog-1", "shop", "catalog"));
      await catalog.next();
      const takeover = await tryAds(controlPlane.xds.port, channel, node("catalog-1", "shop"));
      expect(takeover).toMatchObject({ response: undefined, code: grpcStatus.PERMISSION_DENIED });
      expect(takeover.details).toBe("node id catalog-1 is connected as shop/catalog, not shop/webapp");
      expect(log.some((line) => line.includes("closing the stream") && line.includes("node id catalog-1 is connected as shop/catalog"))).toBe(true);
    } finally {
      catalog.close();
    }
  });

  it("signs a CSR for a bootstrap token's identity or a certificate's, and for no one else", async () => {
    const port = controlPlane.xds.port;
    const root = controlPlane.ca!.rootPem;
    const token = controlPlane.tokens!.issue({ namespace: "shop", serviceAccount: "catalog" }, 60);
    const byToken = await createCertificate(port, tlsChannel(root), await csr(), token);
    expect(new x509.X509Certificate(byToken.cert_chain[0]!).getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.value).toBe(
      "spiffe://cluster.local/ns/shop/sa/catalog",
    );
    expect(byToken.cert_chain.at(-1)).toBe(root);
    const byCertificate = await createCertificate(port, tlsChannel(root, webapp), await csr());
    expect(new x509.X509Certificate(byCertificate.cert_chain[0]!).getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.value).toBe(
      "spiffe://cluster.local/ns/shop/sa/webapp",
    );

    await expect(createCertificate(port, tlsChannel(root), await csr())).rejects.toMatchObject({ code: grpcStatus.UNAUTHENTICATED, details: "request authenticate failure" });
    const forged = `${token.slice(0, -4)}AAAA`;
    await expect(createCertificate(port, tlsChannel(root), await csr(), forged)).rejects.toMatchObject({ code: grpcStatus.UNAUTHENTICATED });
    expect(log.some((line) => line.includes("refused a CSR") && line.includes("signature does not verify"))).toBe(true);
    // The token never appears in a log line.
    expect(log.some((line) => line.includes(token.split(".")[2]!))).toBe(false);

    const tampered = (await csr()).replace(/^(-----BEGIN CERTIFICATE REQUEST-----\n.{40})(.)/m, (_, head: string, char: string) => head + (char === "A" ? "B" : "A"));
    await expect(createCertificate(port, tlsChannel(root), tampered, token)).rejects.toMatchObject({ code: grpcStatus.INVALID_ARGUMENT });
  });
});
