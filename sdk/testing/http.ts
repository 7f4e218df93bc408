// One HTTP stream through the filter, driven like Envoy's HTTP connection manager drives a Wasm filter
// (source/extensions/common/wasm/context.cc): which header maps and bodies the filter can reach in which callback,
// what pausing does to later data, how a continue resumes it, and how a local response runs back through the
// filter's response callbacks.
import {
  BufferType, type HeaderPair, type HeadersInit, MapType, type PropertyValue, StreamType, WasmResult, concatBytes,
  decodeText, encodeProperty, encodeText, propertyKey, toBytes,
} from "./abi.js";
import { Headers } from "./headers.js";
import type { BufferSlot, StreamContext, StreamHost } from "./host.js";

/** What a filter callback answered: let the data through, or hold it. */
export type Action = "continue" | "pause";

export interface LocalResponse {
  status: number;
  body: string;
  headers: Record<string, string>;
  details: string;
  grpcStatus: number | null;
}

/** One direction of the stream: the request or the response, as it passes the filter. */
export class Message {
  /** The headers as the filter left them. */
  readonly headers = new Headers();
  /** The trailers as the filter left them, or null when there were none. */
  trailers: Headers | null = null;
  /** Whether the filter holds this direction (a Pause not yet resumed). */
  paused = false;
  /** How often the filter resumed this direction with proxy_continue_stream. */
  resumed = 0;
  /** Whether end of stream has passed the filter. */
  ended = false;

  private forwarded: Uint8Array = new Uint8Array(0);
  /** Body the filter holds (buffering), or the chunk of the current callback. */
  buffered: Uint8Array = new Uint8Array(0);
  started = false;
  receivedEnd = false;
  headersAvailable = false;
  trailersAvailable = false;
  bodyAvailable = false;
  inBodyCallback = false;
  bodyEndInCallback = false;
  buffering = false;
  /** Headers answered Pause: Envoy holds later body and trailers and delivers them on continue. */
  stopAll = false;
  queuedBody: Uint8Array | null = null;
  queuedTrailers: Headers | null = null;

  /** The body that has passed the filter so far, plus what it holds, as text. */
  get body(): string {
    return decodeText(this.bodyBytes);
  }

  get bodyBytes(): Uint8Array {
    return concatBytes(this.forwarded, this.buffered);
  }

  forward(): void {
    this.forwarded = concatBytes(this.forwarded, this.buffered);
    this.buffered = new Uint8Array(0);
  }
}

export interface SendOptions {
  endOfStream?: boolean;
}

export class HttpStream implements StreamContext {
  readonly request = new Message();
  readonly response = new Message();
  readonly properties = new Map<string, Uint8Array>();
  /** The local response the filter sent (proxy_send_local_response), or null. */
  localResponse: LocalResponse | null = null;
  /** Which directions the filter reset with proxy_close_stream. */
  readonly closed = { request: false, response: false };
  /** How often the filter cleared the route cache (by changing request headers, or the foreign function). */
  routeCacheCleared = 0;
  /** Whether the stream is over: the VM saw proxy_on_done, proxy_on_log and proxy_on_delete. */
  finished = false;
  inAccessLog = false;
  /** Whether the VM has heard of this stream: Envoy creates its context with the request headers. */
  private createdInVm = false;

  constructor(private readonly worker: StreamHost, readonly id: number, readonly rootId: number) {}

  // ------------------------------------------------------------------------------------------- for tests

  /** Sends request headers (names are lower-cased, as Envoy's codecs do). */
  sendRequestHeaders(headers: HeadersInit, options: SendOptions = {}): Action {
    this.checkOpen("request headers");
    return this.deliverHeaders(this.request, headers, options.endOfStream ?? false);
  }

  sendRequestBody(data: string | Uint8Array, options: SendOptions = {}): Action {
    this.checkOpen("request body");
    return this.sendBody(this.request, toBytes(data), options.endOfStream ?? false);
  }

  sendRequestTrailers(trailers: HeadersInit): Action {
    this.checkOpen("request trailers");
    return this.sendTrailers(this.request, new Headers(trailers));
  }

  /** Sends the upstream's response headers; the request must have passed the filter (not paused). */
  sendResponseHeaders(headers: HeadersInit, options: SendOptions = {}): Action {
    this.checkOpen("response headers");
    if (this.localResponse !== null) throw new Error("the filter already sent a local response; the upstream does not answer");
    if (this.request.paused) throw new Error("the filter holds the request (paused): the upstream has not seen it, so it cannot answer");
    return this.deliverHeaders(this.response, headers, options.endOfStream ?? false);
  }

  sendResponseBody(data: string | Uint8Array, options: SendOptions = {}): Action {
    this.checkOpen("response body");
    return this.sendBody(this.response, toBytes(data), options.endOfStream ?? false);
  }

  sendResponseTrailers(trailers: HeadersInit): Action {
    this.checkOpen("response trailers");
    return this.sendTrailers(this.response, new Headers(trailers));
  }

  /** The request headers as the filter left them. */
  get requestHeaders(): Headers {
    return this.request.headers;
  }

  get responseHeaders(): Headers {
    return this.response.headers;
  }

  get requestBody(): string {
    return this.request.body;
  }

  get responseBody(): string {
    return this.response.body;
  }

  /** Sets a property this stream's filter reads with proxy_get_property, e.g. (["upstream", "address"], "10.0.0.1:80"). */
  setProperty(path: readonly string[], value: PropertyValue): void {
    this.properties.set(propertyKey(path), encodeProperty(value));
  }

  /** A property the filter set with proxy_set_property, as text, or undefined. */
  property(path: readonly string[]): string | undefined {
    const value = this.properties.get(propertyKey(path));
    return value === undefined ? undefined : decodeText(value);
  }

  /** Ends the stream (a client reset, or the end of a test): proxy_on_done, proxy_on_log, proxy_on_delete. */
  close(): void {
    this.finish();
  }

  // ------------------------------------------------------------------------------------------- the flow

  private checkOpen(what: string): void {
    if (this.finished) throw new Error(`cannot send ${what}: the stream is finished`);
  }

  private callback(label: string, call: () => number, after: (result: number) => void): void {
    this.worker.invoke(this.id, label, () => after(call()));
  }

  private deliverHeaders(message: Message, init: HeadersInit | Headers, endOfStream: boolean): Action {
    if (message.started) throw new Error(`the ${message === this.request ? "request" : "response"} headers were already sent`);
    message.started = true;
    message.receivedEnd = endOfStream;
    message.headers.replaceAll(init instanceof Headers ? init.entries() : new Headers(init).entries());
    message.headersAvailable = true;
    const isRequest = message === this.request;
    if (!this.createdInVm) {
      this.createdInVm = true;
      this.worker.createInVm(this);
    }
    const exports = this.worker.exports;
    const fn = isRequest ? exports.proxy_on_request_headers : exports.proxy_on_response_headers;
    let action: Action = "continue";
    this.callback(isRequest ? "proxy_on_request_headers" : "proxy_on_response_headers",
      () => fn?.(this.id, message.headers.size, endOfStream ? 1 : 0) ?? 0,
      (result) => {
        if (result === 0) {
          message.headersAvailable = false;
          this.passEnd(message);
        } else {
          action = "pause";
          message.paused = true;
          // Envoy turns a plain Pause into StopAllIterationAndWatermark unless the plugin allows StopIteration.
          message.stopAll = result !== 1 || !this.worker.allowOnHeadersStopIteration;
        }
      });
    return message.paused ? "pause" : action;
  }

  private sendBody(message: Message, data: Uint8Array, endOfStream: boolean): Action {
    if (!message.started) throw new Error("send headers before a body");
    if (message.receivedEnd) throw new Error("end of stream was already sent in this direction");
    message.receivedEnd = endOfStream;
    if (message.stopAll && message.paused) {
      message.queuedBody = concatBytes(message.queuedBody ?? new Uint8Array(0), data);
      return "pause";
    }
    if (message.ended) return "continue";
    return this.deliverBody(message, data, endOfStream);
  }

  private deliverBody(message: Message, data: Uint8Array, endOfStream: boolean): Action {
    message.buffered = message.buffering ? concatBytes(message.buffered, data) : data;
    message.bodyAvailable = true;
    message.inBodyCallback = true;
    message.bodyEndInCallback = endOfStream;
    const isRequest = message === this.request;
    const exports = this.worker.exports;
    const fn = isRequest ? exports.proxy_on_request_body : exports.proxy_on_response_body;
    let action: Action = "continue";
    try {
      this.callback(isRequest ? "proxy_on_request_body" : "proxy_on_response_body",
        () => fn?.(this.id, message.buffered.length, endOfStream ? 1 : 0) ?? 0,
        (result) => {
          message.inBodyCallback = false;
          if (result === 0) {
            message.bodyAvailable = false;
            message.buffering = false;
            message.paused = false;
            message.forward();
            if (endOfStream) this.passEnd(message);
          } else {
            action = "pause";
            message.buffering = true;
            message.paused = true;
          }
        });
    } finally {
      message.inBodyCallback = false;
    }
    return message.paused ? "pause" : action;
  }

  private sendTrailers(message: Message, trailers: Headers): Action {
    if (!message.started) throw new Error("send headers before trailers");
    if (message.receivedEnd) throw new Error("end of stream was already sent in this direction");
    message.receivedEnd = true;
    if (message.stopAll && message.paused) {
      message.queuedTrailers = trailers;
      return "pause";
    }
    if (message.ended) return "continue";
    return this.deliverTrailers(message, trailers);
  }

  private deliverTrailers(message: Message, trailers: Headers): Action {
    message.trailers = trailers;
    message.trailersAvailable = true;
    const isRequest = message === this.request;
    const exports = this.worker.exports;
    const fn = isRequest ? exports.proxy_on_request_trailers : exports.proxy_on_response_trailers;
    let action: Action = "continue";
    this.callback(isRequest ? "proxy_on_request_trailers" : "proxy_on_response_trailers",
      () => fn?.(this.id, trailers.size) ?? 0,
      (result) => {
        if (result === 0) {
          message.trailersAvailable = false;
          message.bodyAvailable = false;
          message.buffering = false;
          message.paused = false;
          message.forward();
          this.passEnd(message);
        } else {
          action = "pause";
          message.paused = true;
        }
      });
    return message.paused ? "pause" : action;
  }

  /** Marks end of stream as passed when the test sent it and nothing is held; the response's end ends the stream. */
  private passEnd(message: Message): void {
    if (!message.receivedEnd || message.paused || message.ended) return;
    message.ended = true;
    if (message === this.response) this.worker.defer(() => this.finish());
  }

  /** proxy_continue_stream, run after the guest call returns (Envoy defers it the same way). */
  private resume(message: Message): void {
    if (this.finished || !message.paused) return;
    message.paused = false;
    message.resumed++;
    message.headersAvailable = false;
    message.bodyAvailable = false;
    message.trailersAvailable = false;
    message.buffering = false;
    message.forward();
    if (message.stopAll) {
      message.stopAll = false;
      const body = message.queuedBody;
      const trailers = message.queuedTrailers;
      message.queuedBody = null;
      message.queuedTrailers = null;
      if (body !== null) {
        const bodyEnds = message.receivedEnd && trailers === null;
        this.deliverBody(message, body, bodyEnds);
        if (message.paused) {
          if (trailers !== null) message.queuedTrailers = trailers;
          return;
        }
      }
      if (trailers !== null) {
        this.deliverTrailers(message, trailers);
        return;
      }
    }
    this.passEnd(message);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.worker.finishStream(this, this.createdInVm, () => (this.inAccessLog = true), () => (this.inAccessLog = false));
  }

  // ------------------------------------------------------------------------------------------- host side

  headerMap(type: MapType, mutable: boolean): Headers | null | undefined {
    switch (type) {
      case MapType.RequestHeaders:
      case MapType.ResponseHeaders: {
        const message = type === MapType.RequestHeaders ? this.request : this.response;
        if (this.inAccessLog) return mutable || !message.started ? null : message.headers;
        return message.headersAvailable ? message.headers : null;
      }
      case MapType.RequestTrailers:
      case MapType.ResponseTrailers: {
        const message = type === MapType.RequestTrailers ? this.request : this.response;
        if (this.inAccessLog) return mutable || type === MapType.RequestTrailers ? null : message.trailers;
        if (message.trailersAvailable) return message.trailers;
        // Envoy adds trailers when a filter writes them from the last body callback.
        if (mutable && message.inBodyCallback && message.bodyEndInCallback && message.trailers === null) {
          message.trailers = new Headers();
          message.trailersAvailable = true;
          return message.trailers;
        }
        return null;
      }
      default:
        return undefined;
    }
  }

  buffer(type: BufferType): BufferSlot | null | undefined {
    if (type !== BufferType.RequestBody && type !== BufferType.ResponseBody) return undefined;
    const message = type === BufferType.RequestBody ? this.request : this.response;
    if (!message.bodyAvailable) return null;
    return { bytes: () => message.buffered, set: (bytes) => (message.buffered = bytes) };
  }

  derivedProperty(key: string): Uint8Array | undefined {
    const headers = this.request.headers;
    const path = headers.get(":path");
    const fromHeader = (name: string): Uint8Array | undefined => {
      const value = headers.get(name);
      return value === null ? undefined : encodeText(value);
    };
    switch (key) {
      case "request\0path":
        return fromHeader(":path");
      case "request\0url_path":
        return path === null ? undefined : encodeText(path.split("?")[0]);
      case "request\0method":
        return fromHeader(":method");
      case "request\0host":
        return fromHeader(":authority");
      case "request\0scheme":
        return fromHeader(":scheme");
      case "request\0id":
        return fromHeader("x-request-id");
      case "request\0useragent":
        return fromHeader("user-agent");
      case "request\0referer":
        return fromHeader("referer");
      case "response\0code": {
        const status = this.response.headers.get(":status");
        return status === null ? undefined : encodeProperty(Number(status));
      }
      default:
        return undefined;
    }
  }

  continueStream(stream: number): WasmResult {
    if (stream === StreamType.Request || stream === StreamType.Response) {
      const message = stream === StreamType.Request ? this.request : this.response;
      this.worker.defer(() => this.resume(message));
      // Envoy's continueStream forgets the request maps at once, whichever direction is continued.
      this.request.headersAvailable = false;
      this.request.trailersAvailable = false;
      return WasmResult.Ok;
    }
    return WasmResult.BadArgument;
  }

  closeStream(stream: number): WasmResult {
    if (stream === StreamType.Request) this.closed.request = true;
    else if (stream === StreamType.Response) this.closed.response = true;
    else return WasmResult.BadArgument;
    this.worker.defer(() => this.finish());
    return WasmResult.Ok;
  }

  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: HeaderPair[], grpcStatus: number): WasmResult {
    this.worker.defer(() => this.replyLocally(status, details, body, headers, grpcStatus));
    return WasmResult.Ok;
  }

  clearRouteCache(): void {
    this.routeCacheCleared++;
  }

  /** Envoy's sendLocalReply: the request stops, and the reply runs through the filter's response callbacks. */
  private replyLocally(status: number, details: string, body: Uint8Array, extra: HeaderPair[], grpcStatus: number): void {
    if (this.finished || this.localResponse !== null) return;
    const headers = new Headers([[":status", String(status)]]);
    if (body.length > 0) {
      headers.add("content-length", String(body.length));
      headers.add("content-type", "text/plain");
    }
    for (const [name, value] of extra) headers.add(name, value);
    this.localResponse = {
      status,
      body: decodeText(body),
      headers: new Headers(extra).toObject(),
      details: details.replace(/\s/g, "_"),
      grpcStatus: grpcStatus >= 0 && grpcStatus <= 16 ? grpcStatus : null,
    };
    this.request.paused = false;
    this.request.ended = true;
    this.request.headersAvailable = false;
    this.request.bodyAvailable = false;
    if (this.response.started) {
      // Envoy replaces a response whose headers have not gone downstream yet; the filter is not called again.
      this.response.headers.replaceAll(headers.entries());
      this.response.buffered = body;
      this.response.paused = false;
      this.response.ended = true;
      this.worker.defer(() => this.finish());
      return;
    }
    this.deliverHeaders(this.response, headers, body.length === 0);
    if (body.length > 0 && !this.finished) {
      this.response.receivedEnd = true;
      if (this.response.stopAll && this.response.paused) this.response.queuedBody = body;
      else this.deliverBody(this.response, body, true);
    }
  }
}
