// The coolstore services of `skiff demo`, as small Node HTTP servers on the 127.0.0.1 ports examples/services.yaml
// lists: webapp (9081), which calls catalog through the gateway, and catalog v1 (9082) and v2 (9083; v2 adds
// image URLs, as in the book).
import { createServer, get as httpGet, type IncomingMessage, type Server } from "node:http";

export const DEMO_PORTS = { gateway: 8080, webapp: 9081, catalogV1: 9082, catalogV2: 9083 } as const;

/** Headers a service passes on when it calls the next one, so routing cohorts and traces follow the request. */
const PROPAGATED = ["x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3", "x-istio-cohort", "x-user"];

const ITEMS = [
  { id: 1, color: "amber", department: "Eyewear", name: "Elinor Glasses", price: "282.00" },
  { id: 2, color: "cyan", department: "Clothing", name: "Atlas Shirt", price: "127.00" },
  { id: 3, color: "teal", department: "Clothing", name: "Small Metal Shoes", price: "232.00" },
];

function json(status: number, body: unknown) {
  return { status, body: JSON.stringify(body, null, 2) + "\n" };
}

function traceHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PROPAGATED) {
    const value = req.headers[name];
    if (typeof value === "string") out[name] = value;
  }
  return out;
}

function catalog(version: "v1" | "v2") {
  return async (req: IncomingMessage) => {
    const items = version === "v2" ? ITEMS.map((item) => ({ ...item, imageUrl: `http://lorempixel.com/640/480/${item.id}` })) : ITEMS;
    return json(200, { service: "catalog", version, path: req.url, items, trace: traceHeaders(req) });
  };
}

async function webapp(req: IncomingMessage) {
  if (!req.url?.startsWith("/api/catalog")) return json(200, { service: "webapp", hint: "try /api/catalog" });
  // webapp reaches catalog through the gateway, like any client, passing on the cohort and trace headers.
  const response = await get(DEMO_PORTS.gateway, "/items", { host: "catalog.istioinaction.io", ...traceHeaders(req) });
  let catalogBody: unknown = response.body;
  try {
    catalogBody = JSON.parse(response.body);
  } catch {
    // Not JSON (an Envoy local reply): shown as text.
  }
  return json(response.status === 200 ? 200 : 502, { service: "webapp", trace: traceHeaders(req), catalog: { status: response.status, body: catalogBody } });
}

/** A GET with its own Host header (fetch would not send one). */
function get(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: "127.0.0.1", port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    }).on("error", reject);
  });
}

async function serve(port: number, handle: (req: IncomingMessage) => Promise<{ status: number; body: string }>): Promise<Server> {
  const server = createServer((req, res) => {
    handle(req).then(
      ({ status, body }) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(body);
      },
      (error: Error) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`${error.message}\n`);
      },
    );
  });
  // Behind Envoy the proxy decides when idle connections close (Node's 5 s default races Envoy's 1 h idle timeout).
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return server;
}

/** Starts the three services; the returned function stops them. */
export async function startDemoServices(): Promise<() => Promise<void>> {
  const servers: Server[] = [];
  const stop = async () => {
    await Promise.all(
      servers.map((server) => {
        server.closeAllConnections();
        return new Promise((resolve) => server.close(resolve));
      }),
    );
  };
  try {
    servers.push(await serve(DEMO_PORTS.webapp, webapp));
    servers.push(await serve(DEMO_PORTS.catalogV1, catalog("v1")));
    servers.push(await serve(DEMO_PORTS.catalogV2, catalog("v2")));
  } catch (error) {
    await stop();
    throw new Error(`cannot start the demo services on 127.0.0.1:${DEMO_PORTS.webapp}-${DEMO_PORTS.catalogV2}: ${(error as Error).message}`);
  }
  return stop;
}
