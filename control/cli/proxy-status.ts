// `skiff proxy-status`: the control plane's status view as a table, like `istioctl proxy-status`.
import type { StreamStatus } from "../xds/streams.js";

const COLUMNS = [
  ["CDS", "Cluster"],
  ["EDS", "ClusterLoadAssignment"],
  ["ECDS", "TypedExtensionConfig"],
  ["SDS", "Secret"],
  ["LDS", "Listener"],
  ["RDS", "RouteConfiguration"],
] as const;

export function statusTable(proxies: StreamStatus[]): string {
  const rows = [["NAME", "ROLE", "XDS", "SNAPSHOT", ...COLUMNS.map(([label]) => label)]];
  const errors: string[] = [];
  for (const proxy of proxies) {
    rows.push([
      proxy.nodeId,
      proxy.role,
      proxy.protocol,
      String(proxy.snapshotVersion ?? "-"),
      ...COLUMNS.map(([, type]) => proxy.types[type]?.status ?? "IGNORED"),
    ]);
    for (const [label, type] of COLUMNS) {
      const error = proxy.types[type]?.error;
      if (error) errors.push(`${proxy.nodeId} ${label} rejected version ${proxy.types[type]?.sentVersion}: ${error}`);
    }
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const lines = rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  return [...lines, ...(errors.length ? ["", ...errors] : [])].join("\n");
}

export async function printProxyStatus(httpPort: number): Promise<void> {
  const url = `http://127.0.0.1:${httpPort}/status`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`no control plane answers at ${url} (is \`skiff control-plane\` running with --http-port ${httpPort}?)`);
  }
  console.log(statusTable((await response.json()) as StreamStatus[]));
}
