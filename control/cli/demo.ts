// `skiff demo`: the coolstore mesh of examples/ on this machine. The control plane reads examples/, a gateway Envoy
// started from a `skiff bootstrap` bootstrap gets everything else from it (listeners, routes, clusters, endpoints and
// the Skiff filters by ECDS), and the demo services answer behind it. Where the machine allows it (Linux, root) the
// services run in pods with sidecars and webapp calls catalog east-west through both (demo-mesh.ts); elsewhere, or
// with --loopback, they listen on 127.0.0.1 and webapp calls catalog through the gateway. Ctrl-C stops all of it.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { stringify } from "yaml";
import { bootstrapYaml } from "../bootstrap/bootstrap.js";
import { startControlPlane } from "../control-plane.js";
import { locateEnvoy } from "../envoy-binary/locate.js";
import { SIDECAR_ADMIN_PORT } from "../mesh/capture.js";
import { hasNetAdmin } from "../mesh/host.js";
import { projectDir } from "../project.js";
import { DEMO_MESH, type MeshDemo, startMeshDemo } from "./demo-mesh.js";
import { DEMO_PORTS, startDemoServices } from "./demo-services.js";
import { type DemoObservability, observabilityLines, startDemoObservability } from "./demo-observability.js";

const ADMIN_PORT = 9901;
const XDS_PORT = 18000;
const CONTROL_HTTP_PORT = 18080;

export async function runDemo(options: { loopback?: boolean; observability?: boolean } = {}): Promise<void> {
  const root = projectDir();
  if (!existsSync(join(root, "examples", "gateway.yaml"))) {
    throw new Error(`the demo runs in a Skiff checkout (examples/ and build/filters/), not in ${root}: clone the repository, then npm ci && npm run demo`);
  }
  const envoyBinary = locateEnvoy();
  const log = (line: string) => console.error(`[control-plane] ${line}`);
  const mesh = !options.loopback && process.platform === "linux" && hasNetAdmin();
  if (!mesh && !options.loopback) {
    console.error("skiff demo: the loopback layout (services on 127.0.0.1, no sidecars): the mesh layout, with pods and sidecars, needs Linux and root");
  }
  let stopServices: () => Promise<void>;
  let meshDemo: MeshDemo | undefined;
  if (mesh) {
    meshDemo = await startMeshDemo({ root, envoyPath: envoyBinary.path, xdsPort: XDS_PORT, httpPort: CONTROL_HTTP_PORT, log });
    stopServices = meshDemo.stop;
  } else {
    stopServices = await startDemoServices();
    const controlPlane = await startControlPlane({
      configDir: join(root, "examples"),
      xdsPort: XDS_PORT,
      httpPort: CONTROL_HTTP_PORT,
      log,
      // The loopback demo: one gateway Envoy on this machine, plain-text xDS (development mode).
      security: { plaintext: true },
    }).catch(async (error: Error) => {
      await stopServices();
      throw error;
    });
    const services = stopServices;
    stopServices = async () => {
      await controlPlane.stop();
      await services();
    };
  }

  const dir = mkdtempSync(join(tmpdir(), "skiff-demo-"));
  const bootstrapPath = join(dir, "gateway.yaml");
  const gateway = { nodeId: "ingressgateway", labels: { istio: "ingressgateway" } };
  // The mesh layout is secured: the gateway's agent (in this process) gets its certificate and relays its xDS.
  const gatewayBootstrap = meshDemo
    ? await meshDemo.gatewayBootstrap(gateway, ADMIN_PORT).then(stringify, async (error: Error) => {
        await stopServices();
        throw error;
      })
    : bootstrapYaml({ ...gateway, role: "gateway", xdsHost: "127.0.0.1", xdsPort: XDS_PORT, adminPort: ADMIN_PORT });
  writeFileSync(bootstrapPath, gatewayBootstrap);
  const envoy = spawn(envoyBinary.path, ["-c", bootstrapPath, "--disable-hot-restart", "--log-level", "warn"], { cwd: root, stdio: "inherit" });
  const exited = new Promise<number | null>((resolve) => envoy.once("exit", resolve));

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    envoy.kill("SIGTERM");
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  let observability: DemoObservability | undefined;
  const ready = await Promise.race([waitReady(), exited.then(() => false)]);
  if (ready) {
    printTryLines(envoyBinary.version, meshDemo);
    if (options.observability) {
      // The control plane's HTTP port is on the mesh's bridge address in the mesh layout, else on 127.0.0.1; the
      // sidecars' admin is on their pod's address.
      observability = await startDemoObservability({
        controlPlane: `${meshDemo?.hostAddress ?? "127.0.0.1"}:${CONTROL_HTTP_PORT}`,
        envoys: [{ name: gateway.nodeId, admin: `127.0.0.1:${ADMIN_PORT}` }, ...(meshDemo?.pods ?? []).map((pod) => ({ name: pod.name, admin: `${pod.address}:${SIDECAR_ADMIN_PORT}` }))],
        meshAddress: meshDemo?.hostAddress,
      }).catch((error: Error) => {
        console.error(`--observability: ${error.message}\nThe demo runs without Prometheus and Jaeger.`);
        return undefined;
      });
      if (observability) console.log(observabilityLines(observability, await demoTraceId()));
    }
    printClosingLines();
  } else if (!stopping) console.error("Envoy stopped before it was ready; its log is above.");
  const code = await exited;
  await observability?.stop();
  await stopServices();
  rmSync(dir, { recursive: true, force: true });
  process.removeListener("SIGINT", stop);
  process.removeListener("SIGTERM", stop);
  if (!stopping && code !== 0) process.exitCode = code ?? 1;
}

/** The trace id of one request through the gateway to webapp and on to catalog (webapp echoes the B3 headers it got),
 * retried for a few seconds until webapp's call to catalog succeeds (sidecars may still be taking their config), so
 * the printed trace has every hop. */
async function demoTraceId(): Promise<string | undefined> {
  let traceId: string | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    const answer = await demoRequest();
    traceId = answer?.trace?.["x-b3-traceid"];
    if (answer?.catalog?.status === 200 && traceId) break;
    await sleep(500);
  }
  return traceId;
}

function demoRequest(): Promise<{ trace?: Record<string, string>; catalog?: { status: number } } | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: "127.0.0.1", port: DEMO_PORTS.gateway, path: "/api/catalog", headers: { host: "webapp.istioinaction.io" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString()) as { trace?: Record<string, string>; catalog?: { status: number } });
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/** Ready once Envoy has its listeners from the control plane and the gateway port answers. */
async function waitReady(): Promise<boolean> {
  for (let i = 0; i < 600; i++) {
    try {
      const response = await fetch(`http://127.0.0.1:${ADMIN_PORT}/ready`);
      if (response.status === 200) return true;
    } catch {
      // Admin not up yet.
    }
    await sleep(100);
  }
  return false;
}

function printTryLines(version: string, mesh: MeshDemo | undefined): void {
  const gw = `http://127.0.0.1:${DEMO_PORTS.gateway}`;
  const catalog = `curl -s -H "Host: catalog.istioinaction.io"`;
  const lines: Array<[command: string, comment: string]> = [
    [`curl -s -H "Host: webapp.istioinaction.io" ${gw}/api/catalog`, "webapp calls catalog through the gateway"],
    [`${catalog} ${gw}/items`, "90% v1, 10% v2 (v2 items have imageUrl)"],
    [`${catalog} -H "x-istio-cohort: internal" ${gw}/items`, "the internal cohort: always v2"],
    [`${catalog} -H "x-user: alice" ${gw}/items`, "cohort-router: each user sticks to one version"],
    [`for i in $(seq 100); do ${catalog} ${gw}/items | grep -o '"version": "v[12]"'; done | sort | uniq -c`, "the 90/10 split"],
    [`curl -s -o /dev/null -w "%{http_code}\\n" -H "Host: nobody.istioinaction.io" ${gw}/`, "404: no such virtual host"],
    [`${catalog} -i -H "x-skiff-timeout-ms: 0" ${gw}/items`, "deadlines: a request whose time is up gets 504 at the gateway, x-skiff-deadline: expired"],
    [`curl -s http://127.0.0.1:${ADMIN_PORT}/stats | grep -E 'cohort_router|b3_propagation|retry_budget|deadlines'`, "the filters' counters"],
    [`npx skiff proxy-status${mesh ? ` --host ${mesh.hostAddress}` : ""}`, `what the gateway${mesh ? " and the sidecars have" : " has"} acknowledged, like istioctl`],
  ];
  if (mesh) {
    lines.push(
      [`npx skiff mesh exec ${DEMO_MESH} webapp -- curl -s http://catalog.istioinaction.svc.cluster.local:3000/items`, "east-west from the webapp pod: its sidecar routes catalog 90/10"],
      [`curl -s http://${mesh.pods[0]!.address}:15000/clusters | grep catalog`, "the webapp sidecar's clusters (its admin on the pod's address)"],
      [`curl -s http://${mesh.pods[1]!.address}:15000/stats | grep -E 'ssl.handshake|rbac'`, "catalog-v1's sidecar: mutual TLS handshakes, and what the AuthorizationPolicy allowed and denied"],
      [`npx skiff mesh exec ${DEMO_MESH} catalog-v1 -- curl -s http://catalog.istioinaction.svc.cluster.local:3000/items`, "403 RBAC: access denied: catalog's own identity is not one the policy allows"],
    );
  }
  console.log(`
Envoy ${version} is the coolstore ingress gateway on ${gw}, configured only by the Skiff control plane from examples/.
${
  mesh
    ? `The mesh layout: webapp, catalog-v1 and catalog-v2 run in pods (${mesh.pods.map((pod) => `${pod.name} ${pod.address}`).join(", ")}) of mesh "${DEMO_MESH}", each with a capturing sidecar; webapp calls catalog east-west through both sidecars.
Secured: the control plane is the mesh's CA (xDS over TLS; each sidecar and the gateway have a \`skiff agent\`), mutual TLS is STRICT between the pods, and only webapp and the gateway may call catalog (examples/security.yaml).`
    : "The loopback layout: the services listen on 127.0.0.1 and webapp calls catalog through the gateway."
}
Try:
${lines.map(([command, comment]) => `  # ${comment}\n  ${command}`).join("\n")}`);
}

function printClosingLines(): void {
  console.log(`Edit a file in examples/ and the gateway follows within a second (npx skiff validate examples checks it first).
Ctrl-C stops everything.`);
}
