// DestinationRule `credentialName` on a sidecar, from Kubernetes Secrets, as Istio reads it: with a workloadSelector, a
// sidecar originates MUTUAL TLS with the client certificate of the Secret of that name in its own namespace (a generic
// Secret with tls.crt, tls.key and ca.crt), served to Envoy by SDS as `kubernetes://<name>`; the upstream sees that
// certificate; a renewed Secret reaches Envoy while requests flow, none failing; a Secret of another namespace is
// refused for the sidecar (its traffic fails, a note says why) and never read. A real kube-apiserver + etcd, the control
// plane with the rules of examples/kubernetes/ (named Secrets only), a real sidecar Envoy on the host (no capture:
// listeners on 127.0.0.1 per service port), an HTTPS upstream on 127.0.0.1 that requires a client certificate.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import type { ProxyIdentity } from "../../control/resources.js";
import { loadKubeConfig } from "../../control/sources/kubernetes/index.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type KubeCluster, startKubeCluster } from "../harness/kube-apiserver.js";
import { track, untrack } from "../harness/processes.js";
import { eventually, freePort } from "../scenarios/mesh.js";

const NAMESPACE = "shop";
const EXAMPLES = join(PROJECT_ROOT, "examples", "kubernetes");
const HOST = "payments.shop.svc.cluster.local";
const ELSEWHERE = "ledger.shop.svc.cluster.local";
const SIDECAR: ProxyIdentity = { nodeId: "webapp-sidecar", role: "sidecar", labels: { app: "webapp" }, namespace: NAMESPACE, ips: [], interceptionMode: "NONE" };

describeE2E("Kubernetes: a sidecar's client certificate from a Secret (DestinationRule credentialName), by SDS", () => {
  let cluster: KubeCluster;
  let controlPlane: ControlPlane;
  let envoy: Envoy;
  let upstream: Server;
  const ports = { payments: 0, ledger: 0 };
  let dir: string;
  const log: string[] = [];
  const pem = (file: string) => readFileSync(join(dir, file));
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });

  /** A certificate `<base>.crt`/`.key` for `cn` signed by `ca`, with a known serial (and `extfile`'s extensions). */
  const certificate = (base: string, cn: string, ca: string, serial: string, extfile?: string) => {
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${cn}`, "-keyout", `${base}.key`, "-out", `${base}.csr`);
    openssl("x509", "-req", "-in", `${base}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-set_serial", `0x${serial}`, "-days", "1", "-out", `${base}.crt`, ...(extfile ? ["-extfile", extfile] : []));
  };
  /** A generic Secret as a user writes it: the client certificate and key, and the CA that checks the server. */
  const clientSecret = (name: string, namespace: string, base: string) => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace },
    type: "Opaque",
    data: { "tls.crt": pem(`${base}.crt`).toString("base64"), "tls.key": pem(`${base}.key`).toString("base64"), "ca.crt": pem("server-ca.crt").toString("base64") },
  });
  /** A request through the sidecar; the upstream answers with the serial of the client certificate it was shown. */
  const call = (host: string, port: number) => send(port, { headers: { host } });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-k8s-sidecar-credentials-"));
    for (const ca of ["server-ca", "clients-ca"]) {
      openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", `/CN=${ca}`, "-keyout", `${ca}.key`, "-out", `${ca}.crt`);
    }
    execFileSync("sh", ["-c", `printf 'subjectAltName=DNS:${HOST},DNS:${ELSEWHERE}\\n' > san.ext`], { cwd: dir });
    certificate("payments-server", HOST, "server-ca", "4001", "san.ext");
    certificate("webapp-1", "webapp", "clients-ca", "3001");
    certificate("webapp-2", "webapp", "clients-ca", "3002");

    // The upstream requires a client certificate from clients-ca and names the one it saw; every answer closes the
    // connection, so each request is a new handshake (a renewed certificate shows on the next request).
    upstream = createServer({ key: pem("payments-server.key"), cert: pem("payments-server.crt"), ca: pem("clients-ca.crt"), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.writeHead(200, { "x-client-serial": String(peer.serialNumber).toLowerCase(), "x-client-cn": String(peer.subject?.CN), connection: "close" });
      res.end("ok");
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    const upstreamPort = (upstream.address() as { port: number }).port;
    ports.payments = await freePort();
    ports.ledger = await freePort();

    cluster = await startKubeCluster({ istioCrds: true });
    await cluster.namespace(NAMESPACE);
    await cluster.namespace("finance");
    await cluster.apply([clientSecret("payments-client", NAMESPACE, "webapp-1"), clientSecret("ledger-client", "finance", "webapp-1")]);
    const entry = (name: string, host: string, port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${NAMESPACE} }
spec:
  hosts: [${host}]
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${upstreamPort} } }]
`;
    const rule = (name: string, host: string, credentialName: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: ${NAMESPACE} }
spec:
  host: ${host}
  workloadSelector: { matchLabels: { app: webapp } }
  trafficPolicy: { tls: { mode: MUTUAL, credentialName: ${credentialName} } }
`;
    await cluster.apply(
      [entry("payments", HOST, ports.payments), rule("payments", HOST, "payments-client"), entry("ledger", ELSEWHERE, ports.ledger), rule("ledger", ELSEWHERE, "finance/ledger-client")].join("---\n"),
    );
    // The control plane runs as the service account of examples/kubernetes/, with exactly its rules.
    for (const file of ["rbac.yaml", "sidecar-credentials.yaml"]) await cluster.apply(readFileSync(join(EXAMPLES, file), "utf8"));
    const config = loadKubeConfig(await cluster.serviceAccountKubeconfig("skiff-system", "skiff"));
    controlPlane = await startControlPlane({ kubernetes: { config }, xdsPort: 0, httpPort: 0, log: (line) => log.push(line), security: { plaintext: true } });
    const tracked = { description: "control plane (kubernetes)", stop: () => controlPlane.stop(), logTail: () => log.slice(-40).join("\n") };
    track(tracked);
    envoy = await startEnvoy({ bootstrap: bootstrap({ ...SIDECAR, xdsPort: controlPlane.xds.port, adminPort: 0 }) });
    untrack(tracked);
  }, 400_000);

  afterAll(async () => {
    await envoy?.stop();
    await controlPlane?.stop();
    await cluster?.stop();
    if (upstream) await new Promise((resolve) => upstream.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("originates MUTUAL TLS with the Secret's client certificate, and the upstream sees it", async () => {
    await eventually(async () => {
      const answer = await call(HOST, ports.payments);
      expect(answer.status).toBe(200);
      expect(answer.headers).toMatchObject({ "x-client-serial": "3001", "x-client-cn": "webapp" });
    }, 60_000);
    // Envoy got it by SDS under Istio's name, from the control plane; the private key is not on the debug page.
    const dump = JSON.stringify(await (await fetch(`http://127.0.0.1:${controlPlane.modules.port}/debug/config_dump?proxy=${SIDECAR.nodeId}`)).json());
    expect(dump).toContain("kubernetes://payments-client");
    expect(dump).toContain("kubernetes://payments-client-cacert");
    expect(dump).not.toContain(pem("webapp-1.key").toString().split("\n")[1]);
    expect(log.filter((line) => line.includes("HTTP 403"))).toEqual([]);
  });

  it("a Secret in another namespace is refused for the sidecar: its traffic fails, a note says why, and it is never read", async () => {
    expect((await call(ELSEWHERE, ports.ledger)).status).toBe(503);
    const notes = controlPlane.xds.status().find((proxy) => proxy.nodeId === SIDECAR.nodeId)?.notes?.join("\n");
    expect(notes).toContain(
      `DestinationRule ${NAMESPACE}/ledger for ${ELSEWHERE}: credentialName finance/ledger-client names a Secret in namespace finance, and a proxy may use only Secrets of its own namespace (${NAMESPACE})`,
    );
    // Not even asked for: the control plane's rules would refuse it (a refused informer logs HTTP 403).
    expect(log.filter((line) => line.includes("HTTP 403"))).toEqual([]);
    // The same name in the sidecar's own namespace is what Istio would use: once it exists, the traffic flows.
    await cluster.apply(readFileSync(join(EXAMPLES, "sidecar-credentials.yaml"), "utf8").replaceAll("payments-client", "ledger-client").replaceAll("skiff-sidecar-credentials", "skiff-ledger-credentials"));
    await cluster.apply(clientSecret("ledger-client", NAMESPACE, "webapp-1"));
    await cluster.apply(
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ledger, namespace: ${NAMESPACE} }
spec:
  host: ${ELSEWHERE}
  workloadSelector: { matchLabels: { app: webapp } }
  trafficPolicy: { tls: { mode: MUTUAL, credentialName: ledger-client } }
`,
    );
    await eventually(async () => expect((await call(ELSEWHERE, ports.ledger)).headers["x-client-serial"]).toBe("3001"), 60_000);
  });

  it("a renewed Secret reaches Envoy while requests flow, and none fails", async () => {
    const serials: string[] = [];
    const failures: string[] = [];
    let running = true;
    const clients = Array.from({ length: 4 }, async () => {
      while (running) {
        try {
          const answer = await call(HOST, ports.payments);
          if (answer.status === 200) serials.push(answer.headers["x-client-serial"]!);
          else failures.push(`status ${answer.status}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    });
    try {
      await eventually(async () => expect(serials.length).toBeGreaterThan(20), 30_000);
      await cluster.apply(clientSecret("payments-client", NAMESPACE, "webapp-2"));
      await eventually(async () => expect(serials.slice(-20).every((serial) => serial === "3002")).toBe(true), 60_000);
    } finally {
      running = false;
      await Promise.all(clients);
    }
    expect(failures).toEqual([]);
    expect(new Set(serials)).toEqual(new Set(["3001", "3002"]));
  });
});
