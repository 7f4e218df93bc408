// `envoy --mode validate` on the resources of one proxy: Envoy itself checks every field, extension and constraint
// it would check on an xDS update (protoc-gen-validate rules, filter factories, a Lua script's syntax, a Wasm
// module that must load), without binding ports. The xDS resources are folded into one static bootstrap: EDS
// clusters get their endpoints inline, RDS its route configuration inline, ECDS filters their config inline, SDS
// certificates become static secrets, and Wasm code the control plane would serve is read from the module's file.
// The workload certificate the agent serves by SDS stays dynamic: the bootstrap gets the agent's `sds-grpc` cluster
// (a socket nobody listens on: validation connects nowhere) and a node, so Envoy checks those configs as it would run
// them.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrap, SDS_CLUSTER } from "../bootstrap/bootstrap.js";
import { type ProxyResources, TypeUrl } from "../resources.js";

type Json = Record<string, any>; // Envoy JSON, reshaped in place: typing it field by field would only restate it.

export interface FoldOptions {
  /** The file of a Wasm module by its sha256 (the code Envoy would fetch from the control plane). */
  moduleFile(sha256: string): string | undefined;
  /** Leave TLS from certificate files out (transport sockets with such secrets, and the secrets), e.g. for placeholder
   * files. TLS with the agent's certificate stays. */
  withoutTls?: boolean;
}

export interface EnvoyVerdict {
  ok: boolean;
  /** Envoy's own words when it refuses (the lines of its output that say why). */
  message: string;
}

/** Runs `envoy --mode validate` on `resources`; never throws for a refusal, only for an Envoy that cannot start. */
export async function validateWithEnvoy(envoyPath: string, resources: ProxyResources, options: FoldOptions): Promise<EnvoyVerdict> {
  const dir = mkdtempSync(join(tmpdir(), "skiff-envoy-validate-"));
  try {
    const path = join(dir, "bootstrap.json");
    writeFileSync(path, JSON.stringify({ ...foldIntoBootstrap(resources, options), node: { id: "skiff-validate", cluster: "skiff-validate" } }));
    const { code, output } = await run(envoyPath, ["--mode", "validate", "-c", path, "--log-level", "error", "--disable-hot-restart"]);
    const ok = code === 0 && output.includes("OK");
    return { ok, message: ok ? "" : refusal(output) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function foldIntoBootstrap(resources: ProxyResources, options: FoldOptions): Json {
  const endpoints = new Map(resources[TypeUrl.ClusterLoadAssignment].map((r) => [r.name, r.body]));
  const routes = new Map(resources[TypeUrl.RouteConfiguration].map((r) => [r.name, r.body]));
  const extensionConfigs = new Map(resources[TypeUrl.ExtensionConfig].map((r) => [r.name, localCode(structuredClone(r.body.typed_config) as Json, options)]));
  const clusters = resources[TypeUrl.Cluster].map((resource) => {
    const cluster = structuredClone(resource.body) as Json;
    if (cluster.type === "EDS") {
      delete cluster.eds_cluster_config;
      cluster.type = "STATIC";
      cluster.load_assignment = endpoints.get(cluster.name) ?? { cluster_name: cluster.name };
    }
    return cluster;
  });
  const listeners = resources[TypeUrl.Listener].map((resource) => {
    const listener = structuredClone(resource.body) as Json;
    for (const chain of [...(listener.filter_chains ?? []), ...(listener.default_filter_chain ? [listener.default_filter_chain] : [])]) {
      if (chain.transport_socket) {
        if (options.withoutTls && usesFileSecrets(chain.transport_socket)) delete chain.transport_socket;
        else staticSecretRefs(chain.transport_socket);
      }
      for (const filter of chain.filters ?? []) foldFilter(filter, routes, extensionConfigs);
    }
    for (const filter of listener.listener_filters ?? []) inlineDiscovered(filter, extensionConfigs);
    return listener;
  });
  for (const cluster of clusters) {
    if (cluster.transport_socket) {
      if (options.withoutTls && usesFileSecrets(cluster.transport_socket)) delete cluster.transport_socket;
      else staticSecretRefs(cluster.transport_socket);
    }
    for (const match of cluster.transport_socket_matches ?? []) staticSecretRefs(match);
  }
  const secrets = options.withoutTls ? [] : resources[TypeUrl.Secret].map((secret) => secret.body);
  if (!clusters.some((cluster) => cluster.name === SDS_CLUSTER)) clusters.push(agentSdsCluster());
  return { static_resources: { clusters, listeners, secrets } };
}

/** The agent's SDS cluster as `skiff bootstrap --agent-dir` makes it, on a socket path nobody listens on. */
function agentSdsCluster(): Json {
  const { static_resources } = bootstrap({ nodeId: "skiff-validate", role: "sidecar", agentDir: "/nonexistent/skiff-validate", adminPort: 0 }) as { static_resources: { clusters: Json[] } };
  return static_resources.clusters.find((cluster) => cluster.name === SDS_CLUSTER)!;
}

/** Whether a transport socket's secrets come by ADS (certificate files, which may be placeholders), not from the agent. */
function usesFileSecrets(socket: Json): boolean {
  return JSON.stringify(socket).includes('"ads":{}');
}

function foldFilter(filter: Json, routes: Map<string, unknown>, extensionConfigs: Map<string, Json>): void {
  inlineDiscovered(filter, extensionConfigs);
  const manager = filter.typed_config;
  if (!manager || !String(manager["@type"]).endsWith(".HttpConnectionManager")) return;
  if (manager.rds) {
    manager.route_config = routes.get(manager.rds.route_config_name) ?? { name: manager.rds.route_config_name };
    delete manager.rds;
  }
  for (const httpFilter of manager.http_filters ?? []) inlineDiscovered(httpFilter, extensionConfigs);
}

/** A filter configured by ECDS gets its configuration in place (Envoy validates the filter either way). */
function inlineDiscovered(filter: Json, extensionConfigs: Map<string, Json>): void {
  if (!filter.config_discovery) return;
  const config = extensionConfigs.get(filter.name) ?? filter.config_discovery.default_config;
  delete filter.config_discovery;
  if (config) filter.typed_config = config;
}

/** Wasm code served by the control plane, read from the module's file instead. */
function localCode(typedConfig: Json, options: FoldOptions): Json {
  const vm = typedConfig?.config?.vm_config;
  const remote = vm?.code?.remote;
  if (remote?.sha256) {
    const file = options.moduleFile(remote.sha256);
    if (file) vm.code = { local: { filename: file } };
  }
  return typedConfig;
}

/** SDS over ADS becomes a reference to the static secret of that name (the agent's SDS stays as it is). */
function staticSecretRefs(node: unknown): void {
  if (Array.isArray(node)) node.forEach(staticSecretRefs);
  else if (node && typeof node === "object") {
    const object = node as Json;
    if (object.sds_config?.ads && typeof object.name === "string") delete object.sds_config;
    Object.values(object).forEach(staticSecretRefs);
  }
}

/** The reason in Envoy's output: the line after "error initializing configuration '<file>': " (or, when Envoy
 * dumps the configuration first, the line after the dump), and of a protoc-gen-validate failure its innermost cause. */
function refusal(output: string): string {
  const lines = output.split("\n");
  const at = lines.findIndex((line) => line.includes("error initializing configuration"));
  let reason = at >= 0 ? lines[at]!.replace(/^.*error initializing configuration '[^']*': /, "") : "";
  if (at >= 0 && (!reason || reason.startsWith("goo.gle/"))) reason = lines.slice(at + 1).find((line) => line.startsWith(": "))?.slice(2) ?? reason;
  const causes = reason.split(" | caused by ");
  if (causes.length > 1) reason = causes.at(-1)!.replace(/\)$/, "");
  return reason.trim() || lines.filter((line) => line.trim()).slice(-3).join(" / ") || "Envoy refused the configuration";
}

function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, output }));
  });
}
