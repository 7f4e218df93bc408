// What Istio's TCP metadata exchange (istio-stats, filters/istio-stats/tcp-exchange.ts) adds to a TCP connection
// between two sidecars, as Envoy instructions per connection: a client Envoy (plain TCP listener, istio-stats as the
// source, tcp_proxy to the server over mesh mTLS with SPIFFE certificates from the Skiff CA and ALPN
// istio-peer-exchange) and a server Envoy (mTLS listener, istio-stats as the destination, tcp_proxy to an echo
// server), both under valgrind's callgrind (bench/lib/callgrind.ts). Each connection: connect, send 100 bytes, read the
// echo, close. Variants, the same two Envoys' configuration but for the filter: no filter, istio-stats with
// `exchange: false` (the same path without the exchange: the baseline of the ratio), istio-stats with the exchange.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CertificateAuthority } from "../../control/ca/authority.js";
import { EC_P256, generateKeyPair, privateKeyPem, x509 } from "../../control/ca/x509.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { type Envoy, startEnvoy } from "../../test/harness/envoy.js";
import { callgrindControl, callgrindWrapper, countedWindow } from "../lib/callgrind.js";
import { ENVOY_CPU, pin } from "../lib/session.js";
import { median } from "../lib/stats.js";

export interface TcpExchangeOptions {
  warmupConnections: number;
  windowConnections: number;
  windows: number;
  concurrency: number;
  idleS: number;
}

const MODULE = join(PROJECT_ROOT, "build/filters/istio-stats.wasm");
const PAYLOAD = Buffer.alloc(100, "x");
const TRUST_DOMAIN = "cluster.local";

interface Variant {
  name: string;
  /** istio-stats' `exchange`, or no filter. */
  exchange: boolean | "no filter";
}

const VARIANTS: Variant[] = [
  { name: "no filter", exchange: "no filter" },
  { name: "istio-stats, exchange off", exchange: false },
  { name: "istio-stats, exchange on", exchange: true },
];

interface Files {
  root: string;
  client: { cert: string; key: string };
  server: { cert: string; key: string };
}

/** SPIFFE workload certificates for shop/webapp (client) and shop/db (server) from a Skiff CA, as files. */
async function certificates(dir: string): Promise<Files> {
  const ca = await CertificateAuthority.open({ dataDir: join(dir, "ca"), trustDomain: TRUST_DOMAIN });
  const issue = async (serviceAccount: string) => {
    const keys = await generateKeyPair();
    const uri = `spiffe://${TRUST_DOMAIN}/ns/shop/sa/${serviceAccount}`;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256, extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }])] });
    const chain = await ca.signWorkload(csr.toString("pem"), { namespace: "shop", serviceAccount });
    const cert = join(dir, `${serviceAccount}.pem`);
    const key = join(dir, `${serviceAccount}-key.pem`);
    writeFileSync(cert, chain.slice(0, -1).join(""));
    writeFileSync(key, await privateKeyPem(keys.privateKey), { mode: 0o600 });
    return { cert, key };
  };
  const root = join(dir, "root.pem");
  writeFileSync(root, ca.rootPem);
  return { root, client: await issue("webapp"), server: await issue("db") };
}

function tlsContext(files: Files, side: "client" | "server", alpn: string[]): Record<string, unknown> {
  const { cert, key } = files[side];
  return {
    alpn_protocols: alpn,
    tls_certificates: [{ certificate_chain: { filename: cert }, private_key: { filename: key } }],
    validation_context: { trusted_ca: { filename: files.root }, match_typed_subject_alt_names: [{ san_type: "URI", matcher: { prefix: `spiffe://${TRUST_DOMAIN}/` } }] },
  };
}

function statsFilter(variant: Variant, reporter: "source" | "destination"): Record<string, unknown>[] {
  if (variant.exchange === "no filter") return [];
  const configuration = { reporter, workload: reporter === "source" ? "webapp-v1" : "db-v1", namespace: "shop", app: reporter === "source" ? "webapp" : "db", version: "v1", exchange: variant.exchange };
  return [{
    name: `istio.stats.${reporter}`,
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
      config: {
        name: `istio.stats.${reporter}`,
        vm_config: { vm_id: "istio-stats", runtime: "envoy.wasm.runtime.v8", code: { local: { filename: MODULE } } },
        configuration: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: JSON.stringify(configuration) },
      },
    },
  }];
}

function tcpProxy(cluster: string): Record<string, unknown> {
  return { name: "envoy.filters.network.tcp_proxy", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", stat_prefix: cluster, cluster } };
}

function cluster(name: string, port: number, transportSocket?: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    type: "STATIC",
    connect_timeout: "30s",
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }] },
    ...(transportSocket ? { transport_socket: transportSocket } : {}),
  };
}

function listener(filters: Record<string, unknown>[], transportSocket?: Record<string, unknown>): Record<string, unknown> {
  return {
    name: "tcp",
    address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
    filter_chains: [{ filters, ...(transportSocket ? { transport_socket: transportSocket } : {}) }],
  };
}

function serverBootstrap(variant: Variant, files: Files, echoPort: number): Record<string, unknown> {
  const tls = { name: "envoy.transport_sockets.tls", typed_config: { "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", require_client_certificate: true, common_tls_context: tlsContext(files, "server", ["istio-peer-exchange", "h2", "http/1.1"]) } };
  return { static_resources: { listeners: [listener([...statsFilter(variant, "destination"), tcpProxy("echo")], tls)], clusters: [cluster("echo", echoPort)] } };
}

function clientBootstrap(variant: Variant, files: Files, serverPort: number): Record<string, unknown> {
  const tls = { name: "envoy.transport_sockets.tls", typed_config: { "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", sni: "outbound_.5432_._.db.shop.svc.cluster.local", common_tls_context: tlsContext(files, "client", ["istio-peer-exchange", "istio"]) } };
  return { static_resources: { listeners: [listener([...statsFilter(variant, "source"), tcpProxy("db")])], clusters: [cluster("db", serverPort, tls)] } };
}

async function startEcho(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.on("data", (chunk) => socket.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

/** One connection: connect, send the payload, read its echo whole, close. */
function oneConnection(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const socket = connect(port, "127.0.0.1", () => socket.write(PAYLOAD));
    socket.setTimeout(60_000, () => socket.destroy(new Error("no echo within 60 s")));
    socket.on("data", (chunk: Buffer) => {
      got += chunk.length;
      if (got > PAYLOAD.length) socket.destroy(new Error(`the echo has ${got} bytes, more than the ${PAYLOAD.length} sent: a frame reached the application`));
      else if (got === PAYLOAD.length) socket.end();
    });
    socket.once("close", () => (got === PAYLOAD.length ? resolve() : reject(new Error(`the echo had ${got} of ${PAYLOAD.length} bytes`))));
    socket.once("error", reject);
  });
}

async function connections(port: number, count: number, concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < count) await oneConnection(port);
  }));
}

/** The two Envoys' instructions per connection for one variant: median of the windows, and each window's figure. */
async function measure(variant: Variant, files: Files, echoPort: number, dir: string, options: TcpExchangeOptions, log: (line: string) => void): Promise<{ perConnection: number[]; proof: string }> {
  const dirs = ["server", "client"].map((side) => join(dir, `${variant.exchange}-${side}`));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const envoys: Envoy[] = [];
  try {
    envoys.push(await startEnvoy({ bootstrap: serverBootstrap(variant, files, echoPort), concurrency: 1, wrapper: callgrindWrapper(dirs[0]!), readyTimeoutMs: 180_000 }));
    const serverPort = await envoys[0]!.listenerPort("tcp");
    envoys.push(await startEnvoy({ bootstrap: clientBootstrap(variant, files, serverPort), concurrency: 1, wrapper: callgrindWrapper(dirs[1]!), readyTimeoutMs: 180_000 }));
    const clientPort = await envoys[1]!.listenerPort("tcp");
    for (const envoy of envoys) pin(envoy.pid, ENVOY_CPU);
    await connections(clientPort, options.warmupConnections, options.concurrency);
    for (const envoy of envoys) await callgrindControl(envoy.pid, "-i", "on");
    // Idle cost of both, per second, taken off each window in proportion to its length.
    const idle = await Promise.all(envoys.map((envoy, i) => countedWindow(envoy.pid, dirs[i]!, () => sleep(options.idleS * 1000))));
    const [serverIdle, clientIdle] = idle.map((w) => w.instructions / w.seconds) as [number, number];
    const perConnection: number[] = [];
    for (let w = 0; w < options.windows; w++) {
      // The client's window nests in the server's: each counts the whole exchange of its side.
      let inner = { instructions: 0, seconds: 0 };
      const outer = await countedWindow(envoys[0]!.pid, dirs[0]!, async () => {
        inner = await countedWindow(envoys[1]!.pid, dirs[1]!, () => connections(clientPort, options.windowConnections, options.concurrency));
      });
      const total = outer.instructions - serverIdle * outer.seconds + inner.instructions - clientIdle * inner.seconds;
      perConnection.push(total / options.windowConnections);
      log(`tcp-exchange ${variant.name} window ${w + 1}: ${perConnection.at(-1)!.toFixed(0)} instructions per connection (both Envoys)`);
    }
    // What path the counted connections took: the server names its caller only from the exchange.
    // (Read by hand: the metric names hold the principals' "spiffe://", which the harness's stats() parser skips.)
    const opened = (await envoys[0]!.admin("/stats?filter=istio_tcp_connections_opened_total")).split("\n").filter((line) => line.includes(": "));
    const named = (workload: string) => opened.filter((line) => line.includes(`source_workload=.=${workload};.;`)).reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(": ") + 2)), 0);
    const proof = `the server Envoy served ${await envoys[0]!.stat("tcp.echo.downstream_cx_total")} connections, named the caller webapp-v1 in ${named("webapp-v1")}, unknown in ${named("unknown")}`;
    log(`tcp-exchange ${variant.name}: ${proof}`);
    return { perConnection, proof };
  } finally {
    for (const envoy of envoys) await envoy.stop();
  }
}

export async function runTcpExchange(options: TcpExchangeOptions, log: (line: string) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "skiff-bench-tcp-exchange-"));
  const echo = await startEcho();
  try {
    const files = await certificates(dir);
    const results = new Map<string, number[]>();
    const proofs: string[] = [];
    for (const variant of VARIANTS) {
      const { perConnection, proof } = await measure(variant, files, echo.port, dir, options, log);
      results.set(variant.name, perConnection);
      proofs.push(`- ${variant.name}: ${proof}.`);
    }
    const baseline = median(results.get("istio-stats, exchange off")!);
    const none = median(results.get("no filter")!);
    const rows = VARIANTS.map((variant) => {
      const windows = results.get(variant.name)!;
      const value = median(windows);
      const spread = (Math.max(...windows) - Math.min(...windows)) / 2;
      return `| ${variant.name} | ${Math.round(value).toLocaleString("en-US")} | ±${Math.round(spread).toLocaleString("en-US")} | ${(value - none >= 0 ? "+" : "") + Math.round(value - none).toLocaleString("en-US")} | ${(value / baseline).toFixed(3)}x |`;
    });
    return [
      `Each connection: connect to the client Envoy, 100 bytes sent, their echo read, close; through the client Envoy, mesh mTLS (ECDSA P-256 SPIFFE certificates from the Skiff CA, ALPN istio-peer-exchange) to the server Envoy, to a Node echo server. Both Envoys under callgrind on CPU 0 (--concurrency 1), ${options.concurrency} connections at a time, ${options.warmupConnections} connections of warm-up, then ${options.windows} windows of ${options.windowConnections}; median over windows, ± half-range; each window less both Envoys' idle instructions for its length.`,
      "",
      "| variant | instructions per connection, both Envoys | noise | vs no filter | vs the same path without the exchange |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...rows,
      "",
      "What the counted connections did (every echo was checked byte for byte, so no frame reached an application):",
      ...proofs,
      "",
    ].join("\n");
  } finally {
    await new Promise((resolve) => echo.server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}
