// HTTP and gRPC callouts a filter makes (proxy_http_call, proxy_grpc_call, proxy_grpc_stream), as the test sees and
// answers them. Answers reach the guest asynchronously, as in Envoy: after the guest call that made the callout
// returns, never inside it.
import { type HeaderPair, type HeadersInit, decodeText, toBytes, toPairs } from "./abi.js";

export interface HttpCallAnswer {
  status: number;
  headers?: HeadersInit;
  body?: string | Uint8Array;
  trailers?: HeadersInit;
}

export interface CalloutDelivery {
  httpResponse(call: HttpCall, headers: HeaderPair[], body: Uint8Array, trailers: HeaderPair[]): void;
  httpFailure(call: HttpCall): void;
  grpcInitialMetadata(callout: GrpcCallout, metadata: HeaderPair[]): void;
  grpcMessage(callout: GrpcCallout, message: Uint8Array): void;
  grpcTrailingMetadata(callout: GrpcCallout, metadata: HeaderPair[]): void;
  grpcClose(callout: GrpcCallout, status: number, message: string): void;
}

/** One worker's callouts in flight, by token. Envoy numbers each kind apart, with the kind in the low two bits:
 * HTTP calls 4, 8, ...; unary gRPC calls 5, 9, ...; gRPC streams 6, 10, ... */
export class CalloutTable {
  private readonly byToken = new Map<number, HttpCall | GrpcCallout>();
  private readonly last = { http: 0, "grpc-call": 1, "grpc-stream": 2 };

  nextToken(kind: "http" | "grpc-call" | "grpc-stream"): number {
    return (this.last[kind] += 4);
  }

  add(callout: HttpCall | GrpcCallout): void {
    this.byToken.set(callout.token, callout);
  }

  get(token: number): HttpCall | GrpcCallout | undefined {
    return this.byToken.get(token);
  }

  has(token: number): boolean {
    return this.byToken.has(token);
  }

  /** Forgets a callout; whether it was in flight. */
  take(token: number): boolean {
    return this.byToken.delete(token);
  }
}

/** One proxy_http_call. Answer it with `respond` (or from `Emulator.onHttpCall`), or `fail` it like a reset. */
export class HttpCall {
  answered = false;

  constructor(
    private readonly delivery: CalloutDelivery,
    readonly token: number,
    readonly worker: number,
    /** The root context the call belongs to: Envoy makes every callout on the root context of the caller, and
     * proxy_on_http_call_response arrives with this id. */
    readonly contextId: number,
    /** The context that was effective when the filter made the call (its stream, usually). */
    readonly callerId: number,
    readonly cluster: string,
    readonly headerPairs: HeaderPair[],
    readonly bodyBytes: Uint8Array,
    readonly trailerPairs: HeaderPair[],
    readonly timeoutMs: number,
    /** When, on the emulator's clock, Envoy gives up on the call (Infinity for timeout 0, which Envoy reads as none). */
    readonly deadline: number,
  ) {}

  /** Request headers, one value per name. */
  get headers(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of this.headerPairs) if (!(name in out)) out[name] = value;
    return out;
  }

  get body(): string {
    return decodeText(this.bodyBytes);
  }

  /** Delivers a response to proxy_on_http_call_response. */
  respond(answer: HttpCallAnswer): void {
    this.settle();
    const headers: HeaderPair[] = [[":status", String(answer.status)], ...toPairs(answer.headers).map(([n, v]): HeaderPair => [n.toLowerCase(), v])];
    this.delivery.httpResponse(this, headers, toBytes(answer.body), toPairs(answer.trailers));
  }

  /** Times the call out as Envoy does: a 504 response with body "upstream request timeout". Emulator.advance does
   * this when the call's timeout passes unanswered. */
  timeOut(): void {
    const body = "upstream request timeout";
    this.respond({ status: 504, headers: { "content-length": String(body.length), "content-type": "text/plain" }, body });
  }

  /** Fails the call the way Envoy reports a reset: no headers, no body, proxy_get_status gives BrokenConnection. */
  fail(): void {
    this.settle();
    this.delivery.httpFailure(this);
  }

  private settle(): void {
    if (this.answered) throw new Error(`HTTP call ${this.token} to '${this.cluster}' was already answered`);
    this.answered = true;
  }
}

export interface GrpcAnswer {
  /** gRPC status code; 0 is OK. */
  status: number;
  /** The failure's message (proxy_get_status), when status is not 0. */
  statusMessage?: string;
  /** The response message, when status is 0. */
  message?: string | Uint8Array;
}

/** A unary gRPC call or a gRPC stream the filter opened. Envoy answers a unary call with exactly one callback:
 * proxy_on_grpc_receive with the response on success, or proxy_on_grpc_close with the status on failure (no
 * metadata callbacks). A stream gets metadata, any number of messages, and a close. */
export class GrpcCallout {
  closed = false;
  /** Messages the filter sent on a stream (proxy_grpc_send), in order. */
  readonly sent: Uint8Array[] = [];
  /** Whether the filter closed its side (end_stream on send, or proxy_grpc_close). */
  localClosed = false;
  cancelled = false;

  constructor(
    private readonly delivery: CalloutDelivery,
    readonly kind: "call" | "stream",
    readonly token: number,
    readonly worker: number,
    /** The root context the callout belongs to (see HttpCall.contextId). */
    readonly contextId: number,
    readonly callerId: number,
    readonly cluster: string,
    readonly service: string,
    readonly method: string,
    readonly metadata: HeaderPair[],
    /** The request message of a unary call. */
    readonly request: Uint8Array,
    readonly timeoutMs: number,
  ) {}

  sendInitialMetadata(metadata: HeadersInit): void {
    this.streamOnly("initial metadata");
    this.delivery.grpcInitialMetadata(this, toPairs(metadata));
  }

  /** Sends one response message to proxy_on_grpc_receive; for a unary call this is its successful end. */
  reply(message: string | Uint8Array): void {
    if (this.kind === "call") this.settle();
    this.delivery.grpcMessage(this, toBytes(message));
  }

  sendTrailingMetadata(metadata: HeadersInit): void {
    this.streamOnly("trailing metadata");
    this.delivery.grpcTrailingMetadata(this, toPairs(metadata));
  }

  /** Ends a stream, or fails a unary call, with a gRPC status (proxy_on_grpc_close). */
  close(status: number, message = ""): void {
    this.settle();
    this.delivery.grpcClose(this, status, message);
  }

  /** A unary answer: status 0 delivers `message`, any other status the failure. */
  answer(answer: GrpcAnswer): void {
    if (answer.status === 0) this.reply(answer.message ?? new Uint8Array(0));
    else this.close(answer.status, answer.statusMessage ?? "");
  }

  private settle(): void {
    if (this.closed) throw new Error(`gRPC ${this.kind} ${this.token} is already over`);
    this.closed = true;
  }

  private streamOnly(what: string): void {
    if (this.kind === "call") throw new Error(`Envoy delivers no ${what} for a unary gRPC call`);
  }
}
