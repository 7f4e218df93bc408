// The coolstore services of `skiff demo`, as small Node HTTP servers on the ports examples/services.yaml lists:
// webapp (9081), which calls catalog, and catalog v1 (9082) and v2 (9083; v2 adds image URLs, as in the book). In the
// loopback layout they listen on 127.0.0.1 and webapp calls catalog through the gateway; in the mesh layout each runs
// in its pod (demo-pod.ts) and webapp calls the catalog service by name, east-west through both sidecars.
import { createServer, get as httpGet, type IncomingMessage, type Server } from "node:http";

export const DEMO_PORTS = { gateway: 8080, webapp: 9081, catalogV1: 9082, catalogV2: 9083 } as const;

export type DemoService = "webapp" | "catalog-v1" | "catalog-v2";
export const DEMO_SERVICE_PORTS: Record<DemoService, number> = { webapp: DEMO_PORTS.webapp, "catalog-v1": DEMO_PORTS.catalogV1, "catalog-v2": DEMO_PORTS.catalogV2 };

/** Where webapp sends its catalog calls: an address and port, and the Host header that routes them. */
export interface CatalogCall {
  host: string;
  port: number;
  hostHeader: string;
}
/** The loopback layout: through the gateway, like any client. */
export const THROUGH_GATEWAY: CatalogCall = { host: "127.0.0.1", port: DEMO_PORTS.gateway, hostHeader: "catalog.istioinaction.io" };
/** The mesh layout: the catalog service by name (examples/services.yaml), captured by webapp's sidecar. */
export const EAST_WEST: CatalogCall = { host: "catalog.istioinaction.svc.cluster.local", port: 3000, hostHeader: "catalog.istioinaction.svc.cluster.local:3000" };

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

function webapp(call: CatalogCall) {
  return async (req: IncomingMessage) => {
    if (!req.url?.startsWith("/api/catalog")) return json(200, { service: "webapp", hint: "try /api/catalog" });
    // webapp passes on the cohort and trace headers, so the catalog route sees them.
    const response = await get(call, "/items", { host: call.hostHeader, ...traceHeaders(req) });
    let catalogBody: unknown = response.body;
    try {
      catalogBody = JSON.parse(response.body);
    } catch {
      // Not JSON (an Envoy local reply): shown as text.
    }
    return json(response.status === 200 ? 200 : 502, { service: "webapp", trace: traceHeaders(req), catalog: { status: response.status, body: catalogBody } });
  };
}

/** A GET with its own Host header (fetch would not send one). */
function get(call: CatalogCall, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet({ host: call.host, port: call.port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    }).on("error", reject);
  });
}

/** One demo service listening on `listenHost` at its port. */
export function serveDemoService(service: DemoService, listenHost: string, call: CatalogCall): Promise<Server> {
  const handler = service === "webapp" ? webapp(call) : catalog(service === "catalog-v1" ? "v1" : "v2");
  return serve(listenHost, DEMO_SERVICE_PORTS[service], handler);
}

async function serve(host: string, port: number, handle: (req: IncomingMessage) => Promise<{ status: number; body: string }>): Promise<Server> {
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
    server.listen(port, host, resolve);
  });
  return server;
}

/** Starts the three services on 127.0.0.1 (the loopback layout); the returned function stops them. */
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
    for (const service of ["webapp", "catalog-v1", "catalog-v2"] as const) servers.push(await serveDemoService(service, "127.0.0.1", THROUGH_GATEWAY));
  } catch (error) {
    await stop();
    throw new Error(`cannot start the demo services on 127.0.0.1:${DEMO_PORTS.webapp}-${DEMO_PORTS.catalogV2}: ${(error as Error).message}`);
  }
  return stop;
}
