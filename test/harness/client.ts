// A small HTTP/1.1 client for e2e tests: one request, or N of them with a tally by status and by upstream.
import { Agent, request as httpRequest } from "node:http";

export interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  /** Sent as-is; set `host` to pick a virtual host. */
  headers?: Record<string, string>;
  body?: string;
  agent?: Agent;
  /** Where to connect (default 127.0.0.1); from a pod, a pod or service name or address. */
  host?: string;
  timeoutMs?: number;
}

export function send(port: number, options: RequestOptions = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: options.host ?? "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: options.headers,
        agent: options.agent,
        timeout: options.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const headers: Record<string, string> = {};
          for (const [key, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(",") : value;
          }
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString() });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(Object.assign(new Error(`no answer within ${options.timeoutMs} ms`), { code: "ETIMEDOUT" })));
    req.end(options.body);
  });
}

export interface Tally {
  total: number;
  byStatus: Record<number, number>;
  /** By the `x-upstream` response header ("none" when absent, e.g. a local reply). */
  byUpstream: Record<string, number>;
  /** With `tolerateErrors`: requests that got no response, by error code (ECONNREFUSED, ECONNRESET, ...). */
  errors: Record<string, number>;
  responses: Response[];
}

export interface LoadOptions {
  count: number;
  /** Requests in flight at once (default 1: one after another). */
  concurrency?: number;
  /** Per-request options; `i` counts from 0. */
  request?: (i: number) => RequestOptions;
  /** Tally requests that fail without a response in `errors` instead of throwing at the first. */
  tolerateErrors?: boolean;
}

export async function sendMany(port: number, options: LoadOptions): Promise<Tally> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency ?? 1 });
  const tally: Tally = { total: 0, byStatus: {}, byUpstream: {}, errors: {}, responses: new Array(options.count) };
  let next = 0;
  const worker = async () => {
    while (next < options.count) {
      const i = next++;
      let response: Response;
      try {
        response = await send(port, { ...options.request?.(i), agent });
      } catch (error) {
        if (!options.tolerateErrors) throw error;
        const code = (error as NodeJS.ErrnoException).code ?? "error";
        tally.errors[code] = (tally.errors[code] ?? 0) + 1;
        tally.total++;
        continue;
      }
      tally.responses[i] = response;
      tally.total++;
      tally.byStatus[response.status] = (tally.byStatus[response.status] ?? 0) + 1;
      const upstream = response.headers["x-upstream"] ?? "none";
      tally.byUpstream[upstream] = (tally.byUpstream[upstream] ?? 0) + 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency ?? 1 }, worker));
  } finally {
    agent.destroy();
  }
  return tally;
}
