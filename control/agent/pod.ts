// How a pod's `skiff agent` is launched, shared by the demo's mesh layout (control/cli/demo-mesh.ts) and the test
// harness (test/harness/secured-sidecar.ts): in the pod's network namespace as the proxy's uid (1337, as pilot-agent
// shares the pod and uid with Envoy; the pod's capture rules leave that uid's connection to the control plane alone),
// with its files readable by that uid only (the bootstrap token is a credential). It writes `<dir>/agent/envoy.json`,
// the bootstrap on which the pod's Envoy (same uid) is started; `--no-envoy`: the caller starts Envoy.
import { chownSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { componentPath } from "../components/build.js";
import { PROXY_UID } from "../mesh/capture.js";
import { podCommand, type PodRecord } from "../mesh/mesh.js";

export interface PodAgentOptions {
  pod: PodRecord;
  /** The command that runs the skiff CLI (e.g. node with its loader and control/cli/main.ts). */
  skiff: string[];
  /** The control plane's xDS and CA address, host:port. */
  controlPlane: string;
  rootPem: string;
  /** A bootstrap token for the pod's identity (`BootstrapTokens.issue`). */
  token: string;
  trustDomain: string;
  serviceAccount: string;
  certTtlSeconds?: number;
  /** The agent's folder (made 0700 and given to uid 1337): root, token, descriptors, `agent/` with sockets. */
  dir: string;
}

export interface PodAgentLaunch {
  /** The whole command line (ip netns exec ... setpriv ... skiff agent ...). */
  command: string[];
  env: NodeJS.ProcessEnv;
  /** Where the agent writes Envoy's bootstrap once it has the workload certificate. */
  bootstrapFile: string;
}

export function podAgentLaunch(options: PodAgentOptions): PodAgentLaunch {
  const { pod, dir } = options;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const rootFile = join(dir, "root-cert.pem");
  const tokenFile = join(dir, "token");
  writeFileSync(rootFile, options.rootPem);
  writeFileSync(tokenFile, options.token, { mode: 0o600 });
  const components = readableComponents(dir);
  for (const path of [dir, rootFile, tokenFile]) chownSync(path, PROXY_UID, PROXY_UID);
  const agentDir = join(dir, "agent");
  const command = [
    ...options.skiff, "agent",
    "--control-plane", options.controlPlane,
    "--root-cert", rootFile,
    "--token-file", tokenFile,
    "--namespace", pod.namespace,
    "--service-account", options.serviceAccount,
    "--trust-domain", options.trustDomain,
    ...(options.certTtlSeconds ? ["--cert-ttl", `${options.certTtlSeconds}s`] : []),
    "--dir", agentDir,
    "--node", `sidecar~${pod.address}~${pod.name}.${pod.namespace}~${pod.namespace}.svc.cluster.local`,
    "--role", "sidecar",
    ...Object.entries(pod.labels).flatMap(([key, value]) => ["--label", `${key}=${value}`]),
    "--ip", pod.address,
    "--no-envoy",
  ];
  return { command: podCommand(pod.netns, command, PROXY_UID), env: { ...process.env, SKIFF_COMPONENTS_DIR: components }, bootstrapFile: join(agentDir, "envoy.json") };
}

/** The agent decodes Envoy's requests with the Envoy API descriptor set (control/protos/registry.ts). As uid 1337 it
 * may not read the components folder (e.g. a shared SKIFF_COMPONENTS_DIR under /root), so it gets a copy in its own
 * folder; returns the components folder to name in SKIFF_COMPONENTS_DIR. */
function readableComponents(dir: string): string {
  const descriptors = componentPath("descriptors");
  const root = join(dir, "components");
  const copy = join(root, basename(dirname(descriptors)));
  mkdirSync(copy, { recursive: true });
  copyFileSync(descriptors, join(copy, basename(descriptors)));
  for (const path of [root, copy, join(copy, basename(descriptors))]) chownSync(path, PROXY_UID, PROXY_UID);
  return root;
}
