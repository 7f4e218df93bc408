// One TCP connection through a network filter, driven as Envoy's Wasm network filter is: data the filter holds
// (Pause) stays buffered and comes back, with the next bytes, in the next callback; the context ends when both
// sides have closed.
import {
  BufferType, type HeaderPair, type PropertyValue, PeerType, StreamType, WasmResult, concatBytes, decodeText,
  encodeProperty, propertyKey, toBytes,
} from "./abi.js";
import type { Action, SendOptions } from "./http.js";
import type { Headers } from "./headers.js";
import type { BufferSlot, StreamContext, StreamHost } from "./host.js";

export type Peer = "unknown" | "local" | "remote";
const PEERS: Record<Peer, PeerType> = { unknown: PeerType.Unknown, local: PeerType.Local, remote: PeerType.Remote };

/** Bytes flowing one way: what the filter let through, and what it holds. */
export class Flow {
  private passed: Uint8Array = new Uint8Array(0);
  held: Uint8Array = new Uint8Array(0);
  available = false;
  paused = false;

  /** What reached the other side, as text. */
  get received(): string {
    return decodeText(this.passed);
  }

  get receivedBytes(): Uint8Array {
    return this.passed;
  }

  pass(): void {
    this.passed = concatBytes(this.passed, this.held);
    this.held = new Uint8Array(0);
  }
}

export class TcpConnection implements StreamContext {
  /** Client to upstream. */
  readonly downstream = new Flow();
  /** Upstream to client. */
  readonly upstream = new Flow();
  readonly properties = new Map<string, Uint8Array>();
  /** What proxy_on_new_connection answered. */
  newConnectionAction: Action = "continue";
  /** Which sides the filter closed with proxy_close_stream. */
  readonly closedByFilter = { downstream: false, upstream: false };
  private downstreamClosed = false;
  private upstreamClosed = false;
  private downstreamEnded = false;
  private upstreamEnded = false;
  finished = false;
  /** A connection has no access-log phase of its own. */
  readonly inAccessLog = false;

  constructor(private readonly worker: StreamHost, readonly id: number, readonly rootId: number) {}

  open(): void {
    this.worker.invoke(this.id, "proxy_on_new_connection", () => {
      const result = this.worker.exports.proxy_on_new_connection?.(this.id) ?? 0;
      this.newConnectionAction = result === 0 ? "continue" : "pause";
    });
  }

  /** Bytes from the client (proxy_on_downstream_data). */
  sendDownstreamData(data: string | Uint8Array, options: SendOptions = {}): Action {
    return this.deliver(this.downstream, toBytes(data), options.endOfStream ?? false);
  }

  /** Bytes from the upstream (proxy_on_upstream_data). */
  sendUpstreamData(data: string | Uint8Array, options: SendOptions = {}): Action {
    return this.deliver(this.upstream, toBytes(data), options.endOfStream ?? false);
  }

  /** The client closes: as in Envoy, an end-of-stream data callback (empty unless data was held) if the client had
   * not ended its side yet, then proxy_on_downstream_connection_close. */
  closeDownstream(peer: Peer = "remote"): void {
    if (this.downstreamClosed) return;
    if (!this.downstreamEnded) this.sendDownstreamData("", { endOfStream: true });
    this.downstreamClosed = true;
    this.worker.invoke(this.id, "proxy_on_downstream_connection_close", () => this.worker.exports.proxy_on_downstream_connection_close?.(this.id, PEERS[peer]));
    this.finishIfClosed();
  }

  /** The upstream closes: an end-of-stream upstream data callback if the upstream had not ended yet, then
   * proxy_on_upstream_connection_close, which Envoy always reports with peer "unknown" (it learns of the close from
   * end of stream, not from a connection event). */
  closeUpstream(peer: Peer = "unknown"): void {
    if (this.upstreamClosed) return;
    if (!this.upstreamEnded) this.sendUpstreamData("", { endOfStream: true });
    this.upstreamClosed = true;
    this.worker.invoke(this.id, "proxy_on_upstream_connection_close", () => this.worker.exports.proxy_on_upstream_connection_close?.(this.id, PEERS[peer]));
    this.finishIfClosed();
  }

  setProperty(path: readonly string[], value: PropertyValue): void {
    this.properties.set(propertyKey(path), encodeProperty(value));
  }

  private deliver(flow: Flow, data: Uint8Array, endOfStream: boolean): Action {
    if (this.finished) throw new Error("the connection is closed");
    if (endOfStream) {
      if (flow === this.downstream) this.downstreamEnded = true;
      else this.upstreamEnded = true;
    }
    flow.held = concatBytes(flow.held, data);
    flow.available = true;
    const isDownstream = flow === this.downstream;
    const exports = this.worker.exports;
    const fn = isDownstream ? exports.proxy_on_downstream_data : exports.proxy_on_upstream_data;
    this.worker.invoke(this.id, isDownstream ? "proxy_on_downstream_data" : "proxy_on_upstream_data", () => {
      const result = fn?.(this.id, flow.held.length, endOfStream ? 1 : 0) ?? 0;
      flow.available = false;
      flow.paused = result !== 0;
      if (!flow.paused) flow.pass();
    });
    return flow.paused ? "pause" : "continue";
  }

  private finishIfClosed(): void {
    if (this.finished || !this.downstreamClosed || !this.upstreamClosed) return;
    this.finished = true;
    this.worker.finishStream(this, true, () => {}, () => {});
  }

  // ------------------------------------------------------------------------------------------- host side

  headerMap(): Headers | null | undefined {
    return undefined;
  }

  buffer(type: BufferType): BufferSlot | null | undefined {
    if (type !== BufferType.DownstreamData && type !== BufferType.UpstreamData) return undefined;
    const flow = type === BufferType.DownstreamData ? this.downstream : this.upstream;
    if (!flow.available) return null;
    return { bytes: () => flow.held, set: (bytes) => (flow.held = bytes) };
  }

  derivedProperty(): Uint8Array | undefined {
    return undefined;
  }

  continueStream(stream: number): WasmResult {
    if (stream === StreamType.Downstream) {
      this.worker.defer(() => {
        if (!this.downstream.paused) return;
        this.downstream.paused = false;
        this.downstream.pass();
      });
      return WasmResult.Ok;
    }
    // Envoy cannot resume the upstream direction of a network filter.
    return stream === StreamType.Upstream ? WasmResult.Unimplemented : WasmResult.BadArgument;
  }

  closeStream(stream: number): WasmResult {
    if (stream === StreamType.Downstream) this.closedByFilter.downstream = true;
    else if (stream === StreamType.Upstream) this.closedByFilter.upstream = true;
    else return WasmResult.BadArgument;
    return WasmResult.Ok;
  }

  sendLocalResponse(_status: number, _details: string, _body: Uint8Array, _headers: HeaderPair[], _grpc: number): WasmResult {
    return WasmResult.BadArgument;
  }

  clearRouteCache(): void {}
}
