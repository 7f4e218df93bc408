// The optional validating admission webhook (issue 14 item 2): examples/kubernetes/admission-webhook.yaml registered
// with a real kube-apiserver (clientConfig.url to the control plane on 127.0.0.1 instead of the in-cluster Service, the
// mesh root as caBundle), the control plane serving it with a certificate of its CA. An invalid VirtualService written
// through the API is refused before it is stored, the message naming the resource and field as `skiff validate` does;
// a valid one is stored; and with failurePolicy Ignore a write goes through while no control plane answers.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ControlPlane, startControlPlane } from "../../control/control-plane.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { istioKinds } from "../../control/sources/kubernetes/kinds.js";
import { describeE2E } from "../harness/e2e.js";
import { type KubeCluster, type Manifest, startKubeCluster, toObjects } from "../harness/kube-apiserver.js";
import { track, untrack } from "../harness/processes.js";
import { eventually } from "../scenarios/mesh.js";

const MANIFEST = join(PROJECT_ROOT, "examples", "kubernetes", "admission-webhook.yaml");

interface Webhook {
  clientConfig: Record<string, unknown>;
  rules: Array<{ apiGroups: string[]; operations: string[] }>;
  failurePolicy: string;
}

const virtualService = (name: string, weights: [number, number]) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: shop }
spec:
  hosts: [catalog]
  http:
  - route:
    - { destination: { host: catalog, subset: v1 }, weight: ${weights[0]} }
    - { destination: { host: catalog, subset: v2 }, weight: ${weights[1]} }
`;

describeE2E("Kubernetes: the validating admission webhook (AdmissionReview v1)", () => {
  let cluster: KubeCluster;
  let controlPlane: ControlPlane | undefined;
  let dir: string;
  const log: string[] = [];
  const configuration = toObjects(readFileSync(MANIFEST, "utf8"))[0] as Manifest & { webhooks: Webhook[] };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "skiff-k8s-webhook-"));
    cluster = await startKubeCluster({ istioCrds: true });
    await cluster.namespace("shop");
    controlPlane = await startControlPlane({
      kubernetes: { config: cluster.config },
      xdsPort: 0,
      httpPort: 0,
      admissionWebhook: { host: "127.0.0.1", port: 0 },
      log: (line) => log.push(line),
      security: { dataDir: join(dir, "data") },
    });
    const tracked = { description: "control plane (kubernetes, admission webhook)", stop: () => controlPlane!.stop(), logTail: () => log.slice(-40).join("\n") };
    track(tracked);
    untrack(tracked);
    // The manifest as written, but called by URL (this API server has no Service endpoints to reach).
    const registered = structuredClone(configuration);
    registered.webhooks[0]!.clientConfig = {
      url: `https://127.0.0.1:${controlPlane.admissionWebhook!.port}/validate`,
      caBundle: Buffer.from(controlPlane.ca!.rootPem).toString("base64"),
    };
    await cluster.apply(registered);
  }, 400_000);

  afterAll(async () => {
    await controlPlane?.stop();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("its rules send creates and updates of every Istio kind Skiff reads, and it fails open", () => {
    const [webhook] = configuration.webhooks;
    const groups = new Set(istioKinds().map((kind) => kind.group));
    expect(webhook!.rules[0]!.apiGroups).toEqual(expect.arrayContaining([...groups]));
    expect(webhook!.rules[0]!.operations).toEqual(["CREATE", "UPDATE"]);
    expect(webhook!.failurePolicy).toBe("Ignore");
    expect(webhook!.clientConfig).toMatchObject({ service: { name: "skiff-control-plane", namespace: "skiff-system", path: "/validate" } });
  });

  it("an invalid VirtualService is refused with the field in the message and not stored; a valid one is stored", async () => {
    // The API server picks the new webhook up within a moment: until then a write would not be checked.
    await eventually(
      async () =>
        await expect(cluster.apply(virtualService("catalog", [0, 0]))).rejects.toThrow(
          /admission webhook \\"validation\.skiff\.dev\\" denied the request: Skiff refuses it: VirtualService shop\/catalog: spec\.http\[0\]\.route: .*total destination weight = 0/,
        ),
      30_000,
    );
    const stored = await cluster.request("/apis/networking.istio.io/v1/namespaces/shop/virtualservices/catalog");
    expect(stored.status).toBe(404);
    await cluster.apply(virtualService("catalog", [90, 10]));
    expect((await cluster.read<{ spec: { http: Array<{ route: Array<{ weight: number }> }> } }>({ apiVersion: "networking.istio.io/v1", kind: "VirtualService", metadata: { name: "catalog", namespace: "shop" } })).spec.http[0]!.route.map((route) => route.weight)).toEqual([90, 10]);
    // An update that makes it invalid is refused too; the stored object stays as it was.
    await expect(cluster.apply(virtualService("catalog", [0, 0]))).rejects.toThrow(/spec\.http\[0\]\.route/);
    // An Istio kind Skiff does not read is not Skiff's to refuse.
    await cluster.apply({ apiVersion: "networking.istio.io/v1", kind: "WorkloadGroup", metadata: { name: "vms", namespace: "shop" }, spec: { template: { serviceAccount: "vm" } } });
  });

  it("with failurePolicy Ignore, a write goes through while no control plane answers (and is reported by status later)", async () => {
    await controlPlane!.stop();
    controlPlane = undefined;
    await cluster.apply(virtualService("unchecked", [0, 0]));
    expect((await cluster.request("/apis/networking.istio.io/v1/namespaces/shop/virtualservices/unchecked")).status).toBe(200);
  });
});
