// `skiff agent`, beside each Envoy as istio-agent is: it gets the workload's certificate from the control plane's CA
// (certificates.ts), serves it and the mesh root to its Envoy by SDS on a Unix socket under Istio's secret names
// (`default`, `ROOTCA`), replaces both before they expire without restarting Envoy, and relays Envoy's xDS over
// mTLS (xds-proxy.ts). Its folder holds the two sockets and the bootstrap, and is private to the agent's user
// (0700): whoever can reach sds.sock can read the workload's key, exactly as with istio-agent's socket.
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AGENT_SDS_SOCKET, AGENT_XDS_SOCKET, bootstrap, type BootstrapOptions, ROOT_SECRET, WORKLOAD_SECRET } from "../bootstrap/bootstrap.js";
import { emptyResources, TypeUrl } from "../resources.js";
import { SnapshotCache } from "../snapshots/cache.js";
import { XdsServer } from "../xds/server.js";
import { CaUnavailableError, type CertificateClientOptions, controlPlaneCredentials, renewalDelayMs, requestCertificate, type WorkloadCertificate } from "./certificates.js";
import { XdsProxy } from "./xds-proxy.js";

export interface AgentOptions extends CertificateClientOptions {
  /** The agent's folder (sockets, bootstrap); made with mode 0700. */
  dir: string;
  /** The proxy this agent serves (its bootstrap's node): node id, role, labels, addresses, locality. Namespace and
   * service account are the agent's own. */
  node: Omit<BootstrapOptions, "namespace" | "serviceAccount" | "xdsPort" | "agentDir" | "adminPort">;
  log?: (line: string) => void;
}

export class Agent {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly envoys = new Set<string>();

  private constructor(
    private readonly options: AgentOptions,
    private certificate: WorkloadCertificate,
    private readonly secrets: SnapshotCache,
    private readonly sds: XdsServer,
    private readonly xds: XdsProxy,
  ) {}

  static async start(options: AgentOptions): Promise<Agent> {
    const log = options.log ?? (() => {});
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    chmodSync(options.dir, 0o700);
    for (const socket of [AGENT_SDS_SOCKET, AGENT_XDS_SOCKET]) rmSync(join(options.dir, socket), { force: true });
    const certificate = await firstCertificate(options, log);
    log(`agent: certificate ${certificate.serial} for ${options.namespace}/${options.serviceAccount}, valid until ${certificate.notAfter.toISOString()}`);
    let agent: Agent | undefined;
    const cache = new SnapshotCache();
    const sds = await XdsServer.start({
      cache,
      address: `unix:${join(options.dir, AGENT_SDS_SOCKET)}`,
      secretsOnly: true,
      log: (line) => log(`agent SDS: ${line}`),
      onProxyConnected: (_proxy, key) => agent?.connected(key),
      onProxyDisconnected: (key) => agent?.disconnected(key),
    });
    let xds: XdsProxy;
    try {
      xds = await XdsProxy.start(join(options.dir, AGENT_XDS_SOCKET), options.address, controlPlaneCredentials(options.rootPem, certificate), log);
    } catch (error) {
      await sds.stop();
      throw error;
    }
    agent = new Agent(options, certificate, cache, sds, xds);
    agent.scheduleRenewal(Date.now());
    return agent;
  }

  /** The Envoy bootstrap for this agent's proxy: ADS and SDS through its sockets. */
  bootstrap(adminPort: number, extra: { delta?: boolean } = {}): Record<string, unknown> {
    return bootstrap({ ...this.options.node, ...extra, namespace: this.options.namespace, serviceAccount: this.options.serviceAccount, agentDir: this.options.dir, adminPort });
  }

  /** Writes the bootstrap into the agent's folder (whole or not at all: whoever waits for the file never reads half of
   * it); returns its path. */
  writeBootstrap(adminPort: number): string {
    const path = join(this.options.dir, "envoy.json");
    writeFileSync(`${path}.tmp`, JSON.stringify(this.bootstrap(adminPort), null, 2), { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
    return path;
  }

  /** The certificate Envoy is being served (serial, expiry; never the key). */
  get current(): Pick<WorkloadCertificate, "serial" | "notAfter" | "chainPem"> {
    return { serial: this.certificate.serial, notAfter: this.certificate.notAfter, chainPem: this.certificate.chainPem };
  }

  /** Renews now (tests; a CA restart). */
  async renew(): Promise<void> {
    clearTimeout(this.timer);
    const next = await requestCertificate(this.options, this.certificate);
    this.certificate = next;
    this.xds.useCredentials(controlPlaneCredentials(this.options.rootPem, next));
    for (const key of this.envoys) this.publish(key);
    this.options.log?.(`agent: renewed, certificate ${next.serial} valid until ${next.notAfter.toISOString()}`);
    this.scheduleRenewal(Date.now());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.xds.stop();
    await this.sds.stop();
    for (const socket of [AGENT_SDS_SOCKET, AGENT_XDS_SOCKET]) rmSync(join(this.options.dir, socket), { force: true });
  }

  /** `key`: the SDS stream's snapshot key (its Envoy's identity). */
  private connected(key: string): void {
    this.envoys.add(key);
    this.publish(key);
  }

  private disconnected(key: string): void {
    this.envoys.delete(key);
    this.secrets.delete(key);
  }

  private publish(key: string): void {
    const resources = emptyResources();
    const base64 = (pem: string) => Buffer.from(pem).toString("base64");
    resources[TypeUrl.Secret] = [
      {
        name: WORKLOAD_SECRET,
        body: {
          name: WORKLOAD_SECRET,
          tls_certificate: { certificate_chain: { inline_bytes: base64(this.certificate.chainPem) }, private_key: { inline_bytes: base64(this.certificate.keyPem) } },
        },
      },
      { name: ROOT_SECRET, body: { name: ROOT_SECRET, validation_context: { trusted_ca: { inline_bytes: base64(this.certificate.rootPem) } } } },
    ];
    this.secrets.set(key, resources);
  }

  /** Renews at the grace period; on failure retries with backoff (1 s doubling to 30 s) while the old one lasts. */
  private scheduleRenewal(issuedAt: number, retryMs?: number): void {
    if (this.stopped) return;
    const delay = retryMs ?? renewalDelayMs(this.certificate, issuedAt);
    this.timer = setTimeout(() => {
      this.renew().catch((error: Error) => {
        const next = Math.min(30_000, (retryMs ?? 500) * 2);
        this.options.log?.(`agent: renewal failed, retrying in ${next} ms: ${error.message}`);
        this.scheduleRenewal(issuedAt, next);
      });
    }, delay);
    this.timer.unref();
  }
}

/** The workload's first certificate. While no control plane answers (none started yet, every replica restarting) or
 * the one that does cannot check the token now, it asks again with backoff (1 s doubling to 30 s), as istio-agent
 * does, rather than exiting; a refusal (a bad token, a CSR the CA will not sign) ends it at once. */
async function firstCertificate(options: CertificateClientOptions, log: (line: string) => void): Promise<WorkloadCertificate> {
  for (let delayMs = 1000; ; delayMs = Math.min(30_000, delayMs * 2)) {
    try {
      return await requestCertificate(options);
    } catch (error) {
      if (!(error instanceof CaUnavailableError)) throw error;
      log(`agent: no certificate yet, asking again in ${delayMs} ms: ${error.message}`);
      await sleep(delayMs);
    }
  }
}
