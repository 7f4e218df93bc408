// Istio's TCP metrics from the istio-stats filter, which the control plane puts just before every tcp_proxy (as
// istiod places Istio's stats filter): a gateway TCP server routes connections to a ServiceEntry endpoint that reads
// a line and answers with one. The gateway's /stats/prometheus counts the connections opened and closed and the
// bytes each way, with Istio's labels; the destination is named from the endpoint's istio.workload metadata (TCP has
// no header exchange).
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeE2E } from "../harness/e2e.js";
import { metricValue, parseMetrics } from "../harness/metrics-text.js";
import { track, untrack } from "../harness/processes.js";
import { eventually, freePort, GATEWAY, type Mesh, startMesh } from "../scenarios/mesh.js";

const REQUEST = "ping\n";
const ANSWER = "pong from db v1\n";

/** A server that answers the first line of each connection with ANSWER and closes. */
async function startPongServer(): Promise<{ port: number; description: string; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", () => socket.end(ANSWER));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const pong = {
    port: (server.address() as { port: number }).port,
    description: "tcp pong server",
    stop: async () => {
      untrack(pong);
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  track(pong);
  return pong;
}

/** One connection through the gateway: sends REQUEST, reads until the server closes. */
function exchange(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.write(REQUEST));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("end", () => resolve(Buffer.concat(chunks).toString()));
    socket.once("error", reject);
  });
}

describeE2E("istio-stats: Istio's TCP metrics on tcp_proxy chains", () => {
  let mesh: Mesh;
  let pong: Awaited<ReturnType<typeof startPongServer>>;
  let gatewayPort: number;

  beforeAll(async () => {
    pong = await startPongServer();
    gatewayPort = await freePort();
    mesh = await startMesh(
      {
        "db.yaml": `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: tcp-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${gatewayPort}, name: tcp, protocol: TCP }
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: default }
spec:
  hosts: ["*"]
  gateways: [tcp-gateway]
  tcp:
  - route:
    - destination: { host: db }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: default }
spec:
  hosts: [db.default.svc.cluster.local]
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints:
  - { address: 127.0.0.1, ports: { tcp: ${pong.port} }, labels: { app: db, version: v1 } }
`,
      },
      GATEWAY,
    );
    await eventually(async () => expect(await exchange(gatewayPort)).toBe(ANSWER), 30_000);
  });

  afterAll(async () => {
    await mesh?.stop();
    await pong?.stop();
  });

  it("counts connections and bytes each way with Istio's labels", async () => {
    const labels = { reporter: "source", request_protocol: "tcp", source_workload: "istio-ingressgateway", destination_service: "db.default.svc.cluster.local", destination_service_name: "db", destination_workload: "db-v1", destination_app: "db", destination_version: "v1" };
    const metrics = async () => parseMetrics(await mesh.envoy.admin("/stats/prometheus"));
    // Connections are counted when they close; wait until the one of beforeAll is.
    await eventually(async () => expect(metricValue(await metrics(), "istio_tcp_connections_closed_total", labels)).toBeGreaterThan(0));
    const before = await metrics();
    for (let i = 0; i < 5; i++) expect(await exchange(gatewayPort)).toBe(ANSWER);
    await eventually(async () => {
      const after = await metrics();
      const added = (name: string) => metricValue(after, name, labels) - metricValue(before, name, labels);
      expect({
        opened: added("istio_tcp_connections_opened_total"),
        closed: added("istio_tcp_connections_closed_total"),
        // Istio's directions: received from the downstream (the request), sent to it (the answer).
        received: added("istio_tcp_received_bytes_total"),
        sent: added("istio_tcp_sent_bytes_total"),
      }).toEqual({ opened: 5, closed: 5, received: 5 * REQUEST.length, sent: 5 * ANSWER.length });
    });
    // No HTTP metrics for TCP traffic.
    expect(metricValue(await metrics(), "istio_requests_total", { destination_service_name: "db" })).toBe(0);
  });
});
