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
  /** Where a proxy's snapshot is in the cache (go-control-plane's NodeHash); default: its node id. A key that
   * covers the whole identity (as the control plane's does) keeps two streams that share a node id but not an
   * identity from ever receiving each other's configuration. */
  snapshotKey?: (identity: ProxyIdentity) => string;
  /** A proxy opened a stream: the place to make its first snapshot, under `key`. */
  onProxyConnected?: (identity: ProxyIdentity, key: string) => void;
  /** The last open stream of a snapshot key closed: the place to forget that proxy. */
  onProxyDisconnected?: (key: string, identity: ProxyIdentity) => void;
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
      snapshotKey: options.snapshotKey ?? ((identity) => identity.nodeId),
      connected: (stream) => {
        this.reportClash(stream);
        this.streams.add(stream);
        options.observer?.connected?.(stream.identity!, stream.protocol);
        options.onProxyConnected?.(stream.identity!, stream.snapshotKey!);
        stream.pump();
      },
      closed: (stream) => this.closed(stream),
    };
    this.server.addService(aggregatedDiscoveryService, {
      StreamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.serve(call, new SotwStream(context, call)),
      DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => this.serve(call, new DeltaStream(context, call)),
    });
    this.stopWatching = options.cache.onChange((key) => {
      for (const stream of this.streams) if (stream.snapshotKey === key) stream.pump();
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
    const key = stream.snapshotKey!;
    if (![...this.streams].some((other) => other.snapshotKey === key)) this.options.onProxyDisconnected?.(key, stream.identity!);
  }

  /** Node ids should name one proxy each; two streams that share one with different identities (a copied
   * bootstrap, a misconfigured agent) each keep their own configuration, and the clash is logged. */
  private reportClash(stream: AdsStream): void {
    const identity = stream.identity!;
    const other = [...this.streams].find((candidate) => candidate.identity?.nodeId === identity.nodeId && candidate.snapshotKey !== stream.snapshotKey);
    if (!other) return;
    const describe = (who: ProxyIdentity) => `role ${who.role}, labels {${Object.entries(who.labels).map(([k, v]) => `${k}=${v}`).join(",")}}`;
    this.options.log?.(
      `${identity.nodeId}: node id already connected with another identity (${describe(other.identity!)}); ` +
        `this stream (${describe(identity)}) gets its own configuration and leaves the other's alone. Give each proxy its own node id.`,
    );
  }
}
