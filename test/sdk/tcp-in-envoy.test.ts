// The TCP API in a real Envoy (a Wasm network filter in front of tcp_proxy) and in the emulator: the tcp-probe module
// (sdk/fixtures/tcp-probe) holds client bytes until a newline, upper-cases them, and marks what the upstream sends
// back. Both sides must see the same bytes and counts. The same VM also serves the plugin as an HTTP filter on a
// second listener, so it holds HTTP and TCP contexts side by side.
import { type Server, type Socket, connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";

/** What the echo upstream received, per connection, in order. */
const received: string[] = [];

async function startEcho(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket: Socket) => {
    const index = received.push("") - 1;
    socket.on("data", (data) => {
      received[index] += data.toString();
      socket.write(data);
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

function tcpBootstrap(module: string, echoPort: number): Record<string, unknown> {
  const vmConfig = { vm_id: "tcp-probe", runtime: "envoy.wasm.runtime.v8", code: { local: { filename: module } } };
  return {
    static_resources: {
      listeners: [{
        name: "http",
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        filter_chains: [{
          filters: [{
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              stat_prefix: "http",
              route_config: { virtual_hosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200 } }] }] },
              http_filters: [
                {
                  name: "skiff.tcp-probe",
                  typed_config: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    config: { name: "tcp-probe", root_id: "tcp-probe", vm_config: vmConfig },
                  },
                },
                { name: "envoy.filters.http.router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
              ],
            },
          }],
        }],
      }, {
        name: "tcp",
        address: { socket_address: { address: "127.0.0.1", port_value: 0 } },
        filter_chains: [{
          filters: [
            {
              name: "skiff.tcp-probe",
              typed_config: {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                config: { name: "tcp-probe", root_id: "tcp-probe", vm_config: vmConfig },
              },
            },
            {
              name: "envoy.filters.network.tcp_proxy",
              typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", stat_prefix: "tcp", cluster: "echo" },
            },
          ],
        }],
      }],
      clusters: [{
        name: "echo",
        type: "STATIC",
        connect_timeout: "1s",
        load_assignment: { cluster_name: "echo", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: echoPort } } } }] }] },
      }],
    },
  };
}

/** Sends each chunk (waiting a little between them so they arrive as separate reads), then collects the answer until
 * `expected` bytes came back. */
async function converse(port: number, chunks: string[], expected: number): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  let answer = "";
  socket.on("data", (data) => (answer += data.toString()));
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  for (const chunk of chunks) {
    socket.write(chunk);
    await sleep(50);
  }
  for (let i = 0; i < 200 && answer.length < expected; i++) await sleep(25);
  socket.end();
  await new Promise((resolve) => socket.once("close", resolve));
  return answer;
}

describeE2E("the TCP API in Envoy and in the emulator", () => {
  let echo: { server: Server; port: number };
  let envoy: Envoy;
  let port: number;
  let httpPort: number;
  let vm: Emulator;

  beforeAll(async () => {
    echo = await startEcho();
    const module = await fixtureModule("tcp-probe");
    envoy = await startEnvoy({ bootstrap: tcpBootstrap(module, echo.port) });
    port = await envoy.listenerPort("tcp");
    httpPort = await envoy.listenerPort("http");
    vm = await Emulator.load(module);
  });

  afterAll(async () => {
    await envoy?.stop();
    await new Promise((resolve) => echo?.server.close(resolve));
  });

  it("holds a partial line, rewrites it, and marks the answer, in both", async () => {
    const chunks = ["hel", "lo\n"];
    const answer = await converse(port, chunks, "upstream: HELLO\n".length);
    const upstreamSaw = received.at(-1);

    const connection = vm.tcp();
    const actions = chunks.map((chunk) => connection.sendDownstreamData(chunk));
    expect(actions).toEqual(["pause", "continue"]);
    connection.sendUpstreamData(connection.downstream.received);
    connection.closeDownstream("remote");
    connection.closeUpstream();

    expect(upstreamSaw).toBe("HELLO\n");
    expect(connection.downstream.received).toBe(upstreamSaw);
    expect(answer).toBe("upstream: HELLO\n");
    expect(connection.upstream.received).toBe(answer);
  });

  it("counts bytes per direction the same way", async () => {
    for (let i = 0; i < 100 && (await envoy.stat("wasmcustom.skiff_tcp_probe.upstream_bytes")) === undefined; i++) await sleep(25);
    expect(await envoy.stat("wasmcustom.skiff_tcp_probe.downstream_bytes")).toBe(vm.metric("skiff_tcp_probe.downstream_bytes"));
    expect(await envoy.stat("wasmcustom.skiff_tcp_probe.upstream_bytes")).toBe(vm.metric("skiff_tcp_probe.upstream_bytes"));
  });

  it("serves HTTP streams from the same plugin while connections are open, in both", async () => {
    const socket = connect(port, "127.0.0.1");
    const closed = new Promise((resolve) => socket.once("close", resolve));
    let answer = "";
    socket.on("data", (data) => (answer += data.toString()));
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    socket.write("open\n");
    for (let i = 0; i < 200 && answer.length < "upstream: OPEN\n".length; i++) await sleep(25);
    const response = await send(httpPort, {});
    socket.end();
    await closed;

    const connection = vm.tcp();
    const stream = vm.http();
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "x" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(connection.sendDownstreamData("open\n")).toBe("continue");
    connection.closeDownstream();
    connection.closeUpstream();

    expect(answer).toBe("upstream: OPEN\n");
    expect(response.headers["x-tcp-probe"]).toBe("http");
    expect(stream.responseHeaders.get("x-tcp-probe")).toBe("http");
    expect(connection.downstream.received).toBe("OPEN\n");
  });

  it("reports the client's close to the filter", async () => {
    await envoy.waitForLog(/tcp-probe: downstream closed by (remote|local)/);
    expect(vm.logMessages("info")).toContain("tcp-probe: downstream closed by remote");
  });
});
