// `skiff agent` beside a real Envoy, against a secured control plane: the agent gets a certificate with a bootstrap
// token, relays Envoy's xDS over mTLS (the gateway is configured from YAML through it), serves the workload
// certificate by SDS under Istio's name `default`, and rotates it under steady load with no failed request and no
// Envoy restart. A CA restart does not disturb it. The key never appears in what the agent sends the CA.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent as HttpAgent } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { Server, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Agent, type AgentOptions } from "../../control/agent/agent.js";
import { requestCertificate } from "../../control/agent/certificates.js";
import { SDS_CLUSTER } from "../../control/bootstrap/bootstrap.js";
import { CertificateAuthority } from "../../control/ca/authority.js";
import { BootstrapTokens } from "../../control/ca/tokens.js";
import { certificateService, type CertificateRequest, type CertificateResponse } from "../../control/ca/protocol.js";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { MiB, moduleVariant } from "../harness/wasm-modules.js";
import { freePort, gatewayRoute, serviceEntry } from "../scenarios/mesh.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";

/** A static TLS listener presenting the SDS secret `default` (the workload certificate), answering 200. */
function tlsListener(): Record<string, unknown> {
  return {
    name: "workload-tls",
    address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
    filter_chains: [
      {
        transport_socket: {
          name: "envoy.transport_sockets.tls",
          typed_config: {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            common_tls_context: {
              tls_certificate_sds_secret_configs: [
                {
                  name: "default",
                  sds_config: {
                    api_config_source: { api_type: "GRPC", grpc_services: [{ envoy_grpc: { cluster_name: SDS_CLUSTER } }], transport_api_version: "V3" },
                    resource_api_version: "V3",
                  },
                },
              ],
            },
          },
        },
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: "workload_tls",
              route_config: { virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200 } }] }] },
              http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
            },
          },
        ],
      },
    ],
  };
}

/** One request on a new TLS connection, trusting the mesh root; the serial and SAN of the certificate Envoy showed. */
function tlsRequest(port: number, rootPem: string): Promise<{ status: number; serial: string; san: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: "127.0.0.1", port, path: "/", agent: false, ca: rootPem, checkServerIdentity: () => undefined },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, serial: peer.serialNumber.toLowerCase(), san: peer.subjectaltname ?? "" }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const normalSerial = (serial: string) => serial.toLowerCase().replace(/^0+/, "");

describeE2E("skiff agent: certificates by SDS, xDS relayed over mTLS", () => {
  let dir: string;
  let controlPlane: ControlPlane;
  let agent: Agent;
  let envoy: Envoy;
  let upstream: Upstream;
  let gatewayPort: number;
  const cpLog: string[] = [];
  const agentLog: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-agent-"));
    upstream = await startUpstream({ name: "catalog" });
    gatewayPort = await freePort();
    writeFileSync(join(dir, "mesh.yaml"), [gatewayRoute(gatewayPort, "catalog.example.com", "catalog"), serviceEntry("catalog", 3000, { v1: upstream.port })].join("---\n"));
    controlPlane = await startControlPlane({ configDir: dir, xdsPort: 0, httpPort: 0, log: (line) => cpLog.push(line), security: { dataDir: join(dir, "data") } });
    const options: AgentOptions = {
      dir: join(dir, "agent"),
      address: `127.0.0.1:${controlPlane.xds.port}`,
      rootPem: controlPlane.ca!.rootPem,
      token: () => controlPlane.tokens!.issue({ namespace: "istio-system", serviceAccount: "ingressgateway" }, 600),
      namespace: "istio-system",
      serviceAccount: "ingressgateway",
      trustDomain: "cluster.local",
      // Renewals are triggered by the test (agent.renew()), so that a loaded machine cannot let a certificate expire
      // mid-test; the timer that schedules them is tested on its own below.
      ttlSeconds: 600,
      node: { nodeId: "ingressgateway-1", role: "gateway", labels: { istio: "ingressgateway" } },
      log: (line) => agentLog.push(line),
    };
    agent = await Agent.start(options);
    const bootstrap = agent.bootstrap(0);
    (bootstrap.static_resources as { listeners?: unknown[] }).listeners = [tlsListener()];
    envoy = await startEnvoy({ bootstrap });
  });

  afterAll(async () => {
    await envoy?.stop();
    await agent?.stop();
    await controlPlane?.stop();
    await upstream?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("configures the gateway from YAML through the agent's relay, authenticated by the workload certificate", async () => {
    await expect.poll(async () => (await send(gatewayPort, { headers: { host: "catalog.example.com" } }).catch(() => ({ status: 0 }))).status, { timeout: 15_000 }).toBe(200);
    expect(cpLog.some((line) => line.includes("CA: signed a certificate for spiffe://cluster.local/ns/istio-system/sa/ingressgateway (bootstrap token"))).toBe(true);
    expect(cpLog.some((line) => line.includes("ingressgateway-1: connected (sotw, role gateway)"))).toBe(true);
  });

  it("serves the workload certificate to Envoy by SDS and rotates it under steady load: no failure, no restart", async () => {
    const port = await envoy.listenerPort("workload-tls");
    const first = await tlsRequest(port, controlPlane.ca!.rootPem);
    expect(first.san).toBe("URI:spiffe://cluster.local/ns/istio-system/sa/ingressgateway");
    const uptime = async () => parseFloat((JSON.parse(await envoy.admin("/server_info")) as { uptime_current_epoch: string }).uptime_current_epoch);
    const uptimeBefore = await uptime();
    const serials = new Set<string>();
    const failures: string[] = [];
    let requests = 0;
    const deadline = Date.now() + 8000;
    // Four clients, each a new TLS connection per request, for 8 s, while the agent renews three times.
    let renewing = true;
    const renewals = (async () => {
      for (let i = 0; i < 3; i++) {
        await sleep(2000);
        await agent.renew();
      }
      renewing = false;
    })();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (renewing || Date.now() < deadline) {
          requests++;
          try {
            const result = await tlsRequest(port, controlPlane.ca!.rootPem);
            if (result.status !== 200) failures.push(`status ${result.status}`);
            serials.add(normalSerial(result.serial));
          } catch (error) {
            failures.push((error as Error).message);
          }
        }
      }),
    );
    await renewals;
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(100);
    expect(serials.size).toBeGreaterThanOrEqual(3);
    // Envoy ends up presenting the latest certificate.
    await expect.poll(async () => normalSerial((await tlsRequest(port, controlPlane.ca!.rootPem)).serial)).toBe(normalSerial(agent.current.serial));
    // The same Envoy process throughout (its uptime went on growing).
    expect(await uptime()).toBeGreaterThanOrEqual(uptimeBefore + 7);
    // Renewals authenticate with the current certificate, not the token.
    expect(cpLog.some((line) => /CA: signed a certificate for .*ingressgateway \(certificate/.test(line))).toBe(true);
  });

  it("relays xDS responses of any size: a WasmPlugin module over grpc-js's 4 MiB default reaches Envoy by ECDS", async () => {
    // Every module travels inline in ECDS, so the relay receives one message as large as the module.
    mkdirSync(join(dir, "modules"), { recursive: true });
    writeFileSync(join(dir, "modules", "hello-6mib.wasm"), moduleVariant(readFileSync(join(PROJECT_ROOT, "build/filters/hello.wasm")), "large", 6 * MiB));
    writeFileSync(
      join(dir, "hello.yaml"),
      `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: hello, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: modules/hello-6mib.wasm
  pluginConfig: { greeting: large }
`,
    );
    const greeting = async () => (await send(gatewayPort, { headers: { host: "catalog.example.com" }, agent: new HttpAgent() }).catch(() => undefined))?.headers["x-skiff-hello"];
    await expect.poll(greeting, { timeout: 60_000, interval: 500 }).toBe('{"greeting":"large"}');
    expect(agentLog.filter((line) => line.includes("xDS relay: stream ended"))).toEqual([]);
    rmSync(join(dir, "hello.yaml"));
    await expect.poll(greeting, { timeout: 30_000, interval: 500 }).toBeUndefined();
  });

  it("keeps working across a CA restart: the root stays, the certificate renews against the restarted CA", async () => {
    const before = agent.current.serial;
    const port = controlPlane.xds.port;
    await controlPlane.stop();
    controlPlane = await startControlPlane({ configDir: dir, xdsPort: port, httpPort: 0, log: (line) => cpLog.push(line), security: { dataDir: join(dir, "data") } });
    await agent.renew();
    expect(agent.current.serial).not.toBe(before);
    const result = await tlsRequest(await envoy.listenerPort("workload-tls"), controlPlane.ca!.rootPem);
    expect(result.status).toBe(200);
    await expect.poll(async () => (await send(gatewayPort, { headers: { host: "catalog.example.com" } }).catch(() => ({ status: 0 }))).status, { timeout: 20_000 }).toBe(200);
  });
});

it("renews on its own at half the certificate's lifetime", async () => {
  const dir = mkdtempSync(join(tmpdir(), "skiff-agent-timer-"));
  const cpLog: string[] = [];
  const controlPlane = await startControlPlane({ configDir: dir, xdsPort: 0, httpPort: 0, log: (line) => cpLog.push(line), security: { dataDir: join(dir, "data") } });
  const log: string[] = [];
  const agent = await Agent.start({
    dir: join(dir, "agent"),
    address: `127.0.0.1:${controlPlane.xds.port}`,
    rootPem: controlPlane.ca!.rootPem,
    token: () => controlPlane.tokens!.issue({ namespace: "shop", serviceAccount: "webapp" }, 600),
    namespace: "shop",
    serviceAccount: "webapp",
    trustDomain: "cluster.local",
    ttlSeconds: 4,
    node: { nodeId: "webapp-1", role: "sidecar" },
    log: (line) => log.push(line),
  });
  try {
    const first = agent.current;
    await expect.poll(() => agent.current.serial !== first.serial, { timeout: 15_000 }).toBe(true);
    // Renewed while the first one was still valid, so authenticated by it rather than by the token.
    expect(log.find((line) => line.startsWith("agent: renewed"))).toBeDefined();
    expect(cpLog.some((line) => /CA: signed a certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/webapp \(certificate/.test(line))).toBe(true);
  } finally {
    await agent.stop();
    await controlPlane.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("waits for a control plane that is not up yet, asking again with backoff; a refused token ends it at once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "skiff-agent-wait-"));
  const dataDir = join(dir, "data");
  // The CA's root and token key exist before its control plane runs (as from `skiff ca` or a cacerts Secret).
  const ca = await CertificateAuthority.open({ dataDir, trustDomain: "cluster.local" });
  const tokens = BootstrapTokens.open(dataDir);
  const port = await freePort();
  const options = (token: () => string, log: string[]) => ({
    dir: join(dir, "agent"),
    address: `127.0.0.1:${port}`,
    rootPem: ca.rootPem,
    token,
    namespace: "shop",
    serviceAccount: "webapp",
    trustDomain: "cluster.local",
    node: { nodeId: "webapp-1", role: "sidecar" as const },
    log: (line: string) => log.push(line),
  });
  const log: string[] = [];
  const starting = Agent.start(options(() => tokens.issue({ namespace: "shop", serviceAccount: "webapp" }, 600), log));
  let controlPlane: ControlPlane | undefined;
  let agent: Agent | undefined;
  try {
    await expect.poll(() => log.filter((line) => line.startsWith("agent: no certificate yet")).length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    expect(log[0]).toMatch(/^agent: no certificate yet, asking again in 1000 ms: CA 127\.0\.0\.1:\d+: UNAVAILABLE/);
    expect(log[1]).toMatch(/asking again in 2000 ms/);
    controlPlane = await startControlPlane({ configDir: dir, xdsPort: port, httpPort: 0, log: () => {}, security: { dataDir } });
    agent = await starting;
    expect(agent.current.chainPem).toContain("BEGIN CERTIFICATE");

    // A refusal is not retried: the CA's reason comes back at once.
    const refusedLog: string[] = [];
    await expect(Agent.start({ ...options(() => "not-a-token", refusedLog), dir: join(dir, "refused") })).rejects.toThrow(/UNAUTHENTICATED/);
    expect(refusedLog).toEqual([]);
  } finally {
    await agent?.stop();
    await controlPlane?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

it("never sends the workload's private key: the CA receives a CSR with the public key only", async () => {
  const dir = mkdtempSync(join(tmpdir(), "skiff-agent-key-"));
  const ca = await CertificateAuthority.open({ dataDir: dir, trustDomain: "cluster.local" });
  // A CA endpoint that records every byte it is sent, in front of the real CA.
  const received: Buffer[] = [];
  const server = new Server();
  server.addService(
    { CreateCertificate: { ...certificateService.CreateCertificate, requestDeserialize: (bytes: Buffer) => (received.push(bytes), certificateService.CreateCertificate.requestDeserialize(bytes)) } },
    {
      CreateCertificate: (call: ServerUnaryCall<CertificateRequest, CertificateResponse>, callback: sendUnaryData<CertificateResponse>) => {
        ca.signWorkload(call.request.csr, { namespace: "shop", serviceAccount: "webapp" }).then((chain) => callback(null, { cert_chain: chain }), callback);
      },
    },
  );
  const serving = await import("../../control/ca/serving.js").then(({ ServingCredentials }) => ServingCredentials.start(ca, { ttlSeconds: 600 }));
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", serving, (error, bound) => (error ? reject(error) : resolve(bound))));
  try {
    const certificate = await requestCertificate({
      address: `127.0.0.1:${port}`,
      rootPem: ca.rootPem,
      token: () => "unused-by-this-ca",
      namespace: "shop",
      serviceAccount: "webapp",
      trustDomain: "cluster.local",
    });
    const keyDer = Buffer.from(certificate.keyPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    expect(received).toHaveLength(1);
    // Neither the PEM text nor the key's bytes, nor its private scalar, is anywhere in what was sent.
    const sent = received[0]!;
    expect(sent.includes(Buffer.from(certificate.keyPem))).toBe(false);
    expect(sent.includes(keyDer)).toBe(false);
    const { createPrivateKey } = await import("node:crypto");
    const scalar = Buffer.from(createPrivateKey(certificate.keyPem).export({ format: "jwk" }).d!, "base64url");
    const text = sent.toString("latin1");
    const csrDer = Buffer.from(/-----BEGIN CERTIFICATE REQUEST-----([\s\S]+?)-----END/.exec(text)![1]!.replace(/\s/g, ""), "base64");
    expect(sent.includes(scalar)).toBe(false);
    expect(csrDer.includes(scalar)).toBe(false);
  } finally {
    server.forceShutdown();
    serving.stop();
    await sleep(10);
    rmSync(dir, { recursive: true, force: true });
  }
});
