// Gateway `credentialName` from Kubernetes Secrets, as Istio reads them: a `kubernetes.io/tls` Secret in the gateway's
// namespace serves SIMPLE TLS, a generic Secret with `ca.crt` makes MUTUAL require a client certificate from that CA,
// and a renewed Secret (cert-manager rewrites tls.crt and tls.key in place) reaches Envoy by SDS while requests keep
// flowing, none of them failing. A real kube-apiserver + etcd, the control plane watching it, a real gateway Envoy; the
// backend is a ServiceEntry to a local upstream (the API server refuses loopback addresses in EndpointSlices).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { loadKubeConfig } from "../../control/sources/kubernetes/index.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type KubeCluster, startKubeCluster } from "../harness/kube-apiserver.js";
import { track, untrack } from "../harness/processes.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY } from "../scenarios/mesh.js";

const NAMESPACE = "shop";
const EXAMPLES = join(PROJECT_ROOT, "examples", "kubernetes");

interface Answer {
  status: number;
  upstream?: string;
  /** The serial number of the certificate the gateway presented. */
  serial: string;
}

describeE2E("Kubernetes: gateway credentials from Secrets, by SDS", () => {
  let cluster: KubeCluster;
  let controlPlane: ControlPlane;
  let envoy: Envoy;
  let upstream: Upstream;
  let port: number;
  let dir: string;
  const log: string[] = [];
  const pem = (file: string) => readFileSync(join(dir, file));
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });

  /** A server certificate for `host` signed by the test's server CA, `<base>.crt`/`.key`, with a known serial. */
  const serverCertificate = (base: string, host: string, serial: string) => {
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${host}`, "-keyout", `${base}.key`, "-out", `${base}.csr`);
    openssl("x509", "-req", "-in", `${base}.csr`, "-CA", "server-ca.crt", "-CAkey", "server-ca.key", "-set_serial", `0x${serial}`, "-days", "1", "-out", `${base}.crt`, "-extfile", "san.ext");
  };

  const tlsSecret = (name: string, base: string, extra: Record<string, string> = {}) => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace: NAMESPACE },
    type: Object.keys(extra).length ? "Opaque" : "kubernetes.io/tls",
    data: {
      "tls.crt": pem(`${base}.crt`).toString("base64"),
      "tls.key": pem(`${base}.key`).toString("base64"),
      ...Object.fromEntries(Object.entries(extra).map(([key, file]) => [key, pem(file).toString("base64")])),
    },
  });

  function get(host: string, client?: { cert: Buffer; key: Buffer }): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, servername: host, headers: { host }, ca: pem("server-ca.crt"), agent: false, timeout: 10_000, ...client },
        (res) => {
          const peer = (res.socket as TLSSocket).getPeerCertificate();
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, upstream: res.headers["x-upstream"] as string | undefined, serial: String(peer.serialNumber).toLowerCase() }));
        },
      );
      req.on("error", reject);
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.end();
    });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-k8s-credentials-"));
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=server-ca", "-keyout", "server-ca.key", "-out", "server-ca.crt");
    execFileSync("sh", ["-c", "printf 'subjectAltName=DNS:webapp.example.com,DNS:mutual.example.com\\n' > san.ext"], { cwd: dir });
    serverCertificate("webapp-1", "webapp.example.com", "1001");
    serverCertificate("webapp-2", "webapp.example.com", "1002");
    serverCertificate("mutual", "mutual.example.com", "2001");
    // Client certificates: one from the CA the MUTUAL server trusts, one from another CA.
    for (const ca of ["clients-ca", "other-ca"]) {
      openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", `/CN=${ca}`, "-keyout", `${ca}.key`, "-out", `${ca}.crt`);
      openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=client", "-keyout", `${ca}-client.key`, "-out", `${ca}-client.csr`);
      openssl("x509", "-req", "-in", `${ca}-client.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "1", "-out", `${ca}-client.crt`);
    }

    upstream = await startUpstream({ name: "webapp" });
    port = await freePort();
    cluster = await startKubeCluster({ istioCrds: true });
    await cluster.namespace(NAMESPACE);
    await cluster.apply([
      tlsSecret("webapp-credential", "webapp-1"),
      // A generic Secret with the CA clients must chain to: MUTUAL.
      tlsSecret("mutual-credential", "mutual", { "ca.crt": "clients-ca.crt" }),
    ]);
    await cluster.apply(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: webapp, namespace: ${NAMESPACE} }
spec:
  hosts: [webapp.internal]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${upstream.port} } }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gateway, namespace: ${NAMESPACE} }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: https-webapp, protocol: HTTPS }
    hosts: [webapp.example.com]
    tls: { mode: SIMPLE, credentialName: webapp-credential }
  - port: { number: ${port}, name: https-mutual, protocol: HTTPS }
    hosts: [mutual.example.com]
    tls: { mode: MUTUAL, credentialName: mutual-credential }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: webapp, namespace: ${NAMESPACE} }
spec:
  hosts: [webapp.example.com, mutual.example.com]
  gateways: [gateway]
  http: [{ route: [{ destination: { host: webapp.internal } }] }]
`);
    // The control plane runs as the service account of examples/kubernetes/, with exactly its rules: the named Secrets
    // and nothing else of theirs (a Secret it may not read is there too).
    await cluster.apply(readFileSync(join(EXAMPLES, "rbac.yaml"), "utf8"));
    await cluster.apply(readFileSync(join(EXAMPLES, "gateway-credentials.yaml"), "utf8"));
    await cluster.apply({ apiVersion: "v1", kind: "Secret", metadata: { name: "database-password", namespace: NAMESPACE }, stringData: { password: "not for skiff" } });
    const config = loadKubeConfig(await cluster.serviceAccountKubeconfig("skiff-system", "skiff"));
    controlPlane = await startControlPlane({ kubernetes: { config }, xdsPort: 0, httpPort: 0, log: (line) => log.push(line), security: { plaintext: true } });
    const tracked = { description: "control plane (kubernetes)", stop: () => controlPlane.stop(), logTail: () => log.slice(-40).join("\n") };
    track(tracked);
    envoy = await startEnvoy({ bootstrap: bootstrap({ ...GATEWAY, namespace: NAMESPACE, xdsPort: controlPlane.xds.port, adminPort: 0 }) });
    untrack(tracked);
  }, 400_000);

  afterAll(async () => {
    await envoy?.stop();
    await controlPlane?.stop();
    await cluster?.stop();
    await upstream?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("serves the kubernetes.io/tls Secret named by credentialName; MUTUAL takes the CA from the Secret's ca.crt", async () => {
    await eventually(async () => expect(await get("webapp.example.com")).toEqual({ status: 200, upstream: "webapp", serial: "1001" }), 60_000);
    const client = { cert: pem("clients-ca-client.crt"), key: pem("clients-ca-client.key") };
    expect(await get("mutual.example.com", client)).toEqual({ status: 200, upstream: "webapp", serial: "2001" });
    // No client certificate, or one from a CA the Secret does not name: the handshake fails.
    await expect(get("mutual.example.com")).rejects.toThrow();
    await expect(get("mutual.example.com", { cert: pem("other-ca-client.crt"), key: pem("other-ca-client.key") })).rejects.toThrow();
    // The private key never leaves through the debug page.
    const dump = JSON.stringify(await (await fetch(`http://127.0.0.1:${controlPlane.modules.port}/debug/config_dump?proxy=${GATEWAY.nodeId}`)).json());
    expect(dump).toContain("kubernetes://webapp-credential");
    expect(dump).not.toContain(pem("webapp-1.key").toString().split("\n")[1]);
    // Everything it needed, its rules allowed (an informer refused would log HTTP 403 and retry).
    expect(log.filter((line) => line.includes("HTTP 403"))).toEqual([]);
    const allowed = (name: string) =>
      cluster.request("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        method: "POST",
        contentType: "application/json",
        body: JSON.stringify({
          apiVersion: "authorization.k8s.io/v1",
          kind: "SubjectAccessReview",
          spec: { user: "system:serviceaccount:skiff-system:skiff", resourceAttributes: { namespace: NAMESPACE, verb: "get", resource: "secrets", name } },
        }),
      });
    expect(JSON.parse((await allowed("webapp-credential")).body).status.allowed).toBe(true);
    expect(JSON.parse((await allowed("database-password")).body).status.allowed).toBeFalsy();
  });

  it("a renewed Secret reaches Envoy while requests flow, and none fails", async () => {
    const answers: Answer[] = [];
    const failures: string[] = [];
    let running = true;
    // Four clients, each request on a new connection (a new handshake), until the new certificate has been seen a while.
    const clients = Array.from({ length: 4 }, async () => {
      while (running) {
        try {
          answers.push(await get("webapp.example.com"));
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    });
    let listenersModified: number | undefined;
    try {
      await eventually(async () => expect(answers.length).toBeGreaterThan(20), 30_000);
      listenersModified = await envoy.stat("listener_manager.listener_modified");
      await cluster.apply(tlsSecret("webapp-credential", "webapp-2"));
      await eventually(async () => expect(answers.slice(-20).every((answer) => answer.serial === "1002")).toBe(true), 60_000);
    } finally {
      running = false;
      await Promise.all(clients);
    }
    expect(failures).toEqual([]);
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    expect(new Set(answers.map((answer) => answer.serial))).toEqual(new Set(["1001", "1002"]));
    // Only the secret changed: the listener was not replaced (nothing drained), the handshakes took the new certificate.
    expect(await envoy.stat("listener_manager.listener_modified")).toBe(listenersModified);
  });

  it("a server whose Secret is missing is left out with a note, and comes when the Secret is created", async () => {
    await cluster.delete({ apiVersion: "v1", kind: "Secret", metadata: { name: "mutual-credential", namespace: NAMESPACE } });
    await eventually(async () => expect(controlPlane.xds.status().find((proxy) => proxy.nodeId === GATEWAY.nodeId)?.notes?.join("\n")).toMatch(/no usable Secret mutual-credential in namespace shop/), 30_000);
    // The other server keeps serving.
    expect((await get("webapp.example.com")).status).toBe(200);
    await cluster.apply(tlsSecret("mutual-credential", "mutual", { "ca.crt": "clients-ca.crt" }));
    const client = { cert: pem("clients-ca-client.crt"), key: pem("clients-ca-client.key") };
    await eventually(async () => expect((await get("mutual.example.com", client)).status).toBe(200), 60_000);
  });
});
