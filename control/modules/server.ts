// The control plane's HTTP server (on 127.0.0.1 unless told otherwise): Wasm modules by sha256 (`/modules/<sha256>.wasm`, what Envoy's
// `vm_config.code.remote` fetches and checks against the same sha256), and the pages the control plane adds: the
// proxy status view (`/status`), metrics (`/metrics`), each proxy's configuration (`/debug/config_dump`).
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ServedModule } from "../resources.js";

/** A page the server answers GET requests for besides modules (/status, /metrics, /debug/...). */
export type Page = (query: URLSearchParams) => Promise<PageContent> | PageContent;
export interface PageContent {
  contentType: string;
  body: string;
  /** 200 unless given. */
  status?: number;
}

export interface ModuleServerOptions {
  /** Port on 127.0.0.1 (0 picks a free one). */
  port?: number;
  /** The address to listen on (default 127.0.0.1), which proxies are also told to fetch modules from. */
  host?: string;
  /** Pages by path, e.g. { "/status": ... }. */
  pages?: Record<string, Page>;
  /** Called for each module request: whether the module was there. */
  onModuleFetch?: (found: boolean) => void;
}

/** A page of JSON. */
export function jsonPage(value: unknown, status = 200): PageContent {
  return { contentType: "application/json", body: JSON.stringify(value, null, 2), status };
}

export class ModuleServer {
  private readonly modules = new Map<string, Uint8Array>();
  private readonly byFile = new Map<string, { mtimeMs: number; size: number; module: ServedModule }>();

  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
  ) {}

  static async start(options: ModuleServerOptions = {}): Promise<ModuleServer> {
    let modules: ModuleServer | undefined;
    const server = createServer(async (request, response) => {
      let url: URL | undefined;
      try {
        url = new URL(request.url ?? "/", "http://localhost");
      } catch {
        // A malformed request target ("GET http://[ ..."): answered 404 below, not thrown, which would end the process.
      }
      const path = url?.pathname ?? "";
      const match = /^\/modules\/([0-9a-f]{64})\.wasm$/.exec(path);
      const bytes = match && modules?.modules.get(match[1]);
      if (match) options.onModuleFetch?.(Boolean(bytes));
      const page = Object.hasOwn(options.pages ?? {}, path) ? options.pages![path] : undefined;
      if (request.method === "GET" && bytes) {
        response.writeHead(200, { "content-type": "application/wasm", "content-length": bytes.length });
        response.end(bytes);
      } else if (request.method === "GET" && page && url) {
        try {
          const content = await page(url.searchParams);
          response.writeHead(content.status ?? 200, { "content-type": content.contentType });
          response.end(content.body);
        } catch (error) {
          response.writeHead(500, { "content-type": "text/plain" });
          response.end(`${(error as Error).message}\n`);
        }
      } else {
        response.writeHead(404, { "content-type": "text/plain" });
        response.end("not found\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
    });
    modules = new ModuleServer(server, options.host ?? "127.0.0.1", (server.address() as AddressInfo).port);
    return modules;
  }

  /** Serves `bytes` under their sha256. Modules stay served: a proxy still loading an old version can finish. */
  add(bytes: Uint8Array): ServedModule {
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    this.modules.set(sha256, bytes);
    return { uri: `http://${this.host}:${this.port}/modules/${sha256}.wasm`, sha256, size: bytes.length };
  }

  /** The bytes served under a sha256, if any. */
  bytes(sha256: string): Uint8Array | undefined {
    return this.modules.get(sha256);
  }

  /** Serves a module file, read again only when it changed; undefined when it cannot be read. */
  addFile(path: string): ServedModule | undefined {
    try {
      const { mtimeMs, size } = statSync(path);
      const known = this.byFile.get(path);
      if (known && known.mtimeMs === mtimeMs && known.size === size) return known.module;
      const module = this.add(readFileSync(path));
      this.byFile.set(path, { mtimeMs, size, module });
      return module;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
