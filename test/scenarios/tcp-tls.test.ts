// Seed scenario "traffic routing with SNI passthrough", and TCP and TLS beside it (issue 8 item 3), in real Envoys
// configured only by the control plane: the seed's sni-passthrough-gateway snippet passes TLS through to a backend
// that terminates it (the client sees the backend's certificate); a TCP server's `tcp` route splits connections by
// weight; a TLS server terminates TLS at the gateway and forwards plain TCP; and Istio's egress gateway pattern takes
// a sidecar's TLS to an external host through an egress gateway (a mesh VirtualService to the gateway, a gateway
// VirtualService out). Certificates are made with openssl; every server is on 127.0.0.1.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Envoy } from "../harness/envoy.js";
import { describeE2E } from "../harness/e2e.js";
import { track, untrack } from "../harness/processes.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, type Mesh, SIDECAR, startMesh } from "./mesh.js";

const SEED_SNIPPET = readFileSync(new URL("../translate/fixtures/gateway-l4/sni-passthrough-gateway.yaml", import.meta.url), "utf8");
const SEED_PORT = 31400;

/** A self-signed certificate for `host` in `<dir>/<base>.crt` / `.key`. */
function selfSigned(dir: string, base: string, host: string): { cert: Buffer; key: Buffer } {
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`, "-keyout", `${base}.key`, "-out", `${base}.crt`], {
    cwd: dir,
    stdio: "ignore",
  });
  return { cert: readFileSync(`${dir}/${base}.crt`), key: readFileSync(`${dir}/${base}.key`) };
}

/** A TCP server that greets each connection with its name and closes it (a server-first protocol). */
async function startGreeter(name: string): Promise<{ port: number; connections: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const greeter = {
    port: 0,
    connections: 0,
    description: `tcp greeter ${name}`,
    stop: async () => {
      untrack(greeter);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server: Server = createServer((socket) => {
    greeter.connections++;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.end(`${name}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  greeter.port = (server.address() as { port: number }).port;
  track(greeter);
  return greeter;
}

/** Connects (TLS when `tls` is given), reads until the server closes, and returns what it said. */
function readGreeting(port: number, tls?: { servername: string; ca: Buffer }): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket: Socket = tls ? tlsConnect({ host: "127.0.0.1", port, servername: tls.servername, ca: tls.ca }) : connect(port, "127.0.0.1");
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("end", () => resolve(Buffer.concat(chunks).toString().trim()));
    socket.once("error", reject);
  });
}

/** An HTTPS request with SNI `servername`; resolves with the status, the answering upstream and the certificate the
 * client was shown. */
function httpsGet(port: number, servername: string, ca: Buffer): Promise<{ status: number; upstream?: string; certificateFor: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, servername, headers: { host: servername }, ca, agent: false }, (res) => {
      const peer = (res.socket as TLSSocket).getPeerCertificate();
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, upstream: res.headers["x-upstream"] as string | undefined, certificateFor: String(peer.subject.CN) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describeE2E("scenario: TCP and TLS through the gateway", () => {
  let mesh: Mesh;
  let backend: Upstream;
  let backendCert: Buffer;
  let gatewayCert: Buffer;
  const certs = mkdtempSync(join(tmpdir(), "skiff-tcp-tls-"));
  const greeters: Array<Awaited<ReturnType<typeof startGreeter>>> = [];
  let ports: { sni: number; tcp: number; tls: number };

  beforeAll(async () => {
    const [v1, v2] = [await startGreeter("v1"), await startGreeter("v2")];
    greeters.push(v1, v2);
    // The backend that terminates the passed-through TLS itself, with its own certificate.
    const backendPair = selfSigned(certs, "backend", "simple-sni-1.istioinaction.io");
    backendCert = backendPair.cert;
    backend = await startUpstream({ name: "simple-tls-service-1", tls: backendPair });
    ports = { sni: await freePort(), tcp: await freePort(), tls: await freePort() };
    mesh = await startMesh((dir) => {
      gatewayCert = selfSigned(dir, "gateway", "db.example.com").cert;
      return {
        // The seed's snippet as it is, but for its port: tests never bind fixed ports.
        "sni-passthrough-gateway.yaml": SEED_SNIPPET.replaceAll(String(SEED_PORT), String(ports.sni)),
        "routes.yaml": `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: simple-sni-1-vs
spec:
  hosts:
  - "simple-sni-1.istioinaction.io"
  gateways:
  - sni-passthrough-gateway
  tls:
  - match:
    - port: ${ports.sni}
      sniHosts:
      - simple-sni-1.istioinaction.io
    route:
    - destination:
        host: simple-tls-service-1
        port:
          number: 80
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: tcp-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${ports.tcp}, name: tcp, protocol: TCP }
    hosts: ["*"]
  - port: { number: ${ports.tls}, name: tls, protocol: TLS }
    hosts: ["db.example.com"]
    tls: { mode: SIMPLE, serverCertificate: gateway.crt, privateKey: gateway.key }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: default }
spec:
  hosts: ["*"]
  gateways: [tcp-gateway]
  tcp:
  - match: [{ port: ${ports.tcp} }]
    route:
    - { destination: { host: db, subset: v1 }, weight: 80 }
    - { destination: { host: db, subset: v2 }, weight: 20 }
  - match: [{ port: ${ports.tls} }]
    route:
    - destination: { host: db, subset: v1 }
`,
        "services.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: simple-tls-service-1, namespace: default }
spec:
  hosts: [simple-tls-service-1.default.svc.cluster.local]
  ports: [{ number: 80, name: tls, protocol: TLS }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { tls: ${backend.port} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: default }
spec:
  hosts: [db.default.svc.cluster.local]
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints:
  - { address: 127.0.0.1, ports: { tcp: ${v1.port} }, labels: { version: v1 } }
  - { address: 127.0.0.1, ports: { tcp: ${v2.port} }, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: db, namespace: default }
spec:
  host: db
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`,
      };
    }, GATEWAY);
  });

  afterAll(async () => {
    await mesh?.stop();
    await backend?.stop();
    for (const greeter of greeters) await greeter.stop();
    rmSync(certs, { recursive: true, force: true });
  });

  it("passes TLS through by SNI to the backend, which terminates it (the seed's sni-passthrough-gateway)", async () => {
    const response = await eventually(() => httpsGet(ports.sni, "simple-sni-1.istioinaction.io", backendCert), 15_000);
    expect(response).toEqual({ status: 200, upstream: "simple-tls-service-1", certificateFor: "simple-sni-1.istioinaction.io" });
    expect(backend.requests.at(-1)?.headers.host).toBe("simple-sni-1.istioinaction.io");
  });

  it("refuses a TLS connection whose SNI no route names", async () => {
    await expect(httpsGet(ports.sni, "other.istioinaction.io", backendCert)).rejects.toThrow();
  });

  it("splits TCP connections by the tcp route's weights (80/20), for a protocol where the server speaks first", async () => {
    const counts: Record<string, number> = {};
    const total = 600;
    for (let batch = 0; batch < total / 20; batch++) {
      const said = await Promise.all(Array.from({ length: 20 }, () => readGreeting(ports.tcp)));
      for (const word of said) counts[word] = (counts[word] ?? 0) + 1;
    }
    expect((counts.v1 ?? 0) + (counts.v2 ?? 0)).toBe(total);
    // 80% of 600 is 480, with a standard deviation of about 10: +-40 is four of them.
    expect(counts.v1).toBeGreaterThanOrEqual(440);
    expect(counts.v1).toBeLessThanOrEqual(520);
  });

  it("terminates TLS with the server's certificate and forwards the plain TCP", async () => {
    expect(await readGreeting(ports.tls, { servername: "db.example.com", ca: gatewayCert })).toBe("v1");
  });
});

describeE2E("scenario: Istio's egress gateway pattern, for TLS", () => {
  let mesh: Mesh;
  let egress: Envoy;
  let external: Upstream;
  let externalCert: Buffer;
  let ports: { app: number; egress: number };

  beforeAll(async () => {
    ports = { app: await freePort(), egress: await freePort() };
    let key: Buffer;
    mesh = await startMesh((dir) => {
      const pair = selfSigned(dir, "external", "api.external.test");
      externalCert = pair.cert;
      key = pair.key;
      return {
        // As Istio's "Egress Gateways" task writes it, with a made-up external host that is only 127.0.0.1.
        "egress.yaml": `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: istio-egressgateway, namespace: default }
spec:
  selector: { istio: egressgateway }
  servers:
  - port: { number: ${ports.egress}, name: tls, protocol: TLS }
    hosts: [api.external.test]
    tls: { mode: PASSTHROUGH }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: egressgateway-for-external, namespace: default }
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: external
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: direct-external-through-egress-gateway, namespace: default }
spec:
  hosts: [api.external.test]
  gateways: [mesh, istio-egressgateway]
  tls:
  - match: [{ gateways: [mesh], port: ${ports.app}, sniHosts: [api.external.test] }]
    route:
    - destination: { host: istio-egressgateway.istio-system.svc.cluster.local, subset: external, port: { number: ${ports.egress} } }
  - match: [{ gateways: [istio-egressgateway], port: ${ports.egress}, sniHosts: [api.external.test] }]
    route:
    - destination: { host: api.external.test, port: { number: ${ports.app} } }
      weight: 100
`,
        "external.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: egressgateway, namespace: istio-system }
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  ports: [{ number: ${ports.egress}, name: tls, protocol: TLS }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1 }]
`,
      };
    }, SIDECAR);
    external = await startUpstream({ name: "external", tls: { cert: externalCert, key: key! } });
    mesh.write(
      "external-api.yaml",
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: external-api, namespace: default }
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  ports: [{ number: ${ports.app}, name: tls, protocol: TLS }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { tls: ${external.port} } }]
`,
    );
    egress = await mesh.startProxy({ nodeId: "egressgateway", role: "gateway", labels: { istio: "egressgateway" }, namespace: "istio-system", ips: [] });
  });

  afterAll(async () => {
    await mesh?.stop();
    await external?.stop();
  });

  it("takes the sidecar's TLS to the external host through the egress gateway, end to end encrypted", async () => {
    // The application (no capture: it calls its sidecar's listener for the external port) speaks TLS to the external
    // host itself; the sidecar routes it by SNI to the egress gateway, which routes it by SNI out.
    const response = await eventually(() => httpsGet(ports.app, "api.external.test", externalCert), 15_000);
    expect(response).toEqual({ status: 200, upstream: "external", certificateFor: "api.external.test" });
    expect(await egress.stat(`listener.127.0.0.1_${ports.egress}.downstream_cx_total`)).toBeGreaterThanOrEqual(1);
    expect(await mesh.envoy.stat(`cluster.outbound|${ports.egress}|external|istio-egressgateway.istio-system.svc.cluster.local.upstream_cx_total`)).toBeGreaterThanOrEqual(1);
  });
});
