// The agent's xDS proxy, as istio-agent's (pkg/istio-agent/xds_proxy.go): Envoy speaks plain gRPC to a Unix socket
// beside it, and each of its ADS streams is relayed, message for message and unparsed, over one mTLS connection to
// the control plane that presents the workload certificate. When the certificate is renewed, new streams use the new
// one; open streams stay on their connection until they end.
import { Client, Metadata, Server, ServerCredentials, type ServerDuplexStream, type ServiceDefinition, status as grpcStatus } from "@grpc/grpc-js";
import type { ChannelCredentials, ClientDuplexStream } from "@grpc/grpc-js";
import { aggregatedDiscoveryService } from "../xds/messages.js";
import { CONTROL_PLANE_CHANNEL_OPTIONS } from "./certificates.js";

const passthrough = (bytes: Buffer) => bytes;

/** AggregatedDiscoveryService with the messages left as bytes, both ways. */
const relayedService = Object.fromEntries(
  Object.entries(aggregatedDiscoveryService).map(([name, method]) => [
    name,
    { path: method.path, requestStream: true, responseStream: true, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough },
  ]),
) as ServiceDefinition;

interface Upstream {
  client: Client;
  streams: number;
  retired: boolean;
}

export class XdsProxy {
  private readonly server = new Server();
  private upstream?: Upstream;
  private readonly open = new Set<{ down: ServerDuplexStream<Buffer, Buffer>; up: ClientDuplexStream<Buffer, Buffer> }>();

  private constructor(
    private readonly address: string,
    private readonly log: (line: string) => void,
  ) {
    this.server.addService(
      relayedService,
      Object.fromEntries(Object.entries(relayedService).map(([name, method]) => [name, (call: ServerDuplexStream<Buffer, Buffer>) => this.relay(method.path, call)])),
    );
  }

  /** Listens on `socketPath` (a Unix socket) and relays to the control plane at `address`. */
  static async start(socketPath: string, address: string, credentials: ChannelCredentials, log: (line: string) => void): Promise<XdsProxy> {
    const proxy = new XdsProxy(address, log);
    proxy.useCredentials(credentials);
    await new Promise<number>((resolve, reject) =>
      proxy.server.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    return proxy;
  }

  /** New streams connect with these credentials (a renewed certificate); open streams keep theirs. */
  useCredentials(credentials: ChannelCredentials): void {
    const previous = this.upstream;
    this.upstream = { client: new Client(this.address, credentials, CONTROL_PLANE_CHANNEL_OPTIONS), streams: 0, retired: false };
    if (previous) this.retire(previous);
  }

  async stop(): Promise<void> {
    for (const { down, up } of this.open) {
      up.cancel();
      down.end();
    }
    this.server.forceShutdown();
    if (this.upstream) this.retire(this.upstream);
  }

  private retire(upstream: Upstream): void {
    upstream.retired = true;
    if (upstream.streams === 0) upstream.client.close();
  }

  private relay(path: string, down: ServerDuplexStream<Buffer, Buffer>): void {
    const upstream = this.upstream!;
    upstream.streams++;
    const up = upstream.client.makeBidiStreamRequest(path, passthrough, passthrough, new Metadata());
    const pair = { down, up };
    this.open.add(pair);
    let ended = false;
    const finish = (why: string, status?: { code: number; details: string }) => {
      if (ended) return;
      ended = true;
      this.open.delete(pair);
      if (--upstream.streams === 0 && upstream.retired) upstream.client.close();
      this.log(`xDS relay: stream ended (${why})`);
      // Envoy sees what the control plane said (a refusal keeps its code and reason) and reconnects on its own.
      if (status && status.code !== grpcStatus.OK) down.emit("error", status);
      else down.end();
      up.cancel();
    };
    down.on("data", (message: Buffer) => up.write(message));
    down.on("end", () => up.end());
    down.on("error", () => finish("Envoy's side failed"));
    down.on("cancelled", () => finish("Envoy cancelled"));
    up.on("data", (message: Buffer) => down.write(message));
    up.on("error", (error: { code: number; details: string }) => finish(`control plane: ${grpcStatus[error.code]}: ${error.details}`, { code: error.code, details: error.details }));
    up.on("end", () => finish("the control plane closed it"));
  }
}
