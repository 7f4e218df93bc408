// The ADS server: AggregatedDiscoveryService on @grpc/grpc-js, state of the world and delta, fed by a SnapshotCache.
import { type ServerDuplexStream, Server, ServerCredentials, type ServiceDefinition, status as grpcStatus, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { SnapshotCache } from "../snapshots/cache.js";
import { aggregatedDiscoveryService, secretDiscoveryService, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse } from "./messages.js";
import type { ProxyIdentity } from "../resources.js";
import { PushThrottle } from "./throttle.js";
import { type AdsStream, DeltaStream, SotwStream, type StreamContext, StreamRefused, type StreamStatus, type XdsObserver } from "./streams.js";

export interface XdsServerOptions {
  cache: SnapshotCache;
  /** Port on 127.0.0.1 (0 picks a free one). */
  port?: number;
  /** Where to listen instead of 127.0.0.1:port, in gRPC's form ("HOST:PORT", "unix:/path"). */
  address?: string;
  /** TLS and authentication; without it the server is plain text and serves anyone (local development only). */
  security?: XdsSecurity;
  /** Serve the discovery protocol as SecretDiscoveryService (StreamSecrets, DeltaSecrets) instead of ADS. */
  secretsOnly?: boolean;
  /** Further gRPC services on the same port (the CA's, beside xDS, as istiod serves both on 15012). */
  services?: Array<{ definition: ServiceDefinition; implementation: UntypedServiceImplementation }>;
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
  /** Responses written at once across all streams (default 100, istiod's PILOT_PUSH_THROTTLE; see throttle.ts). */
  pushThrottle?: number;
}

export interface XdsSecurity {
  credentials: ServerCredentials;
  /** Called for each stream as it opens and again with the node its first request claims: returns the identity to
   * serve it as, or throws StreamRefused. With `claimed` undefined it checks only that the caller is authenticated. */
  authorize(call: ServerDuplexStream<unknown, unknown>, claimed?: ProxyIdentity): ProxyIdentity | undefined;
}

export class XdsServer {
  private readonly streams = new Set<AdsStream>();
  /** The open streams of each snapshot key: a new snapshot wakes only its own proxy's streams. */
  private readonly streamsByKey = new Map<string, Set<AdsStream>>();
  private readonly server = new Server();
  private readonly stopWatching: () => void;
  private readonly context: StreamContext;
  port = 0;

  private constructor(private readonly options: XdsServerOptions) {
    this.context = {
      cache: options.cache,
      throttle: new PushThrottle(options.pushThrottle),
      log: (line) => options.log?.(line),
      observer: options.observer,
      snapshotKey: options.snapshotKey ?? ((identity) => identity.nodeId),
      connected: (stream) => {
        this.reportClash(stream);
        this.streams.add(stream);
        const key = stream.snapshotKey!;
        const same = this.streamsByKey.get(key) ?? new Set<AdsStream>();
        this.streamsByKey.set(key, same.add(stream));
        options.observer?.connected?.(stream.identity!, stream.protocol);
        options.onProxyConnected?.(stream.identity!, stream.snapshotKey!);
        stream.pump();
      },
      closed: (stream) => this.closed(stream),
    };
    const sotw = (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.serve(call, new SotwStream(this.streamContext(call), call));
    const delta = (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => this.serve(call, new DeltaStream(this.streamContext(call), call));
    if (options.secretsOnly) this.server.addService(secretDiscoveryService, { StreamSecrets: sotw, DeltaSecrets: delta });
    else this.server.addService(aggregatedDiscoveryService, { StreamAggregatedResources: sotw, DeltaAggregatedResources: delta });
    for (const service of options.services ?? []) this.server.addService(service.definition, service.implementation);
    this.stopWatching = options.cache.onChange((key) => {
      for (const stream of this.streamsByKey.get(key) ?? []) stream.pump();
    });
  }

  static async start(options: XdsServerOptions): Promise<XdsServer> {
    const xds = new XdsServer(options);
    try {
      xds.port = await new Promise<number>((resolve, reject) =>
        xds.server.bindAsync(
          options.address ?? `127.0.0.1:${options.port ?? 0}`,
          options.security?.credentials ?? ServerCredentials.createInsecure(),
          (error, bound) => (error ? reject(error) : resolve(bound)),
        ),
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

  /** The stream's context: with security, its identity is authorized for this call, and a node id is served to one
   * identity at a time (a second identity claiming a connected node id is refused, so that no one can take over or
   * read another proxy's configuration by naming its node id). */
  private streamContext(call: ServerDuplexStream<unknown, unknown>): StreamContext {
    const security = this.options.security;
    if (!security) return this.context;
    return {
      ...this.context,
      authorize: (claimed) => {
        const identity = security.authorize(call, claimed)!;
        const holder = [...this.streams].find((other) => other.identity?.nodeId === identity.nodeId)?.identity;
        if (holder && (holder.namespace !== identity.namespace || holder.serviceAccount !== identity.serviceAccount)) {
          throw new StreamRefused(
            grpcStatus.PERMISSION_DENIED,
            `node id ${identity.nodeId} is connected as ${holder.namespace}/${holder.serviceAccount}, not ${identity.namespace}/${identity.serviceAccount}`,
          );
        }
        return identity;
      },
    };
  }

  private serve<Request, Response>(call: ServerDuplexStream<Request, Response>, stream: AdsStream & { onRequest(request: Request): void }): void {
    const refuse = (error: Error) => {
      // A request the server cannot take (no node.id on the first one, an identity it does not serve): end this
      // stream with the reason.
      this.options.log?.(`${stream.nodeId}: closing the stream from ${call.getPeer()}: ${error.message}`);
      call.emit("error", { code: error instanceof StreamRefused ? error.code : grpcStatus.INVALID_ARGUMENT, details: error.message });
      stream.close();
    };
    if (this.options.security) {
      // Refused before reading anything: an unauthenticated caller gets no response of any kind.
      try {
        this.options.security.authorize(call as ServerDuplexStream<unknown, unknown>);
      } catch (error) {
        refuse(error as Error);
        return;
      }
    }
    call.on("data", (request: Request) => {
      try {
        stream.onRequest(request);
      } catch (error) {
        refuse(error as Error);
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
    const same = this.streamsByKey.get(key)!;
    same.delete(stream);
    if (same.size > 0) return;
    this.streamsByKey.delete(key);
    this.options.onProxyDisconnected?.(key, stream.identity!);
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
