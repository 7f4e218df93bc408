// The "app" of a test pod: a Node process started in the pod's network namespace (pods.ts, PodApp) that takes
// commands as JSON lines on stdin and answers each with one JSON line on stdout. A test in the host's namespace cannot
// open sockets in a pod itself, so everything the app does on the pod network goes through this process:
//   { id, op: "listen", port, name, status?, delayMs? }   an echo server (upstream.ts) on 0.0.0.0:port
//   { id, op: "received", port }                          what that server received
//   { id, op: "request", host, port, options }            one HTTP request (client.ts send)
//   { id, op: "load", host, port, count, concurrency, options }  many, tallied; failures counted, not thrown
//   { id, op: "connect", host, port, timeoutMs }          a bare TCP connect: "connected" or the error code
//   { id, op: "greet", port, name, tls? }                 a server-first TCP server on 0.0.0.0:port: each connection
//                                                          gets `name` and is closed (TLS first with tls: { cert, key })
//   { id, op: "greeting", host, port, tls? }              connects (TLS with tls: { servername, ca }), returns what the
//                                                          server said until it closed, and the certificate's subject
//   { id, op: "echoTcp", port }                           a client-first TCP echo server on 0.0.0.0:port that keeps
//                                                          the bytes of each connection
//   { id, op: "echoed", port }                            those bytes, base64, one string per connection
//   { id, op: "converse", host, port, data }              connects, sends `data` (base64), ends its side, returns
//                                                          what came back until the server closed (base64)
// Answers: { id, result } or { id, error: { code, message } }.
import { connect, createServer, type Server, type Socket } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { createInterface } from "node:readline";
import { type RequestOptions, send, sendMany } from "./client.js";
import { Upstream } from "./upstream.js";

interface Command {
  id: number;
  op: "listen" | "received" | "request" | "load" | "connect" | "greet" | "greeting" | "echoTcp" | "echoed" | "converse";
  host?: string;
  port: number;
  name?: string;
  status?: number;
  delayMs?: number;
  options?: RequestOptions;
  count?: number;
  concurrency?: number;
  timeoutMs?: number;
  tls?: { cert?: string; key?: string; servername?: string; ca?: string };
  data?: string;
}

export interface Greeting {
  said: string;
  /** The CN of the certificate the server showed (TLS only). */
  certificateFor?: string;
}

const servers = new Map<number, Upstream>();
const greeters: Server[] = [];

function greet(port: number, name: string, tls?: { cert?: string; key?: string }): Promise<void> {
  const onConnection = (socket: Socket) => {
    socket.on("error", () => {}); // A client that gives up does not stop the server.
    socket.end(`${name}\n`);
  };
  const server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }, onConnection) : createServer(onConnection);
  greeters.push(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve());
  });
}

function greeting(host: string, port: number, tls?: { servername?: string; ca?: string }): Promise<Greeting> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tls ? tlsConnect({ host, port, servername: tls.servername, ca: tls.ca }) : connect({ host, port });
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("end", () => {
      const certificateFor = tls ? String((socket as ReturnType<typeof tlsConnect>).getPeerCertificate().subject?.CN) : undefined;
      resolve({ said: Buffer.concat(chunks).toString().trim(), ...(certificateFor ? { certificateFor } : {}) });
    });
    socket.once("error", reject);
  });
}

/** Bytes each connection to an echo server brought, by port. */
const echoed = new Map<number, Buffer[]>();

function echoTcp(port: number): Promise<void> {
  const connections: Buffer[] = [];
  echoed.set(port, connections);
  const server = createServer((socket: Socket) => {
    const index = connections.push(Buffer.alloc(0)) - 1;
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      connections[index] = Buffer.concat([connections[index]!, chunk]);
      socket.write(chunk);
    });
  });
  greeters.push(server);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve());
  });
}

function converse(host: string, port: number, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host, port }, () => socket.end(data));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("close", () => resolve(Buffer.concat(chunks).toString("base64")));
    socket.once("error", reject);
  });
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.setTimeout(timeoutMs, () => socket.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })));
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", reject);
  });
}

async function handle(command: Command): Promise<unknown> {
  switch (command.op) {
    case "listen": {
      const reply = { status: command.status, delayMs: command.delayMs };
      const server = await Upstream.start({ name: command.name ?? "app", host: "0.0.0.0", port: command.port, script: () => reply });
      servers.set(command.port, server);
      return { port: server.port };
    }
    case "received":
      return servers.get(command.port)?.requests ?? [];
    case "request":
      return send(command.port, { ...command.options, host: command.host });
    case "load": {
      const tally = await sendMany(command.port, {
        count: command.count ?? 1,
        concurrency: command.concurrency,
        tolerateErrors: true,
        request: () => ({ ...command.options, host: command.host }),
      });
      return { ...tally, responses: undefined };
    }
    case "connect":
      return tcpConnect(command.host ?? "127.0.0.1", command.port, command.timeoutMs ?? 5000);
    case "greet":
      return greet(command.port, command.name ?? "app", command.tls);
    case "greeting":
      return greeting(command.host ?? "127.0.0.1", command.port, command.tls);
    case "echoTcp":
      return echoTcp(command.port);
    case "echoed":
      return (echoed.get(command.port) ?? []).map((bytes) => bytes.toString("base64"));
    case "converse":
      return converse(command.host ?? "127.0.0.1", command.port, Buffer.from(command.data ?? "", "base64"));
  }
}

const output = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line) as Command;
  handle(command).then(
    (result) => output({ id: command.id, result }),
    (error: NodeJS.ErrnoException) => output({ id: command.id, error: { code: error.code ?? "error", message: error.message } }),
  );
});
// The harness stops the agent by closing stdin (or killing it): then the servers close too.
process.stdin.on("end", () => process.exit(0));
output({ ready: true });
