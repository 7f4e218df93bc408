// `skiff proxy-config diff <proxy> [type]` (issue 9; beyond istioctl): what the EnvoyFilters, WasmPlugins and
// TrafficExtensions that apply to a connected proxy change in its Envoy configuration, as a unified diff per resource
// (YAML, proto3 JSON field names) headed by the patches and extensions that changed it. The control plane computes
// it (GET /debug/config_diff?proxy=<node id>, control/translate/config-diff.ts); this renders it.
import { Command, InvalidArgumentError } from "commander";
import { createTwoFilesPatch } from "diff";
import { stringify } from "yaml";
import type { ResourceChange } from "../translate/config-diff.js";
import type { TypeUrl } from "../resources.js";
import { port } from "./options.js";
import { CONFIG_TYPES } from "./config-types.js";

const TYPES: Record<string, TypeUrl> = CONFIG_TYPES;
const SHORT = Object.fromEntries(Object.entries(TYPES).map(([short, typeUrl]) => [typeUrl, short]));

export function proxyConfigDiffCommand(): Command {
  return new Command("diff")
    .description("show what the EnvoyFilters and extensions (WasmPlugin, TrafficExtension) applying to a proxy change in its configuration, per resource")
    .argument("<proxy>", "the proxy's node id (as `skiff proxy-status` lists it)")
    .argument("[type]", `${Object.keys(TYPES).join("|")}|all`, (value: string) => {
      if (value !== "all" && !(value in TYPES)) throw new InvalidArgumentError(`expected one of ${Object.keys(TYPES).join(", ")}, all`);
      return value;
    }, "all")
    .option("--http-port <port>", "the control plane's HTTP port", port, 18080)
    .option("--host <address>", "the control plane's address (its --listen)", "127.0.0.1")
    .option("-o, --output <format>", "diff (unified, YAML) or json", "diff")
    .action(async (proxy: string, type: string, options: { httpPort: number; host: string; output: string }) => {
      const changes = (await fetchConfigDiff(options.host, options.httpPort, proxy)).filter((change) => type === "all" || change.type === TYPES[type]);
      console.log(options.output === "json" ? JSON.stringify(changes, null, 2) : renderConfigDiff(proxy, changes));
    });
}

export async function fetchConfigDiff(host: string, httpPort: number, proxy: string): Promise<ResourceChange[]> {
  const url = `http://${host}:${httpPort}/debug/config_diff?proxy=${encodeURIComponent(proxy)}`;
  let response: Response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`no control plane answers at ${url} (is \`skiff control-plane\` running with --http-port ${httpPort}?)`);
  }
  const body = (await response.json()) as { error?: string; changes?: ResourceChange[] };
  if (!response.ok) throw new Error(body.error ?? `${url}: HTTP ${response.status}`);
  return body.changes ?? [];
}

/** Each changed resource as `--- <type>/<name> (without)` / `+++ ... (with)` and its hunks, after a line naming
 * what changed it. */
export function renderConfigDiff(proxy: string, changes: ResourceChange[]): string {
  if (changes.length === 0) return `no EnvoyFilter or extension changes the configuration of ${proxy}`;
  return changes
    .map((change) => {
      const path = `${SHORT[change.type] ?? change.type}/${change.name}`;
      const text = (body: unknown) => (body === undefined ? "" : stringify(body, { lineWidth: 0 }));
      const patch = createTwoFilesPatch(`${path} (without)`, `${path} (with)`, text(change.before), text(change.after), undefined, undefined, { context: 3 });
      // createTwoFilesPatch starts with an "Index:" line and a separator; the file headers and hunks are the diff.
      const hunks = patch.split("\n").filter((line) => !line.startsWith("Index: ") && !/^=+$/.test(line)).join("\n").trimEnd();
      return `# ${path} ${change.change} by ${change.by.length ? change.by.join(", ") : "(an interaction of the above)"}\n${hunks}`;
    })
    .join("\n\n");
}
