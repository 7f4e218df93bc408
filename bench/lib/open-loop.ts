// An open-loop, fixed-rate HTTP/1.1 load generator: request i is due at start + i / rate, whether or not earlier
// requests have been answered (a closed-loop tool like wrk slows down when the server does, and hides latency).
// Requests go over a pool of keep-alive connections; each response's latency is measured from the moment its
// request was written, and how late each write was against its schedule is reported too, so a run where the
// generator itself fell behind can be recognised. Raw sockets keep the client's own per-request cost small.
import { once } from "node:events";
import { connect, type Socket } from "node:net";

export interface OpenLoopOptions {
  /** Where to send (default 127.0.0.1; from a pod, another pod's address). */
  host?: string;
  port: number;
  /** Requests per second. */
  rate: number;
  durationMs: number;
  /** Keep-alive connections opened up front; when all are busy a new one is opened, so a slow answer never holds
   * back the next request (that would make the load closed-loop again). */
  connections?: number;
  path?: string;
  headers?: Record<string, string>;
  /** A response header every answer must carry (e.g. the one the filter adds), to prove the filter ran. */
  expectHeader?: string;
}

export interface OpenLoopResult {
  /** Latency of each completed request, microseconds. */
  latenciesUs: Float64Array;
  sent: number;
  completed: number;
  /** Responses that were not 200, or lacked expectHeader, or connections that failed. */
  errors: number;
  /** How late writes were against the schedule, microseconds (p99 and max). */
  lagP99Us: number;
  lagMaxUs: number;
}

const USERS = 1000;

interface Connection {
  socket: Socket;
  busy: boolean;
  sentAt: bigint;
  received: Buffer[];
  receivedBytes: number;
}

export async function openLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const total = Math.round((options.rate * options.durationMs) / 1000);
  const headers = { host: "bench.local", "user-agent": "skiff-bench/1", "x-cohort": "internal", ...options.headers };
  // 1000 distinct users, in turn (sticky cohort filters hash on x-user-id), prepared before the clock starts.
  const requests = Array.from({ length: USERS }, (_, user) =>
    Buffer.from(
      `GET ${options.path ?? "/"} HTTP/1.1\r\nx-user-id: user-${user}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`,
    ),
  );
  const expect = options.expectHeader ? Buffer.from(`\r\n${options.expectHeader.toLowerCase()}:`) : undefined;
  const latencies = new Float64Array(total);
  const lags = new Float64Array(total);
  let sent = 0;
  let completed = 0;
  let errors = 0;
  const idle: Connection[] = [];
  const all: Connection[] = [];

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const settle = () => {
    if (sent === total && completed + errors >= total) finish();
  };

  /** A new connection; writes made before it is connected are queued by Node. */
  const open = (): Connection => {
      const socket = connect({ host: options.host ?? "127.0.0.1", port: options.port, noDelay: true });
      const connection: Connection = { socket, busy: false, sentAt: 0n, received: [], receivedBytes: 0 };
      all.push(connection);
      socket.on("error", () => socket.destroy());
      socket.on("data", (chunk: Buffer) => {
        connection.received.push(chunk);
        connection.receivedBytes += chunk.length;
        const data = connection.received.length === 1 ? chunk : Buffer.concat(connection.received);
        const headerEnd = data.indexOf("\r\n\r\n");
        if (headerEnd < 0) return;
        const head = data.subarray(0, headerEnd).toString("latin1").toLowerCase();
        const length = /\r\ncontent-length: *(\d+)/.exec(head);
        if (!length) {
        // Not expected from Envoy here; count it and drop the connection rather than guess where the body ends.
        connection.socket.destroy();
        return;
      }
        if (data.length < headerEnd + 4 + Number(length[1])) return;
        const latencyNs = process.hrtime.bigint() - connection.sentAt;
        const ok = head.startsWith("http/1.1 200") && (!expect || data.subarray(0, headerEnd).toString("latin1").toLowerCase().includes(expect.toString("latin1")));
        if (ok) latencies[completed++] = Number(latencyNs) / 1000;
        else errors++;
        connection.received = [];
        connection.receivedBytes = 0;
        connection.busy = false;
        idle.push(connection);
        settle();
      });
      socket.on("close", () => {
        // The connection leaves the pool; a request in flight on it is lost.
        const index = idle.indexOf(connection);
        if (index >= 0) idle.splice(index, 1);
        if (connection.busy) {
          connection.busy = false;
          errors++;
          settle();
        }
      });
      return connection;
  };

  for (let i = 0; i < (options.connections ?? 8); i++) idle.push(open());
  await Promise.all(idle.map((connection) => once(connection.socket, "connect")));

  const intervalNs = 1e9 / options.rate;
  const start = process.hrtime.bigint();
  const tick = () => {
    const now = process.hrtime.bigint();
    while (sent < total && start + BigInt(Math.round(sent * intervalNs)) <= now) {
      const connection = idle.pop() ?? open();
      const due = start + BigInt(Math.round(sent * intervalNs));
      connection.busy = true;
      connection.sentAt = process.hrtime.bigint();
      lags[sent] = Number(connection.sentAt - due) / 1000;
      sent++;
      connection.socket.write(requests[sent % USERS]);
    }
    if (sent < total) {
      // Busy-poll with setImmediate (I/O still runs between polls): timers are too coarse (1 ms) for the schedule.
      const dueIn = Number(start + BigInt(Math.round(sent * intervalNs)) - process.hrtime.bigint());
      if (dueIn > 2e6) setTimeout(tick, Math.floor(dueIn / 1e6) - 1);
      else setImmediate(tick);
    }
  };
  tick();
  const timeout = setTimeout(finish, options.durationMs + 10_000);
  await finished;
  clearTimeout(timeout);
  for (const connection of all) connection.socket.destroy();
  const sortedLags = lags.subarray(0, sent).sort();
  return {
    latenciesUs: latencies.subarray(0, completed),
    sent,
    completed,
    // Requests still unanswered when the run timed out count as errors.
    errors: Math.max(errors, sent - completed),
    lagP99Us: sortedLags[Math.max(0, Math.ceil(0.99 * sent) - 1)] ?? 0,
    lagMaxUs: sortedLags[sent - 1] ?? 0,
  };
}
