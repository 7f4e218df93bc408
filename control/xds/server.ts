// The ADS server: AggregatedDiscoveryService on @grpc/grpc-js, state of the world and delta, fed by a SnapshotCache.
import { type ServerDuplexStream, Server, ServerCredentials, status as grpcStatus } from "@grpc/grpc-js";
import type { SnapshotCache } from "../snapshots/cache.js";
import { aggregatedDiscoveryService, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse } from "./messages.js";
import type { ProxyIdentity } from "../resources.js";
import { type AdsStream, DeltaStream, SotwStream, type StreamContext, type StreamStatus, type XdsObserver } from "./streams.js";

export interface XdsServerOptions {
  cache: SnapshotCache;
  /** Port on 127.0.0.1 (0 picks a free one). */
  port?: number;
  /** Pushes, ACKs, NACKs, connections. */
  log?: (line: string) => void;
  /** A proxy opened a stream: the place to make its first snapshot. */
  onProxyConnected?: (identity: ProxyIdentity) => void;
  /** The last open stream of a node id closed: the place to forget that proxy. */
  onProxyDisconnected?: (nodeId: string) => void;
  /** Connections, pushes, ACKs, NACKs and convergence, as they happen (for metrics). */
  observer?: Partial<XdsObserver>;
}

export class XdsServer {
  private readonly streams = new Set<AdsStream>();
  private readonly server = new Server();
  private readonly stopWatching: () => void;
  port = 0;

  private constructor(private readonly options: XdsServerOptions) {
    const context: StreamContext = {
      cache: options.cache,
      log: (line) => options.log?.(line),
      observer: options.observer,
      connected: (stream) => {
        this.streams.add(stream);
        options.observer?.connected?.(stream.identity!, stream.protocol);
        options.onProxyConnected?.(stream.identity!);
        stream.pump();
      },
      closed: (stream) => this.closed(stream),
    };
    this.server.addService(aggregatedDiscoveryService, {
      StreamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.serve(call, new SotwStream(context, call)),
      DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => this.serve(call, new DeltaStream(context, call)),
    });
    this.stopWatching = options.cache.onChange((nodeId) => {
      for (const stream of this.streams) if (stream.identity?.nodeId === nodeId) stream.pump();
    });
  }

  static async start(options: XdsServerOptions): Promise<XdsServer> {
    const xds = new XdsServer(options);
    try {
      xds.port = await new Promise<number>((resolve, reject) =>
        xds.server.bindAsync(`127.0.0.1:${options.port ?? 0}`, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
      );
    } catch (error) {
      xds.stopWatching();
      throw error;
    }
    return xds;
  }

  /** Per connected proxy and type: SYNCED, NOT SENT, STALE or ERROR (with the NACK's error_detail), like
   * `istioctl proxy-status`. */
  status(): StreamStatus[] {
    return [...this.streams].map((stream) => stream.status()).sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  async stop(): Promise<void> {
    this.stopWatching();
    for (const stream of this.streams) stream.close();
    this.server.forceShutdown();
  }

  private serve<Request, Response>(call: ServerDuplexStream<Request, Response>, stream: AdsStream & { onRequest(request: Request): void }): void {
    call.on("data", (request: Request) => {
      try {
        stream.onRequest(request);
      } catch (error) {
        // A request the server cannot take (no node.id on the first one): end this stream with the reason.
        this.options.log?.(`${stream.nodeId}: closing the stream: ${(error as Error).message}`);
        call.emit("error", { code: grpcStatus.INVALID_ARGUMENT, details: (error as Error).message });
        stream.close();
      }
    });
    call.on("end", () => {
      stream.close();
      call.end();
    });
    call.on("cancelled", () => stream.close());
    call.on("error", () => stream.close());
    call.on("close", () => stream.close());
  }

  private closed(stream: AdsStream): void {
    if (!this.streams.delete(stream)) return;
    this.options.log?.(`${stream.nodeId}: disconnected (${stream.protocol})`);
    this.options.observer?.disconnected?.(stream.identity!, stream.protocol);
    const nodeId = stream.identity!.nodeId;
    if (![...this.streams].some((other) => other.identity?.nodeId === nodeId)) this.options.onProxyDisconnected?.(nodeId);
  }
}
