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

export function statusTable(proxies: StreamStatus[], now = Date.now()): string {
  // VERSION is the configuration's content hash: every control plane replica shows the same one for the same config.
  const rows = [["NAME", "ROLE", "XDS", "VERSION", ...COLUMNS.map(([label]) => label), "LAST ACK"]];
  const errors: string[] = [];
  const notes: string[] = [];
  for (const proxy of proxies) {
    const acks = Object.values(proxy.types).flatMap((type) => (type?.lastAckAt ? [Date.parse(type.lastAckAt)] : []));
    rows.push([
      proxy.nodeId,
      proxy.role,
      proxy.protocol,
      proxy.contentVersion ?? "-",
      ...COLUMNS.map(([, type]) => proxy.types[type]?.status ?? "IGNORED"),
      acks.length ? `${age(now - Math.max(...acks))} ago` : "never",
    ]);
    for (const [label, type] of COLUMNS) {
      const status = proxy.types[type];
      if (!status?.error) continue;
      const when = status.nackedAt ? ` ${age(now - Date.parse(status.nackedAt))} ago` : "";
      errors.push(`${proxy.nodeId} ${label} rejected version ${status.sentVersion}${when}: ${status.error}`);
    }
    for (const note of proxy.notes ?? []) notes.push(`${proxy.nodeId}: ${note}`);
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const lines = rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd());
  return [...lines, ...(errors.length ? ["", ...errors] : []), ...(notes.length ? ["", ...notes] : [])].join("\n");
}

/** A duration as istioctl and kubectl print ages: 45s, 3m12s, 2h5m, 3d4h. */
export function age(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${seconds % 60}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}

export async function printProxyStatus(httpPort: number, host = "127.0.0.1"): Promise<void> {
  const url = `http://${host}:${httpPort}/status`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`no control plane answers at ${url} (is \`skiff control-plane\` running with --http-port ${httpPort}?)`);
  }
  console.log(statusTable((await response.json()) as StreamStatus[]));
}
