// gRPC callouts from the probe module (sdk/fixtures/probe) through Envoy to a real gRPC server on 127.0.0.1, and the
// same scenarios in the emulator: a unary call and a bidirectional stream, each resuming the request with what came
// back. This also proves the SDK's encoding of the upstream as an envoy.config.core.v3.GrpcService.
import { type ServerDuplexStream, Server, ServerCredentials, type ServiceDefinition, type handleUnaryCall } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";
import { staticBootstrap } from "../harness/bootstrap.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";
import { probeFilter } from "./probe.js";

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const probeService: ServiceDefinition = {
  Echo: { path: "/skiff.Probe/Echo", requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  Chat: { path: "/skiff.Probe/Chat", requestStream: true, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};

/** The answers, shared by the real server and the emulator's handlers. */
const echo = (request: string, meta: string | undefined): string => `pong:${request}:${meta ?? "no-meta"}`;
const chat = (message: string): string => `echo ${message}`;

describeE2E("gRPC callouts in Envoy and in the emulator", () => {
  let server: Server;
  let backend: Upstream;
  let envoy: Envoy;
  let port: number;
  let vm: Emulator;

  beforeAll(async () => {
    server = new Server();
    const unary: handleUnaryCall<Buffer, Buffer> = (call, callback) =>
      callback(null, Buffer.from(echo(call.request.toString(), call.metadata.get("x-grpc-meta")[0]?.toString())));
    server.addService(probeService, {
      Echo: unary,
      Chat: (call: ServerDuplexStream<Buffer, Buffer>) => {
        call.on("data", (message: Buffer) => call.write(Buffer.from(chat(message.toString()))));
        call.on("end", () => call.end());
      },
    });
    const grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
    backend = await startUpstream({ name: "backend" });
    const bootstrap = staticBootstrap({
      clusters: { backend: { ports: [backend.port] }, "grpc-backend": { ports: [grpcPort], h2c: true } },
      httpFilters: [await probeFilter({ configuration: { cluster: "grpc-backend" } })],
    });
    envoy = await startEnvoy({ bootstrap });
    port = await envoy.listenerPort("ingress");

    vm = await Emulator.load(await fixtureModule("probe"), { pluginConfig: { cluster: "grpc-backend" }, clusters: ["grpc-backend"] });
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    vm.onGrpcCall((call) => call.answer({ status: 0, message: echo(text(call.request), call.metadata.find(([n]) => n === "x-grpc-meta")?.[1]) }));
    vm.onGrpcStream(() => {}, (stream, message) => {
      stream.reply(chat(text(message)));
      // The filter sent end_stream with its last message: answer it, then end the stream as the server does.
      if (stream.localClosed && message === stream.sent.at(-1)) stream.close(0);
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await backend?.stop();
    server?.forceShutdown();
  });

  /** What the upstream saw; the status is "received" for a unary success, else "<code> <message>". */
  async function throughEnvoy(op: string): Promise<Record<string, string | undefined>> {
    const path = `/grpc-${op}`;
    const response = await send(port, { path, headers: { "x-probe": op } });
    expect(response.status).toBe(200);
    const seen = backend.requests.find((r) => r.path === path)!;
    return { message: seen.headers["x-grpc-message"], status: seen.headers["x-grpc-status"] };
  }

  function throughEmulator(op: string): Record<string, string | undefined> {
    const stream = vm.http();
    stream.sendRequestHeaders({ ":method": "GET", ":path": `/grpc-${op}`, ":authority": "a", "x-probe": op }, { endOfStream: true });
    const messages = stream.requestHeaders.getAll("x-grpc-message");
    return { message: messages.length > 0 ? messages.join(", ") : undefined, status: stream.requestHeaders.get("x-grpc-status") ?? undefined };
  }

  it("makes a unary call with metadata and resumes the request with the answer", async () => {
    const inEnvoy = await throughEnvoy("grpc");
    expect(inEnvoy).toEqual({ message: "pong:ping:m", status: "received" });
    expect(throughEmulator("grpc")).toEqual(inEnvoy);
  });

  it("carries messages both ways on a stream and sees it close with OK", async () => {
    const inEnvoy = await throughEnvoy("grpc-stream");
    expect(inEnvoy.message).toBe("echo one, echo two");
    // The close's message is Envoy's own wording; the status code is what a filter acts on.
    expect(inEnvoy.status?.split(" ")[0]).toBe("0");
    const inEmulator = throughEmulator("grpc-stream");
    expect(inEmulator.message).toBe(inEnvoy.message);
    expect(inEmulator.status?.split(" ")[0]).toBe("0");
  });
});
