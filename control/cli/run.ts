// `skiff run <name>`: builds the filter, starts a local Envoy with it in front of an upstream (a static bootstrap, as
// func-e runs one), prints the curl line, and stops Envoy on Ctrl-C. `--print-bootstrap` prints the bootstrap instead,
// for func-e or any Envoy.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Command, InvalidArgumentError, Option } from "commander";
import { stringify } from "yaml";
import { localBootstrap } from "../bootstrap/local.js";
import { locateEnvoy } from "../envoy-binary/locate.js";
import { projectDir } from "../project.js";
import { buildFilters } from "./build.js";
import { port } from "./options.js";

/** `host:port` or `http://host:port`. */
function upstream(value: string): { host: string; port: number } {
  const match = /^(?:https?:\/\/)?(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(value);
  if (!match) throw new InvalidArgumentError("expected host:port, e.g. 127.0.0.1:8080");
  return { host: match[1].replace(/^\[|\]$/g, ""), port: port(match[2]) };
}

/** The plugin configuration: JSON text as given, or `@file`. */
function configuration(value: string): string {
  if (!value.startsWith("@")) return value;
  const file = value.slice(1);
  if (!existsSync(file)) throw new InvalidArgumentError(`no such file: ${file}`);
  return readFileSync(file, "utf8");
}

function adminGet(address: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = get(`http://${address}${path}`, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on("error", reject);
    request.setTimeout(2000, () => request.destroy(new Error("admin request timed out")));
  });
}

/** Waits until Envoy's admin says it is live; returns the admin address and the listener's port. */
async function waitReady(envoy: ChildProcess, addressFile: string): Promise<{ admin: string; port: number }> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (envoy.exitCode !== null || envoy.signalCode !== null) throw new Error("Envoy exited before it was ready: its log is above");
    if (existsSync(addressFile)) {
      const admin = readFileSync(addressFile, "utf8").trim();
      const ready = await adminGet(admin, "/ready").catch(() => null);
      if (ready?.status === 200) {
        const listeners = JSON.parse((await adminGet(admin, "/listeners?format=json")).body) as {
          listener_statuses: Array<{ local_address: { socket_address: { port_value: number } } }>;
        };
        return { admin, port: listeners.listener_statuses[0].local_address.socket_address.port_value };
      }
    }
    await sleep(100);
  }
  throw new Error("Envoy was not ready within 60 s");
}

interface RunOptions {
  upstream: { host: string; port: number };
  port: number;
  adminPort: number;
  config: string;
  concurrency: number;
  target?: string;
  build: boolean;
  printBootstrap?: boolean;
  logLevel?: string;
}

async function runFilter(name: string, options: RunOptions): Promise<void> {
  const project = projectDir();
  const { filterModule } = await import("@skiff/proxy-wasm/compile");
  let module = join(project, filterModule(name, options.target));
  if (options.build) module = (await buildFilters(project, [name], options.target))[0].module;
  else if (!existsSync(module)) throw new Error(`${module} does not exist: build it (skiff build ${name}) or drop --no-build`);
  const bootstrap = localBootstrap({
    filter: name, module, configuration: options.config, upstream: options.upstream, port: options.port, adminPort: options.adminPort,
  });
  if (options.printBootstrap) {
    process.stdout.write(stringify(bootstrap));
    return;
  }

  const binary = locateEnvoy();
  const dir = mkdtempSync(join(tmpdir(), `skiff-run-${name}-`));
  const bootstrapFile = join(dir, "envoy.yaml");
  const addressFile = join(dir, "admin-address");
  writeFileSync(bootstrapFile, stringify(bootstrap));
  const logLevel = options.logLevel ? ["--log-level", options.logLevel] : ["--log-level", "warn", "--component-log-level", "wasm:info"];
  const envoy = spawn(
    binary.path,
    ["-c", bootstrapFile, "--concurrency", String(options.concurrency), "--disable-hot-restart", "--admin-address-path", addressFile, ...logLevel],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const exited = new Promise<number | null>((resolve) => envoy.once("exit", (code) => resolve(code)));
  let stopping = false;
  const stop = () => {
    stopping = true;
    envoy.kill("SIGTERM");
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const { admin, port: listenerPort } = await waitReady(envoy, addressFile);
    const { host, port: upstreamPort } = options.upstream;
    console.log(`${name} runs in Envoy ${binary.version} on 127.0.0.1:${listenerPort}, in front of ${host}:${upstreamPort}. Try:`);
    console.log(`  curl -si http://127.0.0.1:${listenerPort}/`);
    console.log(`  curl -s http://${admin}/stats?filter=wasmcustom    # the filter's metrics`);
    console.log("Ctrl-C stops Envoy.");
    const code = await exited;
    if (!stopping) throw new Error(`Envoy exited (code ${code}): its log is above`);
  } catch (error) {
    if (envoy.exitCode === null && envoy.signalCode === null) envoy.kill("SIGTERM");
    await exited;
    throw error;
  } finally {
    process.removeListener("SIGINT", stop);
    process.removeListener("SIGTERM", stop);
    rmSync(dir, { recursive: true, force: true });
  }
}

export const runCommand = new Command("run")
  .description("build a filter and run it in a local Envoy in front of an upstream; prints the curl line (Ctrl-C stops)")
  .argument("<name>", "the filter (filters/<name>/)")
  .addOption(new Option("--upstream <host:port>", "where requests go").argParser(upstream).default({ host: "127.0.0.1", port: 8080 }, "127.0.0.1:8080"))
  .option("--port <port>", "Envoy's listener port on 127.0.0.1 (0: any free one)", port, 10000)
  .option("--admin-port <port>", "Envoy's admin port on 127.0.0.1 (0: any free one)", port, 9901)
  .option("--config <json|@file>", "the plugin configuration", configuration, "")
  .option("--concurrency <n>", "Envoy's worker threads (one VM each)", (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
    return n;
  }, 1)
  .option("--target <target>", "a target of the SDK preset: small (default), release or debug")
  .option("--no-build", "run the module already in build/filters/ without building it")
  .option("--print-bootstrap", "print the Envoy bootstrap (YAML) and exit, to run it with func-e or any Envoy")
  .option("--log-level <level>", "Envoy's log level (default: warn, and info for the filter's own log lines)")
  .action((name: string, options: RunOptions) => runFilter(name, options));
