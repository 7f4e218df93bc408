// The "app" of a test pod: a Node process started in the pod's network namespace (pods.ts, PodApp) that takes
// commands as JSON lines on stdin and answers each with one JSON line on stdout. A test in the host's namespace cannot
// open sockets in a pod itself, so everything the app does on the pod network goes through this process:
//   { id, op: "listen", port, name, status?, delayMs? }   an echo server (upstream.ts) on 0.0.0.0:port
//   { id, op: "received", port }                          what that server received
//   { id, op: "request", host, port, options }            one HTTP request (client.ts send)
//   { id, op: "load", host, port, count, concurrency, options }  many, tallied; failures counted, not thrown
//   { id, op: "connect", host, port, timeoutMs }          a bare TCP connect: "connected" or the error code
// Answers: { id, result } or { id, error: { code, message } }.
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { type RequestOptions, send, sendMany } from "./client.js";
import { Upstream } from "./upstream.js";

interface Command {
  id: number;
  op: "listen" | "received" | "request" | "load" | "connect";
  host?: string;
  port: number;
  name?: string;
  status?: number;
  delayMs?: number;
  options?: RequestOptions;
  count?: number;
  concurrency?: number;
  timeoutMs?: number;
}

const servers = new Map<number, Upstream>();

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
