// A real Kubernetes API server for tests: etcd and kube-apiserver built by the components builder
// (`npx skiff components build etcd kube-apiserver istio-crds`), on 127.0.0.1 at free ports, with a self-signed
// serving certificate (openssl) and a static admin token; RBAC is on, so a service account's token is held to the rules
// its roles grant. No controller manager runs: nothing makes EndpointSlices or service accounts on its own, so tests
// write them (kubectl-style writes through `apply`), and `--endpoint-reconciler-type=none` keeps the server from
// writing its own endpoints (it refuses loopback addresses in them). Everything lives in one temp folder, removed by
// stop(), which the harness calls for a test file that forgot.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request as httpsRequest } from "node:https";
import {
  ApiextensionsV1Api,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { componentPath } from "../../control/components/build.js";
import { freePort } from "../scenarios/mesh.js";
import { CHILD_MARKER, type Stoppable, testRunId, track, untrack } from "./processes.js";

/** Where the server's service IPs come from (only addresses in Services; nothing routes them). */
const SERVICE_RANGE = "10.96.0.0/16";
const FIELD_MANAGER = "skiff-tests";

/** An object as a manifest writes it: any fields beside apiVersion, kind and metadata. */
export type Manifest = KubernetesObject & Record<string, unknown>;

export interface KubeClusterOptions {
  /** Install the Istio CRDs (istio.io/api's customresourcedefinitions.gen.yaml) and wait until they are served. */
  istioCrds?: boolean;
}

export class KubeCluster implements Stoppable {
  readonly description: string;
  /** The admin's kubeconfig file (group system:masters). */
  readonly kubeconfig: string;
  readonly config: KubeConfig;
  readonly objects: KubernetesObjectApi;
  readonly core: CoreV1Api;
  private etcd?: ChildProcess;
  private apiserver?: ChildProcess;

  private constructor(
    readonly dir: string,
    readonly server: string,
    private readonly apiserverArgs: string[],
    private readonly token: string,
  ) {
    this.description = `kube-apiserver ${server} (etcd, files in ${dir})`;
    this.kubeconfig = join(dir, "admin.kubeconfig");
    writeFileSync(this.kubeconfig, kubeconfigYaml(server, readFileSync(join(dir, "ca.crt"), "utf8"), token), { mode: 0o600 });
    this.config = new KubeConfig();
    this.config.loadFromFile(this.kubeconfig);
    this.objects = KubernetesObjectApi.makeApiClient(this.config);
    this.core = this.config.makeApiClient(CoreV1Api);
  }

  static async start(options: KubeClusterOptions = {}): Promise<KubeCluster> {
    const dir = mkdtempSync(join(tmpdir(), "skiff-kube-"));
    try {
      makeCertificates(dir);
      const token = randomBytes(24).toString("hex");
      // Static tokens: token,user,uid,"group".
      writeFileSync(join(dir, "tokens.csv"), `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
      const [clientPort, peerPort, securePort] = [await freePort(), await freePort(), await freePort()];
      const etcdArgs = [
        "--name", "skiff",
        "--data-dir", join(dir, "etcd"),
        "--listen-client-urls", `http://127.0.0.1:${clientPort}`,
        "--advertise-client-urls", `http://127.0.0.1:${clientPort}`,
        "--listen-peer-urls", `http://127.0.0.1:${peerPort}`,
        "--initial-advertise-peer-urls", `http://127.0.0.1:${peerPort}`,
        "--initial-cluster", `skiff=http://127.0.0.1:${peerPort}`,
        // A test cluster: durability does not matter, speed on a loaded machine does.
        "--unsafe-no-fsync",
        "--log-level", "warn",
      ];
      const apiserverArgs = [
        "--etcd-servers", `http://127.0.0.1:${clientPort}`,
        "--bind-address", "127.0.0.1",
        "--advertise-address", "127.0.0.1",
        "--secure-port", String(securePort),
        "--cert-dir", join(dir, "apiserver"),
        "--tls-cert-file", join(dir, "serving.crt"),
        "--tls-private-key-file", join(dir, "serving.key"),
        "--token-auth-file", join(dir, "tokens.csv"),
        "--authorization-mode", "RBAC",
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", join(dir, "sa.pub"),
        "--service-account-signing-key-file", join(dir, "sa.key"),
        "--service-cluster-ip-range", SERVICE_RANGE,
        // The server would write its own address (127.0.0.1) into the `kubernetes` Service's endpoints, which it refuses.
        "--endpoint-reconciler-type", "none",
        "--enable-priority-and-fairness=false",
        "--profiling=false",
      ];
      const cluster = new KubeCluster(dir, `https://127.0.0.1:${securePort}`, apiserverArgs, token);
      track(cluster);
      try {
        cluster.etcd = cluster.spawn("etcd", etcdArgs, "etcd.log");
        await cluster.startApiserver();
        if (options.istioCrds) await cluster.installIstioCrds();
      } catch (error) {
        await cluster.stop();
        throw error;
      }
      return cluster;
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Stops the API server and starts it again on the same port and etcd: every watch breaks, nothing is lost. */
  async restartApiserver(downMs = 0): Promise<void> {
    await stopProcess(this.apiserver);
    await sleep(downMs);
    await this.startApiserver();
  }

  private async startApiserver(): Promise<void> {
    this.apiserver = this.spawn("kube-apiserver", this.apiserverArgs, "kube-apiserver.log");
    const deadline = Date.now() + 180_000;
    for (;;) {
      if (this.apiserver.exitCode !== null) throw new Error(`kube-apiserver exited with ${this.apiserver.exitCode}:\n${this.logTail(30)}`);
      try {
        const response = await this.request("/readyz");
        if (response.status === 200) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after 180 s:\n${this.logTail(30)}`);
      await sleep(250);
    }
  }

  private async installIstioCrds(): Promise<void> {
    const crds = toObjects(readFileSync(componentPath("istio-crds"), "utf8"));
    await this.apply(crds);
    const api = this.config.makeApiClient(ApiextensionsV1Api);
    for (const crd of crds) {
      const name = crd.metadata!.name!;
      await until(async () => {
        const found = await api.readCustomResourceDefinition({ name });
        return Boolean(found.status?.conditions?.some((condition) => condition.type === "Established" && condition.status === "True"));
      }, `CRD ${name} to be established`);
    }
  }

  /** kubectl apply --server-side: creates or updates each object (YAML text, one or many documents, or objects). The
   * object goes to the server as written: client-node's own patch serializes it through its kind's typed model, which
   * drops what a plain object spells as the wire does (a CRD schema's `x-kubernetes-int-or-string`). */
  async apply(objects: string | Manifest | Manifest[]): Promise<void> {
    const paths = this.objects as unknown as { specUriPath(object: KubernetesObject, action: "patch"): Promise<string> };
    for (const object of toObjects(objects)) {
      const path = await paths.specUriPath(structuredClone(object), "patch");
      const response = await this.request(`${path}?fieldManager=${FIELD_MANAGER}&force=true`, { method: "PATCH", contentType: "application/apply-patch+yaml", body: JSON.stringify(object) });
      if (response.status >= 300) throw new Error(`apply ${object.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name}: HTTP ${response.status}: ${response.body}`);
    }
  }

  /** kubectl delete: removes each object (missing ones are fine). */
  async delete(objects: string | Manifest | Manifest[]): Promise<void> {
    for (const object of toObjects(objects)) {
      try {
        await this.objects.delete(object);
      } catch (error) {
        if ((error as { code?: number }).code !== 404) throw error;
      }
    }
  }

  /** The object as the server has it now. */
  async read<T>(object: KubernetesObject): Promise<T> {
    return (await this.objects.read(object as { metadata: { name: string; namespace: string } })) as unknown as T;
  }

  /** A namespace and its `default` service account (no controller makes it here). */
  async namespace(name: string): Promise<void> {
    await this.apply([
      { apiVersion: "v1", kind: "Namespace", metadata: { name } },
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default", namespace: name } },
    ]);
  }

  /** A pod object as a scheduler and kubelet would leave it: on `node`, running, with `ip` (a mesh pod's address). */
  async pod(namespace: string, name: string, options: { ip: string; labels?: Record<string, string>; serviceAccount?: string; node?: string }): Promise<void> {
    const serviceAccount = options.serviceAccount ?? "default";
    if (serviceAccount !== "default") await this.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: serviceAccount, namespace } });
    await this.apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace, labels: options.labels ?? {} },
      spec: {
        serviceAccountName: serviceAccount,
        automountServiceAccountToken: false,
        ...(options.node ? { nodeName: options.node } : {}),
        containers: [{ name: "app", image: "skiff-test/app" }],
      },
    });
    await this.core.patchNamespacedPodStatus(
      { name, namespace, body: { status: { phase: "Running", podIP: options.ip, podIPs: [{ ip: options.ip }] } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  /** A token for a service account from the TokenRequest API (`POST .../serviceaccounts/<sa>/token`), as the kubelet
   * gets a projected one: for `audiences` (none: the API server's own), valid `expirationSeconds` (at least 600),
   * bound to `pod` when given. */
  async serviceAccountToken(namespace: string, serviceAccount: string, options: { audiences?: string[]; expirationSeconds?: number; pod?: string } = {}): Promise<string> {
    // The kubelet binds a projected token to its pod: the token dies with the pod.
    const boundObjectRef = options.pod ? { apiVersion: "v1", kind: "Pod", name: options.pod, uid: (await this.core.readNamespacedPod({ name: options.pod, namespace })).metadata!.uid } : undefined;
    const request = await this.core.createNamespacedServiceAccountToken({
      name: serviceAccount,
      namespace,
      body: { spec: { audiences: options.audiences ?? [], expirationSeconds: options.expirationSeconds ?? 3600, ...(boundObjectRef ? { boundObjectRef } : {}) } },
    });
    return request.status!.token;
  }

  /** A kubeconfig file that uses a token of the service account (for the API server itself). */
  async serviceAccountKubeconfig(namespace: string, serviceAccount: string): Promise<string> {
    const file = join(this.dir, `${namespace}-${serviceAccount}.kubeconfig`);
    writeFileSync(file, kubeconfigYaml(this.server, readFileSync(join(this.dir, "ca.crt"), "utf8"), await this.serviceAccountToken(namespace, serviceAccount)), { mode: 0o600 });
    return file;
  }

  /** The key the API server signs service account tokens with (`--service-account-signing-key-file`), PEM: a test
   * may sign a token the API server would accept but for one claim (an expired one). */
  get serviceAccountSigningKey(): string {
    return readFileSync(join(this.dir, "sa.key"), "utf8");
  }

  /** A request with the admin token (readiness, raw reads, applies): the status and body. */
  request(path: string, options: { method?: string; contentType?: string; body?: string } = {}): Promise<{ status: number; body: string }> {
    const ca = readFileSync(join(this.dir, "ca.crt"), "utf8");
    const headers = { authorization: `Bearer ${this.token}`, ...(options.contentType ? { "content-type": options.contentType } : {}) };
    return new Promise((resolve, reject) => {
      const request = httpsRequest(this.server + path, { method: options.method ?? "GET", ca, headers, timeout: 30_000 }, (response) => {
        let body = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      });
      request.on("error", reject);
      request.on("timeout", () => request.destroy(new Error("timed out")));
      request.end(options.body);
    });
  }

  logTail(lines = 40): string {
    const read = (file: string) => {
      try {
        return readFileSync(join(this.dir, file), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
      } catch {
        return "";
      }
    };
    return `kube-apiserver:\n${read("kube-apiserver.log")}\netcd:\n${read("etcd.log")}`;
  }

  async stop(): Promise<void> {
    untrack(this, this.logTail(20));
    await stopProcess(this.apiserver);
    await stopProcess(this.etcd);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private spawn(component: string, args: string[], log: string): ChildProcess {
    const child = spawn(componentPath(component), args, { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, [CHILD_MARKER]: testRunId() } });
    const file = createWriteStream(join(this.dir, log), { flags: "a" });
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
    return child;
  }
}

export function startKubeCluster(options: KubeClusterOptions = {}): Promise<KubeCluster> {
  return KubeCluster.start(options);
}

/** Objects from YAML text (every document) or as given. */
export function toObjects(objects: string | Manifest | Manifest[]): Manifest[] {
  if (typeof objects === "string") {
    return parseAllDocuments(objects)
      .map((doc) => {
        if (doc.errors.length > 0) throw new Error(`not valid YAML: ${doc.errors[0]!.message}\n${objects}`);
        return doc.toJS() as Manifest;
      })
      .filter(Boolean);
  }
  return Array.isArray(objects) ? objects : [objects];
}

/** A CA, the API server's serving certificate for 127.0.0.1 and localhost, and the service account signing key. */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=skiff-test-kubernetes-ca");
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "serving.key", "-out", "serving.csr", "-subj", "/CN=kube-apiserver");
  writeFileSync(join(dir, "serving.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "serving.crt", "-days", "2", "-extfile", "serving.ext");
  openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key");
  openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub");
  mkdirSync(join(dir, "apiserver"));
}

export function kubeconfigYaml(server: string, caPem: string, token: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "test", cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") } }],
    users: [{ name: "user", user: { token } }],
    contexts: [{ name: "test", context: { cluster: "test", user: "user" } }],
    "current-context": "test",
  });
}

async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const killed = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(killed);
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not there yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
