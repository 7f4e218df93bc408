// `skiff ca`: the control plane's CA from the command line, on the machine that holds its data directory: bootstrap
// tokens for workloads (what a Kubernetes service account token is to istio-agent) and the root certificate agents
// trust. Whoever can read the data directory is the mesh's administrator.
import { Command } from "commander";
import { DEFAULT_TRUST_DOMAIN } from "../ca/spiffe.js";
import { DEFAULT_DATA_DIR, seconds } from "./options.js";

export const caCommand = new Command("ca").description("the control plane's certificate authority: bootstrap tokens and the root certificate");

caCommand
  .command("token")
  .description("print a bootstrap token with which one workload's agent gets its first certificate (not with --kubernetes: there it is the pod's service account token, `kubectl create token SA --audience istio-ca`)")
  .requiredOption("--namespace <ns>", "the workload's namespace")
  .requiredOption("--service-account <name>", "the workload's service account")
  .option("--ttl <duration>", "how long the token is accepted (e.g. 10m, 1h)", seconds, 3600)
  .option("--data-dir <dir>", "the control plane's data directory", DEFAULT_DATA_DIR)
  .action(async (options: { namespace: string; serviceAccount: string; ttl: number; dataDir: string }) => {
    // The CA's code is loaded by the commands that use it, not by every `skiff` start (see main.ts).
    const { BootstrapTokens } = await import("../ca/tokens.js");
    console.log(BootstrapTokens.open(options.dataDir).issue({ namespace: options.namespace, serviceAccount: options.serviceAccount }, options.ttl));
  });

caCommand
  .command("root")
  .description("print the root certificate (root-cert.pem) that agents and workloads trust")
  .option("--data-dir <dir>", "the control plane's data directory", DEFAULT_DATA_DIR)
  .option("--cacerts <dir>", "Istio's plugged-in CA folder, if the control plane uses one")
  .option("--trust-domain <name>", "the mesh's trust domain", DEFAULT_TRUST_DOMAIN)
  .action(async (options: { dataDir: string; cacerts?: string; trustDomain: string }) => {
    const { CertificateAuthority } = await import("../ca/authority.js");
    const ca = await CertificateAuthority.open({ dataDir: options.dataDir, cacertsDir: options.cacerts, trustDomain: options.trustDomain });
    process.stdout.write(ca.rootPem);
  });
