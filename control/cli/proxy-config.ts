// `skiff proxy-config <proxy> [type]`: what one proxy holds, like `istioctl proxy-config`, from two sides: the
// control plane's view (what it sends: GET /debug/config_dump?proxy=<node id>) and, with --envoy-admin, Envoy's own
// /config_dump (what it runs). With both, `--diff` lists the resources that differ, as canonical protobuf: a resource
// only the control plane has (not applied yet, or rejected), only Envoy has (stale or static), or different in each.
import { Command, Option } from "commander";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { messageType } from "../protos/encode.js";
import { envoyRegistry } from "../protos/registry.js";
import { port } from "./options.js";
import { proxyConfigDiffCommand } from "./proxy-config-diff.js";
import { CONFIG_TYPES, type ConfigType } from "./config-types.js";


type Body = Record<string, unknown>;
/** Resources by type, then by name. */
export type ConfigView = Record<ConfigType, Map<string, Body>>;

function emptyView(): ConfigView {
  return Object.fromEntries(Object.keys(CONFIG_TYPES).map((type) => [type, new Map()])) as unknown as ConfigView;
}

const nameOf = (type: ConfigType, body: Body) => String(type === "endpoints" ? body.cluster_name : body.name);

/** The control plane's view of a proxy (control-plane.ts `configDump`). */
export async function controlPlaneView(httpPort: number, nodeId: string): Promise<ConfigView> {
  const url = `http://127.0.0.1:${httpPort}/debug/config_dump?proxy=${encodeURIComponent(nodeId)}`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`no control plane answers at ${url} (is \`skiff control-plane\` running with --http-port ${httpPort}?)`);
  }
  const dump = (await response.json()) as { error?: string; types?: Record<string, Array<{ name: string; body: Body }>> };
  if (!response.ok) throw new Error(dump.error ?? `${url}: HTTP ${response.status}`);
  const view = emptyView();
  for (const [type, typeUrl] of Object.entries(CONFIG_TYPES) as Array<[ConfigType, string]>) {
    for (const resource of dump.types?.[typeUrl] ?? []) view[type].set(resource.name, resource.body);
  }
  return view;
}

/** Envoy's view, from its admin /config_dump (with EDS): the dynamic resources it runs, and the errors it kept. */
export async function envoyView(adminUrl: string): Promise<{ view: ConfigView; errors: string[] }> {
  const url = `${adminUrl.replace(/\/$/, "")}/config_dump?include_eds`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`no Envoy admin answers at ${url}`);
  }
  const dump = (await response.json()) as { configs: Array<Record<string, unknown>> };
  const view = emptyView();
  const errors: string[] = [];
  const put = (type: ConfigType, body: unknown) => {
    if (!body || typeof body !== "object") return;
    const { "@type": _type, ...rest } = body as Body;
    view[type].set(nameOf(type, rest), rest);
  };
  for (const config of dump.configs ?? []) {
    const kind = String(config["@type"] ?? "").split(".").pop();
    const list = (key: string) => (config[key] as Array<Record<string, unknown>> | undefined) ?? [];
    if (kind === "ListenersConfigDump") {
      for (const entry of list("dynamic_listeners")) {
        put("listeners", (entry.active_state as Body | undefined)?.listener);
        const error = entry.error_state as { details?: string } | undefined;
        if (error?.details) errors.push(`listener ${String(entry.name)}: ${error.details}`);
      }
    } else if (kind === "ClustersConfigDump") {
      for (const entry of list("dynamic_active_clusters")) put("clusters", entry.cluster);
    } else if (kind === "RoutesConfigDump") {
      for (const entry of list("dynamic_route_configs")) put("routes", entry.route_config);
    } else if (kind === "EndpointsConfigDump") {
      for (const entry of list("dynamic_endpoint_configs")) put("endpoints", entry.endpoint_config);
    } else if (kind === "SecretsConfigDump") {
      for (const entry of list("dynamic_active_secrets")) put("secrets", entry.secret);
    } else if (kind === "EcdsConfigDump") {
      for (const entry of list("ecds_filters")) put("ecds", entry.ecds_filter);
    }
  }
  // Envoy also lists the endpoints of clusters that carry them inline (STATIC, DNS); only EDS ones are resources.
  const eds = new Set([...view.clusters.values()].filter((cluster) => cluster.type === "EDS").map((cluster) => String((cluster.eds_cluster_config as Body | undefined)?.service_name ?? cluster.name)));
  for (const name of view.endpoints.keys()) if (!eds.has(name)) view.endpoints.delete(name);
  return { view, errors };
}

/** A resource as canonical proto3 JSON (default values dropped, one spelling per field), so that equal protobufs
 * compare equal whichever side wrote them. Fields this control plane's protos lack are ignored. */
export function canonical(type: ConfigType, body: Body): unknown {
  const descriptor = messageType(CONFIG_TYPES[type]);
  const registry = envoyRegistry();
  return toJson(descriptor, fromJson(descriptor, body as never, { registry, ignoreUnknownFields: true }), { registry, useProtoFieldName: true });
}

/** Whether Envoy runs what the control plane sent: every field the control plane set has the same value in Envoy's
 * copy. Fields only Envoy's copy has are what Envoy fills in itself (an endpoint's health_status, EDS's default
 * overprovisioning_factor, empty sub-messages) and do not count. */
export function applied(sent: unknown, running: unknown): boolean {
  if (Array.isArray(sent)) return Array.isArray(running) && sent.length === running.length && sent.every((item, index) => applied(item, running[index]));
  if (sent && typeof sent === "object") {
    if (!running || typeof running !== "object" || Array.isArray(running)) return false;
    return Object.entries(sent).every(([key, value]) => applied(value, (running as Body)[key]));
  }
  return sent === running;
}

export interface Difference {
  type: ConfigType;
  name: string;
  state: "only in control plane" | "only in Envoy" | "differs";
}

export function diffViews(controlPlane: ConfigView, envoy: ConfigView, types: ConfigType[]): Difference[] {
  const out: Difference[] = [];
  for (const type of types) {
    const names = [...new Set([...controlPlane[type].keys(), ...envoy[type].keys()])].sort();
    for (const name of names) {
      const mine = controlPlane[type].get(name);
      const theirs = envoy[type].get(name);
      if (!theirs) out.push({ type, name, state: "only in control plane" });
      else if (!mine) out.push({ type, name, state: "only in Envoy" });
      else if (!applied(canonical(type, mine), canonical(type, theirs))) out.push({ type, name, state: "differs" });
    }
  }
  return out;
}

/** One line per resource, with the columns istioctl's short output has for that type. */
export function shortTable(type: ConfigType, resources: Map<string, Body>): string {
  const rows: string[][] = [];
  for (const [name, body] of [...resources].sort(([a], [b]) => a.localeCompare(b))) rows.push(summary(type, name, body));
  const header = HEADERS[type];
  const table = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...table.map((row) => (row[column] ?? "").length)));
  return table.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()).join("\n");
}

const HEADERS: Record<ConfigType, string[]> = {
  listeners: ["NAME", "ADDRESS", "PORT", "DIRECTION", "CHAINS", "HTTP FILTERS"],
  routes: ["NAME", "VIRTUAL HOST", "DOMAINS", "ROUTES"],
  clusters: ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"],
  endpoints: ["ENDPOINT", "WEIGHT", "CLUSTER"],
  secrets: ["RESOURCE NAME", "TYPE"],
  ecds: ["NAME", "TYPE", "VM", "CODE"],
};

/** proto3 JSON read loosely, for display only. */
type Loose = Record<string, any>;

function summary(type: ConfigType, name: string, body: Body): string[] {
  const json = body as Loose;
  switch (type) {
    case "listeners": {
      const address = json.address?.socket_address ?? {};
      const chains: Loose[] = json.filter_chains ?? [];
      const filters = chains.flatMap((chain) => (chain.filters ?? []).flatMap((filter: Loose) => (filter.typed_config?.http_filters ?? []).map((h: Loose) => String(h.name))));
      return [name, String(address.address ?? "-"), String(address.port_value ?? "-"), String(json.traffic_direction ?? "-"), String(chains.length), [...new Set(filters)].join(",")];
    }
    case "routes": {
      const hosts: Loose[] = json.virtual_hosts ?? [];
      return [name, hosts.map((h) => h.name).join(","), hosts.flatMap((h) => h.domains ?? []).join(","), String(hosts.reduce((n, h) => n + (h.routes?.length ?? 0), 0))];
    }
    case "clusters": {
      const [direction, port, subset, host] = name.includes("|") ? name.split("|") : ["-", "-", "-", name];
      return [host ?? name, port || "-", subset || "-", direction ?? "-", String(json.type ?? "EDS")];
    }
    case "endpoints": {
      const endpoints: Loose[] = (json.endpoints ?? []).flatMap((locality: Loose) => locality.lb_endpoints ?? []);
      const address = (lb: Loose) => `${lb.endpoint?.address?.socket_address?.address}:${lb.endpoint?.address?.socket_address?.port_value}`;
      return [endpoints.map(address).join(",") || "-", endpoints.map((lb) => String(lb.load_balancing_weight ?? 1)).join(",") || "-", name];
    }
    case "secrets":
      return [name, json.tls_certificate ? "Cert Chain" : json.validation_context ? "CA" : "-"];
    case "ecds": {
      const config = json.typed_config?.config ?? {};
      const code = config.vm_config?.code ?? {};
      const where = code.local?.inline_bytes ? `inline (${Math.round((code.local.inline_bytes.length * 3) / 4 / 1024)} KiB)` : code.remote?.sha256 ? `remote sha256:${String(code.remote.sha256).slice(0, 12)}` : "-";
      return [name, String(json.typed_config?.["@type"] ?? "-").split(".").pop()!, String(config.vm_config?.vm_id ?? "-"), where];
    }
  }
}

export function proxyConfigCommand(): Command {
  return new Command("proxy-config")
    .description("show what a proxy holds by type, from the control plane and (with --envoy-admin) from Envoy's /config_dump, like istioctl proxy-config")
    .argument("<proxy>", "the proxy's node id (see skiff proxy-status)")
    .argument("[type]", `${Object.keys(CONFIG_TYPES).join(", ")} or all`, "all")
    .option("--http-port <port>", "the control plane's HTTP port on 127.0.0.1", port, 18080)
    .option("--envoy-admin <url>", "the proxy's admin address (e.g. http://127.0.0.1:9901): show what Envoy runs")
    .option("--diff", "with --envoy-admin: list the resources that differ between the control plane and Envoy")
    .addOption(new Option("-o, --output <format>", "output format").choices(["short", "json"]).default("short"))
    // `skiff proxy-config diff PROXY`: what EnvoyFilters and extensions change (commander runs the subcommand when
    // the first operand names it, this command's action otherwise; positional options: an option after `diff` is the
    // subcommand's, such as its own --http-port).
    .enablePositionalOptions()
    .addCommand(proxyConfigDiffCommand())
    .action(async (proxy: string, type: string, options: { httpPort: number; envoyAdmin?: string; diff?: boolean; output: "short" | "json" }) => {
      if (type !== "all" && !(type in CONFIG_TYPES)) throw new Error(`unknown type ${type}: expected ${Object.keys(CONFIG_TYPES).join(", ")} or all`);
      const types = (type === "all" ? Object.keys(CONFIG_TYPES) : [type]) as ConfigType[];
      if (options.diff && !options.envoyAdmin) throw new Error("--diff compares with Envoy: give --envoy-admin too");
      const controlPlane = options.diff || !options.envoyAdmin ? await controlPlaneView(options.httpPort, proxy) : undefined;
      const envoy = options.envoyAdmin ? await envoyView(options.envoyAdmin) : undefined;
      if (options.diff) {
        const differences = diffViews(controlPlane!, envoy!.view, types);
        if (options.output === "json") console.log(JSON.stringify({ differences, envoyErrors: envoy!.errors }, null, 2));
        else {
          for (const difference of differences) console.log(`${difference.type.padEnd(9)} ${difference.state.padEnd(21)} ${difference.name}`);
          for (const error of envoy!.errors) console.log(`Envoy rejected: ${error}`);
          if (differences.length === 0) console.log(`${proxy}: Envoy runs what the control plane sent (${types.join(", ")}).`);
        }
        if (differences.length > 0) process.exitCode = 1;
        return;
      }
      const view = (envoy?.view ?? controlPlane)!;
      if (options.output === "json") {
        console.log(JSON.stringify(Object.fromEntries(types.map((t) => [t, [...view[t].values()]])), null, 2));
        return;
      }
      console.log(types.map((t) => (types.length > 1 ? `# ${t}\n` : "") + shortTable(t, view[t])).join("\n\n"));
    });
}
