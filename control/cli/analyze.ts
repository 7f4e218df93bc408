// `skiff analyze DIR`: istioctl analyze for a config folder. Reads DIR as the control plane would, asks the running
// control plane (if any) which proxies are connected, and prints each finding as istioctl does:
//   Error [IST0101] (VirtualService shop/catalog routes.yaml) Referenced host not found: "catalog2"
// Exits 1 when there is an Error (istioctl's default --failure-threshold), 0 otherwise.
import { Command, Option } from "commander";
import type { ConnectedProxy, Level, Message } from "../analyze/analyze.js";
import { port } from "./options.js";

async function connectedProxies(httpPort: number): Promise<ConnectedProxy[] | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${httpPort}/status`, { signal: AbortSignal.timeout(2_000) });
    return ((await response.json()) as ConnectedProxy[]).map(({ nodeId, role, labels }) => ({ nodeId, role, labels: labels ?? {} }));
  } catch {
    return undefined;
  }
}

export function formatMessage(message: Message): string {
  return `${message.level} [${message.code}] (${message.resource}${message.file && !message.resource.includes(message.file) ? ` ${message.file}` : ""}) ${message.message}`;
}

export function analyzeCommand(): Command {
  return new Command("analyze")
    .description("find configuration that is valid but does not do what it says, with istioctl analyze's message codes")
    .argument("<dir>", "the config folder")
    .option("--http-port <port>", "the control plane's HTTP port on 127.0.0.1, for the connected proxies", port, 18080)
    .option("--no-control-plane", "do not ask a running control plane (the Gateway selector check is then skipped)")
    .addOption(new Option("-o, --output <format>", "output format").choices(["log", "json"]).default("log"))
    .action(async (dir: string, options: { httpPort: number; controlPlane: boolean; output: "log" | "json" }) => {
      const [{ analyze }, { loadConfigDir }] = await Promise.all([import("../analyze/analyze.js"), import("../sources/index.js")]);
      const { mesh, errors } = loadConfigDir(dir);
      const proxies = options.controlPlane ? await connectedProxies(options.httpPort) : undefined;
      const messages = analyze(mesh, errors, proxies);
      if (options.output === "json") console.log(JSON.stringify(messages, null, 2));
      else {
        for (const message of messages) console.log(formatMessage(message));
        if (!proxies) console.log(`Info: no control plane answered on 127.0.0.1:${options.httpPort}: Gateway selectors were not checked against connected proxies.`);
        if (messages.length === 0) console.log(`\u2714 No validation issues found when analyzing ${dir}.`);
      }
      const worst: Level | undefined = messages[0]?.level;
      if (worst === "Error") process.exitCode = 1;
    });
}
