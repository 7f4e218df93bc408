// Real upstream servers on 127.0.0.1 for e2e tests. Each echoes what it received (method, path, headers) as JSON,
// names itself in the `x-upstream` response header, and can be scripted per request: status, delay, reset.
import { createServer as createHttp1Server, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createH2cServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { track, untrack } from "./processes.js";

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** Body text; the default is the JSON echo. */
  body?: string;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Drop the connection instead of answering. */
  reset?: boolean;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The connection's peer (e.g. 127.0.0.6 when a sidecar's inbound passthrough delivered it) and local port. */
  remoteAddress: string;
  localPort: number;
  /** Over TLS: the SNI the client sent, and the CN of the certificate it presented (servers with `tls.ca`). */
  serverName?: string;
  clientCertificate?: string;
}

/** Decides the reply to one request; `index` counts from 0 over this server's life. */
export type Script = (request: ReceivedRequest, index: number) => Reply | Promise<Reply>;

export interface UpstreamOptions {
  /** The identity this server reports in `x-upstream` (e.g. "v1", "host-a"). */
  name: string;
  protocol?: "http1" | "h2c";
  /** Serve HTTP/1.1 over TLS with this certificate (a backend that terminates TLS itself); with `ca`, only to clients
   * presenting a certificate that CA signed. */
  tls?: { cert: Buffer | string; key: Buffer | string; ca?: Buffer | string };
  script?: Script;
  /** Where to listen (default 127.0.0.1, a free port); a pod's server listens on 0.0.0.0 and a fixed port. */
  host?: string;
  port?: number;
}

export class Upstream {
  readonly requests: ReceivedRequest[] = [];
  readonly description: string;
  private script: Script;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly name: string,
    private readonly server: Server | Http2Server,
    script: Script | undefined,
  ) {
    this.script = script ?? (() => ({}));
    this.description = `upstream ${name}`;
  }

  static async start(options: UpstreamOptions): Promise<Upstream> {
    let upstream!: Upstream;
    const handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
      void upstream.handle(req, res);
    const tls = options.tls && { ...options.tls, ...(options.tls.ca ? { requestCert: true, rejectUnauthorized: true } : {}) };
    const server = tls ? createHttpsServer(tls, handler) : options.protocol === "h2c" ? createH2cServer(handler) : createHttp1Server(handler);
    // Node closes an idle keep-alive connection after 5 s; Envoy (idle timeout 1 h) may send the next request on it
    // at that moment and answer 503 "upstream connection reset". A worker busy for seconds (a large Wasm module
    // compiling, a loaded machine) makes that race likely. Servers behind Envoy keep connections longer than Envoy
    // does, so the proxy decides when they close: https://www.envoyproxy.io/docs/envoy/latest/faq/configuration/timeouts
    if ("keepAliveTimeout" in server) server.keepAliveTimeout = 0;
    upstream = new Upstream(options.name, server, options.script);
    server.on("connection", (socket: Socket) => {
      upstream.sockets.add(socket);
      socket.once("close", () => upstream.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", resolve);
    });
    track(upstream);
    return upstream;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Replaces the script, e.g. to make a healthy server start failing. */
  setScript(script: Script): void {
    this.script = script;
  }

  private async handle(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(req.headers)) {
      if (value !== undefined && !key.startsWith(":")) headers[key] = Array.isArray(value) ? value.join(",") : value;
    }
    const received: ReceivedRequest = {
      method: req.method ?? "",
      path: req.url ?? "",
      headers,
      body: Buffer.concat(chunks).toString(),
      remoteAddress: req.socket.remoteAddress ?? "",
      localPort: req.socket.localPort ?? 0,
      ...(req.socket instanceof TLSSocket ? tlsPeer(req.socket) : {}),
    };
    const index = this.requests.push(received) - 1;
    const reply = await this.script(received, index);
    if (reply.delayMs) await sleep(reply.delayMs);
    if (reply.reset) {
      req.socket.destroy();
      return;
    }
    const body = reply.body ?? JSON.stringify({ upstream: this.name, ...received });
    res.writeHead(reply.status ?? 200, { "content-type": "application/json", "x-upstream": this.name, ...reply.headers });
    res.end(body);
  }

  async stop(): Promise<void> {
    untrack(this);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function tlsPeer(socket: TLSSocket): Pick<ReceivedRequest, "serverName" | "clientCertificate"> {
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  const subject = socket.getPeerCertificate().subject as { CN?: string } | undefined;
  return { ...(servername ? { serverName: servername } : {}), ...(subject?.CN ? { clientCertificate: subject.CN } : {}) };
}

export function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  return Upstream.start(options);
}
