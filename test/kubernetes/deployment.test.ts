// Skiff in a cluster (issue 14 item 7): every manifest of examples/kubernetes/ applied to a real kube-apiserver as a
// user would (`kubectl apply -f examples/kubernetes/`), the API server accepting each object; the service account's
// rules let it do what the control plane needs and no more (SubjectAccessReview, the API server's own answer); and the
// Deployment's own arguments, run as its container would run them (with that service account's token, the cacerts
// that cacerts.sh makes), start a control plane that serves secured xDS where the Service sends workloads; the
// gateway's agent, run with its Deployment's arguments and a token as the kubelet projects it, gets its certificate.
// The API server has no kubelet here, so no pod runs: $(POD_IP) is 127.0.0.1 and the mounts are test folders.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CONTROL_PLANE_NAME } from "../../control/ca/protocol.js";
import { KUBERNETES_TOKEN_AUDIENCE } from "../../control/ca/token-review.js";
import type { StreamStatus } from "../../control/xds/streams.js";
import { startEnvoy } from "../harness/envoy.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { INFORMER_VERBS, istioKinds, watchedKinds } from "../../control/sources/kubernetes/kinds.js";
import { describeE2E } from "../harness/e2e.js";
import { type KubeCluster, type Manifest, startKubeCluster, toObjects } from "../harness/kube-apiserver.js";
import { CHILD_MARKER, testRunId, track, untrack } from "../harness/processes.js";
import { eventually, freePort } from "../scenarios/mesh.js";

const EXAMPLES = join(PROJECT_ROOT, "examples", "kubernetes");
const USER = "system:serviceaccount:skiff-system:skiff";

interface Container {
  args: string[];
  ports: Array<{ name: string; containerPort: number }>;
  volumeMounts: Array<{ name: string; mountPath: string }>;
  env?: Array<{ name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
}

interface PodTemplate {
  spec: {
    serviceAccountName: string;
    containers: Container[];
    volumes: Array<{ name: string; projected?: { sources: Array<{ serviceAccountToken?: { audience: string; expirationSeconds: number; path: string } }> } }>;
  };
}

describeE2E("Kubernetes: Skiff in a cluster (examples/kubernetes/)", () => {
  let cluster: KubeCluster;
  let dir: string;
  const children: ChildProcess[] = [];
  // The control plane that the Deployment's arguments started: its xDS and CA address, and its log.
  let controlPlane: { address: string; httpPort: number; log: string[] } | undefined;
  const manifests: Manifest[] = readdirSync(EXAMPLES)
    .filter((file) => file.endsWith(".yaml"))
    .flatMap((file) => toObjects(readFileSync(join(EXAMPLES, file), "utf8")));
  const find = (kind: string, name: string) => manifests.find((object) => object.kind === kind && object.metadata?.name === name);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-k8s-deployment-"));
    cluster = await startKubeCluster({ istioCrds: true });
    // The gateway namespace of gateway-credentials.yaml is the user's; the rest comes from the manifests, Namespaces
    // first, as kubectl apply needs them before what lives in them.
    await cluster.namespace("shop");
    await cluster.apply(manifests.filter((object) => object.kind === "Namespace"));
    await cluster.apply(manifests.filter((object) => object.kind !== "Namespace"));
    execFileSync("sh", [join(EXAMPLES, "cacerts.sh"), join(dir, "cacerts")], { stdio: "ignore" });
    // kubectl create secret generic cacerts --from-file=... (README.md): what the Deployment mounts.
    const file = (name: string) => readFileSync(join(dir, "cacerts", name)).toString("base64");
    await cluster.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "cacerts", namespace: "skiff-system" },
      data: Object.fromEntries(["ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"].map((name) => [name, file(name)])),
    });
  }, 400_000);

  afterAll(async () => {
    await Promise.all(children.map(stopChild));
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the API server accepts every object of the manifests as written", async () => {
    expect(manifests.map((object) => `${object.kind}/${object.metadata?.name}`)).toEqual(
      expect.arrayContaining(["Namespace/skiff-system", "ServiceAccount/skiff", "ClusterRole/skiff-control-plane", "ClusterRoleBinding/skiff-control-plane", "Deployment/skiff-control-plane", "Service/skiff-control-plane", "Deployment/istio-ingressgateway", "ValidatingWebhookConfiguration/skiff-validation"]),
    );
    for (const object of manifests) {
      const stored = await cluster.read<Manifest>(object);
      expect(stored.metadata?.uid, `${object.kind}/${object.metadata?.name}`).toBeTruthy();
    }
  });

  it("the Service sends workloads to the Deployment's xDS port, under the name of the control plane's certificate", async () => {
    const deployment = await cluster.read<{ spec: { template: { metadata: { labels: Record<string, string> }; spec: { serviceAccountName: string; containers: Container[] } } } }>(find("Deployment", "skiff-control-plane")!);
    const service = await cluster.read<{ metadata: { name: string; namespace: string }; spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } }>(find("Service", "skiff-control-plane")!);
    const pod = deployment.spec.template;
    expect(`${service.metadata.name}.${service.metadata.namespace}.svc`).toBe(CONTROL_PLANE_NAME);
    expect(pod.metadata.labels).toMatchObject(service.spec.selector);
    expect(pod.spec.serviceAccountName).toBe("skiff");
    const [container] = pod.spec.containers;
    const xdsPort = container!.ports.find((port) => port.name === service.spec.ports[0]!.targetPort)!.containerPort;
    expect(service.spec.ports[0]!.port).toBe(15012);
    expect(container!.args).toContain(`--listen=$(POD_IP):${xdsPort}`);
    expect(container!.args).toContain("--kubernetes");
    expect(container!.args).not.toContain("--plaintext");
    // The webhook the API server calls through the Service (admission-webhook.yaml: port 443, its certificate's name).
    const webhookPort = service.spec.ports.find((port) => port.targetPort === "https-webhook")!;
    expect(webhookPort.port).toBe(443);
    expect(container!.args).toContain(`--admission-webhook=$(POD_IP):${container!.ports.find((port) => port.name === "https-webhook")!.containerPort}`);
  });

  it("the service account may do what the control plane needs, and not read Secrets at large", async () => {
    const allowed = async (attributes: Partial<Record<string, string>>) => {
      const review = await cluster.request("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        method: "POST",
        contentType: "application/json",
        body: JSON.stringify({ apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview", spec: { user: USER, resourceAttributes: attributes } }),
      });
      return Boolean(JSON.parse(review.body).status.allowed);
    };
    // Derived from the code, not copied: every kind the informers watch (kinds.ts: KINDS' Istio kinds and the
    // registry), each Istio kind's status, and what the control plane writes or reads by name.
    const needed: Array<Partial<Record<string, string>>> = [
      ...watchedKinds().flatMap(({ group, plural }) => INFORMER_VERBS.map((verb) => ({ group, resource: plural, verb }))),
      ...istioKinds().map(({ group, plural }) => ({ group, resource: plural, subresource: "status", verb: "patch" })),
      { group: "", resource: "events", verb: "create", namespace: "shop" },
      { group: "", resource: "secrets", verb: "watch", namespace: "shop", name: "webapp-credential" },
      // Workloads' service account tokens, with which their agents ask for a first certificate.
      { group: "authentication.k8s.io", resource: "tokenreviews", verb: "create" },
      { group: "", resource: "secrets", verb: "watch", namespace: "shop", name: "payments-client" },
    ];
    expect(needed.map(({ resource }) => resource)).toEqual(expect.arrayContaining(["telemetries", "wasmplugins", "services", "endpointslices"]));
    for (const attributes of needed) expect(await allowed(attributes), JSON.stringify(attributes)).toBe(true);
    // Not needed, not granted: Secrets at large (the CA comes by the Deployment's volume, not the API), writes of specs.
    for (const attributes of [
      { group: "", resource: "secrets", verb: "list" },
      { group: "", resource: "secrets", verb: "get", namespace: "skiff-system", name: "cacerts" },
      { group: "networking.istio.io", resource: "virtualservices", verb: "update" },
      { group: "", resource: "pods", verb: "create" },
    ]) {
      expect(await allowed(attributes), JSON.stringify(attributes)).toBe(false);
    }
  });

  it("the Deployment's arguments, run as its container runs them, serve secured xDS and keep HTTP on the loopback", async () => {
    const deployment = await cluster.read<{ spec: { template: { spec: { containers: Container[] } } } }>(find("Deployment", "skiff-control-plane")!);
    const container = deployment.spec.template.spec.containers[0]!;
    // The kubelet's part: $(POD_IP), the Secret and emptyDir volumes at their mount paths, the service account's token.
    // The ports are free ones of this machine (a pod has its own).
    const mounts: Record<string, string> = { cacerts: join(dir, "cacerts"), data: join(dir, "data") };
    const ports = { "--listen": await freePort(), "--http-listen": await freePort(), "--admission-webhook": await freePort() };
    const args = container.args.map((arg) => {
      let value = arg.replace("$(POD_IP)", "127.0.0.1");
      const [option, address] = value.split("=");
      if (option! in ports) value = `${option}=${address!.split(":")[0]}:${ports[option as keyof typeof ports]}`;
      for (const mount of container.volumeMounts) if (mounts[mount.name]) value = value.replace(mount.mountPath, mounts[mount.name]!);
      return value;
    });
    const { child, log, tracked } = await runSkiff(args, "skiff");
    controlPlane = { address: `127.0.0.1:${ports["--listen"]}`, httpPort: ports["--http-listen"], log };
    try {
      await eventually(async () => {
        expect(child!.exitCode, log.join("\n")).toBeNull();
        expect(log.join("\n")).toContain(`xDS (ADS) on 127.0.0.1:${ports["--listen"]} over TLS, with the CA (`);
        expect(log.join("\n")).toContain(`modules, /status and /metrics on http://127.0.0.1:${ports["--http-listen"]}`);
        expect(log.join("\n")).toContain(`admission webhook on https://127.0.0.1:${ports["--admission-webhook"]}/validate`);
      }, 120_000);
      // Every informer listed with the rules of rbac.yaml (a refused one logs HTTP 403 and retries).
      expect(log.filter((line) => line.includes("HTTP 403"))).toEqual([]);
      expect(log.join("\n")).toContain("kubernetes: synced");
      expect(log.filter((line) => line.includes("RBAC"))).toEqual([]);
    } finally {
      untrack(tracked);
    }
  }, 200_000);

  it("the gateway's agent, run with its Deployment's arguments and the token the kubelet projects, gets its certificate and its Envoy its configuration", async () => {
    expect(controlPlane, "the control plane the previous test started").toBeDefined();
    const pod = (await cluster.read<{ spec: { template: PodTemplate } }>(find("Deployment", "istio-ingressgateway")!)).spec.template;
    const container = pod.spec.containers[0]!;
    // The projected token is for the audience the control plane checks, where the agent reads it without being told.
    const volume = pod.spec.volumes.find((candidate) => candidate.projected)!;
    const source = volume.projected!.sources[0]!.serviceAccountToken!;
    expect(source.audience).toBe(KUBERNETES_TOKEN_AUDIENCE);
    const tokenMount = container.volumeMounts.find((mount) => mount.name === volume.name)!;
    expect(`${tokenMount.mountPath}/${source.path}`).toBe("/var/run/secrets/tokens/istio-token");
    expect(container.args.filter((arg) => arg.startsWith("--token-file"))).toEqual([]);
    expect(container.args).toContain(`--control-plane=${CONTROL_PLANE_NAME}:15012`);
    // The kubelet's part: the token from the TokenRequest API for the pod's service account, with the volume's
    // audience and lifetime; the ConfigMap with the mesh root; the downward API's values; the mounts as test folders
    // (so the token file is named, the one argument added besides --no-envoy: this test starts Envoy itself).
    const token = await cluster.serviceAccountToken("shop", pod.spec.serviceAccountName, { audiences: [source.audience], expirationSeconds: source.expirationSeconds });
    const mounts: Record<string, string> = { [volume.name]: join(dir, "istio-token"), "root-cert": join(dir, "cacerts"), agent: join(dir, "gateway") };
    mkdirSync(mounts[volume.name]!, { mode: 0o700 });
    writeFileSync(join(mounts[volume.name]!, source.path), token, { mode: 0o600 });
    const fields: Record<string, string> = { "metadata.name": "istio-ingressgateway-7d9f", "metadata.namespace": "shop", "status.podIP": "127.0.0.1", "spec.serviceAccountName": pod.spec.serviceAccountName };
    const env = Object.fromEntries((container.env ?? []).map(({ name, valueFrom }) => [name, fields[valueFrom!.fieldRef!.fieldPath]!]));
    const args = container.args.map((arg) => {
      let value = arg.replace(/\$\((\w+)\)/g, (_, name: string) => env[name]!).replace(`${CONTROL_PLANE_NAME}:15012`, controlPlane!.address);
      for (const mount of container.volumeMounts) if (mounts[mount.name]) value = value.replace(mount.mountPath, mounts[mount.name]!);
      return value;
    });
    const { child, log, tracked } = await runSkiff([...args, `--token-file=${join(mounts[volume.name]!, source.path)}`, "--no-envoy"]);
    const bootstrapFile = join(mounts.agent!, "agent", "envoy.json");
    try {
      await eventually(async () => {
        expect(child.exitCode, log.join("\n")).toBeNull();
        expect(existsSync(bootstrapFile)).toBe(true);
      }, 60_000);
      expect(controlPlane!.log.join("\n")).toContain("CA: signed a certificate for spiffe://cluster.local/ns/shop/sa/istio-ingressgateway-service-account (Kubernetes service account token");
      const envoy = await startEnvoy({ bootstrap: JSON.parse(readFileSync(bootstrapFile, "utf8")) as Record<string, unknown>, readyTimeoutMs: 60_000 });
      try {
        await eventually(async () => {
          const status = (await (await fetch(`http://127.0.0.1:${controlPlane!.httpPort}/status`)).json()) as StreamStatus[];
          const gateway = status.find((stream) => stream.nodeId === fields["metadata.name"]);
          // Its Envoy connected as the pod's identity and took what the control plane sent (listeners come once a
          // Gateway selects it; the notes say so).
          expect(Object.entries(gateway?.types ?? {}).map(([type, state]) => `${type} ${state?.status}`)).toEqual(["Cluster SYNCED", "Listener SYNCED"]);
        }, 60_000);
      } finally {
        await envoy.stop();
      }
      expect([...controlPlane!.log, ...log].filter((line) => line.includes(token.split(".")[2]!))).toEqual([]);
    } finally {
      untrack(tracked);
      await stopChild(child);
    }
  }, 200_000);

  it("a control plane whose rules miss a kind names the kind and the verbs at start, instead of waiting in silence", async () => {
    // rbac.yaml's ClusterRole as it was before telemetry.istio.io was added, and with EndpointSlices listable but not
    // watchable, bound to a service account of its own.
    const role = structuredClone(find("ClusterRole", "skiff-control-plane")!) as Manifest & { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    role.metadata = { name: "skiff-incomplete" };
    for (const rule of role.rules) {
      rule.apiGroups = rule.apiGroups.filter((group) => group !== "telemetry.istio.io");
      if (rule.resources.includes("endpointslices")) rule.verbs = rule.verbs.filter((verb) => verb !== "watch");
    }
    await cluster.apply([
      { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "skiff-incomplete", namespace: "skiff-system" } },
      role,
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "skiff-incomplete" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "skiff-incomplete" },
        subjects: [{ kind: "ServiceAccount", name: "skiff-incomplete", namespace: "skiff-system" }],
      },
    ]);
    const args = ["control-plane", "--kubernetes", "--plaintext", `--listen=127.0.0.1:${await freePort()}`, `--http-listen=127.0.0.1:${await freePort()}`];
    const { child, log, tracked } = await runSkiff(args, "skiff-incomplete");
    try {
      await eventually(async () => {
        const text = log.join("\n");
        expect(text).toContain('kubernetes: RBAC: this control plane may not list or watch telemetries.telemetry.istio.io (kind Telemetry, API group "telemetry.istio.io"): it cannot sync');
        expect(text).toContain('kubernetes: RBAC: this control plane may not watch endpointslices.discovery.k8s.io (kind EndpointSlice, API group "discovery.k8s.io"): it would never see a change');
        // The informer's own refusal says the same, with the API server's message.
        expect(text).toMatch(/telemetries\.telemetry\.istio\.io: refused to list telemetries\.telemetry\.istio\.io \(kind Telemetry\): HTTP 403: .*cannot list resource "telemetries"/);
      }, 60_000);
      // Only what is missing is named, and a control plane that cannot list a kind does not serve.
      expect(log.filter((line) => line.includes("RBAC:"))).toHaveLength(2);
      expect(log.join("\n")).not.toContain("kubernetes: synced");
      expect(child.exitCode).toBeNull();
    } finally {
      untrack(tracked);
      await stopChild(child);
    }
  }, 120_000);

  /** `skiff <args>` as a container would run it, with the token of service account skiff-system/`serviceAccount` for
   * the API server (none: the container talks to no API server, as the gateway's agent). */
  async function runSkiff(args: string[], serviceAccount?: string) {
    const kubeconfig = serviceAccount ? { KUBECONFIG: await cluster.serviceAccountKubeconfig("skiff-system", serviceAccount) } : {};
    const env = { ...process.env, ...kubeconfig, [CHILD_MARKER]: testRunId() };
    const child = spawn(process.execPath, ["--import", "tsx", "control/cli/main.ts", ...args], { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env });
    children.push(child);
    const log: string[] = [];
    const collect = (chunk: Buffer) => log.push(...chunk.toString().trimEnd().split("\n"));
    child.stdout!.on("data", collect);
    child.stderr!.on("data", collect);
    const tracked = { description: `skiff ${args[0]}${serviceAccount ? ` as ${serviceAccount}` : ""} (pid ${child.pid})`, stop: async () => void child.kill("SIGTERM"), logTail: () => log.slice(-40).join("\n") };
    track(tracked);
    return { child, log, tracked };
  }
});

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("close", resolve));
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(10_000).then(() => child.kill("SIGKILL"))]);
}
