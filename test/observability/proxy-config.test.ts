// `skiff proxy-config`: what a gateway holds, from the control plane (GET /debug/config_dump) and from Envoy's own
// /config_dump, equal resource by resource once Envoy has ACKed; the short tables; and a resource Envoy rejected
// showing up in the diff.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CONFIG_TYPES, type ConfigType } from "../../control/cli/config-types.js";
import { controlPlaneView, diffViews, envoyView } from "../../control/cli/proxy-config.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

const run = promisify(execFile);
const ALL = Object.keys(CONFIG_TYPES) as ConfigType[];

describeE2E("skiff proxy-config", () => {
  let upstream: Upstream;
  let mesh: Mesh;
  const skiff = (...args: string[]) =>
    run(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), "proxy-config", ...args, "--http-port", String(mesh.controlPlane.modules.port)], { cwd: PROJECT_ROOT });
  const synced = async () => {
    const status = (await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/status`)).json()) as Array<{ types: Record<string, { status: string }> }>;
    expect(Object.values(status[0]!.types).every((type) => type.status === "SYNCED")).toBe(true);
  };

  beforeAll(async () => {
    upstream = await startUpstream({ name: "catalog" });
    const servicePort = await freePort();
    mesh = await startMesh(
      { "gateway.yaml": gatewayRoute(await freePort(), "catalog.example.com", "catalog"), "services.yaml": serviceEntry("catalog", servicePort, { v1: upstream.port }) },
      GATEWAY,
    );
    await eventually(synced, 15_000);
  });

  afterAll(async () => {
    await mesh?.stop();
    await upstream?.stop();
  });

  it("finds Envoy running exactly what the control plane sent, every type, resource by resource", async () => {
    const controlPlane = await controlPlaneView(mesh.controlPlane.modules.port, GATEWAY.nodeId);
    const envoy = await envoyView(mesh.envoy.adminUrl);
    expect(controlPlane.listeners.size).toBe(1);
    expect(controlPlane.clusters.size).toBeGreaterThanOrEqual(2);
    expect([...controlPlane.ecds.keys()]).toEqual(["istio.stats.outbound"]);
    expect(envoy.errors).toEqual([]);
    expect(diffViews(controlPlane, envoy.view, ALL)).toEqual([]);
    const { stdout } = await skiff(GATEWAY.nodeId, "all", "--envoy-admin", mesh.envoy.adminUrl, "--diff");
    expect(stdout.trim()).toBe(`${GATEWAY.nodeId}: Envoy runs what the control plane sent (${ALL.join(", ")}).`);
  });

  it("prints istioctl-like tables per type from either side", async () => {
    const clusters = (await skiff(GATEWAY.nodeId, "clusters")).stdout;
    expect(clusters.split("\n")[0]).toMatch(/^SERVICE FQDN\s+PORT\s+SUBSET\s+DIRECTION\s+TYPE$/);
    expect(clusters).toMatch(/catalog\.shop\.svc\.cluster\.local\s+\d+\s+-\s+outbound\s+EDS/);
    const listeners = (await skiff(GATEWAY.nodeId, "listeners", "--envoy-admin", mesh.envoy.adminUrl)).stdout;
    expect(listeners).toMatch(/127\.0\.0\.1_\d+\s+127\.0\.0\.1\s+\d+\s+OUTBOUND\s+1\s+istio\.stats\.outbound,envoy\.filters\.http\.fault,envoy\.filters\.http\.cors,envoy\.filters\.http\.router/);
    const ecds = (await skiff(GATEWAY.nodeId, "ecds")).stdout;
    expect(ecds).toMatch(/istio\.stats\.outbound\s+Wasm\s+istio\.stats\.outbound\s+inline \(\d+ KiB\)/);
    const json = JSON.parse((await skiff(GATEWAY.nodeId, "endpoints", "-o", "json")).stdout) as { endpoints: Array<{ cluster_name: string }> };
    expect(json.endpoints.map((endpoint) => endpoint.cluster_name)).toContain(`outbound|${JSON.stringify(json).match(/outbound\|(\d+)/)![1]}||catalog.shop.svc.cluster.local`);
  });

  it("names an unknown proxy and an unknown type", async () => {
    await expect(skiff("nobody")).rejects.toMatchObject({ stderr: expect.stringContaining("no connected proxy nobody") });
    await expect(skiff(GATEWAY.nodeId, "pods")).rejects.toMatchObject({ stderr: expect.stringContaining("unknown type pods") });
  });
});
