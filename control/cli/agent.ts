// `skiff agent`: the agent beside one Envoy (what `pilot-agent proxy` is in Istio). It gets the workload certificate
// with a token from a file (in a cluster the pod's projected service account token, else a bootstrap token), writes
// the Envoy bootstrap into its folder, starts Envoy on it, serves it certificates by SDS and relays its xDS over mTLS
// until Envoy exits or the agent is stopped (SIGINT/SIGTERM stop both).
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { DEFAULT_TRUST_DOMAIN } from "../ca/spiffe.js";
import { locateEnvoy } from "../envoy-binary/locate.js";
import type { Locality } from "../resources.js";
import { label, port, seconds } from "./options.js";

/** Where istio-agent reads the pod's projected service account token (pilot-agent's default third-party JWT path). */
const ISTIO_TOKEN_FILE = "/var/run/secrets/tokens/istio-token";

interface AgentCommandOptions {
  controlPlane: string;
  rootCert: string;
  tokenFile: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  certTtl?: number;
  dir: string;
  node: string;
  role: "gateway" | "sidecar";
  label: Record<string, string>;
  ip?: string[];
  locality?: Locality;
  adminPort: number;
  envoy: boolean;
}

export const agentCommand = new Command("agent")
  .description("run beside one Envoy as istio-agent does: workload certificate by SDS, xDS relayed over mTLS, then start Envoy")
  .requiredOption(
    "--control-plane <address>",
    "the control plane's xDS and CA address, host:port (in a cluster its Service, skiff-control-plane.skiff-system.svc:15012), or a gRPC target such as ipv4:10.0.0.1:15012,10.0.0.2:15012 (replicas tried in order)",
  )
  .requiredOption("--root-cert <file>", "the mesh root the control plane's certificate must chain to (`skiff ca root`)")
  .option(
    "--token-file <file>",
    "the token for the first certificate, read again whenever needed: in a cluster the pod's service account token for audience istio-ca (a projected volume), else a bootstrap token (`skiff ca token`)",
    ISTIO_TOKEN_FILE,
  )
  .option("--namespace <ns>", "the workload's namespace", "default")
  .requiredOption("--service-account <name>", "the workload's service account")
  .option("--trust-domain <name>", "the mesh's trust domain", DEFAULT_TRUST_DOMAIN)
  .option("--cert-ttl <duration>", "certificate lifetime to ask for (default: the CA's)", seconds)
  .requiredOption("--dir <dir>", "the agent's private folder: sockets and bootstrap (made with mode 0700)")
  .requiredOption("--node <id>", "node id of the proxy")
  .option("--role <role>", "gateway or sidecar", (value: string) => {
    if (value !== "gateway" && value !== "sidecar") throw new InvalidArgumentError("expected gateway or sidecar");
    return value;
  }, "sidecar")
  .option("--label <key=value...>", "workload label, repeatable", label, {} as Record<string, string>)
  .option("--ip <address...>", "the workload's own addresses")
  .option("--locality <region/zone/subzone>", "the proxy's locality", (value: string) => {
    const [region, zone, subZone] = value.split("/");
    return { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) };
  })
  .option("--admin-port <port>", "Envoy's admin port on 127.0.0.1", port, 15000)
  .option("--no-envoy", "only serve the sockets and write the bootstrap (start Envoy yourself with <dir>/envoy.json)")
  .action(runAgent);

async function runAgent(options: AgentCommandOptions): Promise<void> {
  const log = (line: string) => console.error(`${new Date().toISOString()} ${line}`);
  // Loaded here, not at the top: every `skiff` command would pay for the agent's gRPC and CA code (see main.ts).
  const { Agent } = await import("../agent/agent.js");
  const agent = await Agent.start({
    dir: options.dir,
    address: options.controlPlane,
    rootPem: readFileSync(options.rootCert, "utf8"),
    token: () => (existsSync(options.tokenFile) ? readFileSync(options.tokenFile, "utf8").trim() : undefined),
    tokenSource: options.tokenFile,
    namespace: options.namespace,
    serviceAccount: options.serviceAccount,
    trustDomain: options.trustDomain,
    ttlSeconds: options.certTtl,
    node: { nodeId: options.node, role: options.role, labels: options.label, ips: options.ip, locality: options.locality },
    log,
  });
  const bootstrapPath = agent.writeBootstrap(options.adminPort);
  log(`agent: bootstrap at ${bootstrapPath}`);
  let envoy: ReturnType<typeof spawn> | undefined;
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  if (options.envoy) {
    envoy = spawn(locateEnvoy().path, ["-c", bootstrapPath, "--disable-hot-restart", "--log-level", "warn"], { stdio: "inherit" });
    const exited = new Promise<number | null>((resolve) => envoy!.once("exit", resolve));
    const code = await Promise.race([exited, stopped.then(() => undefined)]);
    if (code === undefined) {
      envoy.kill("SIGTERM");
      await exited;
    } else {
      log(`agent: Envoy exited with ${code}`);
      process.exitCode = code ?? 1;
    }
  } else {
    await stopped;
  }
  await agent.stop();
}
