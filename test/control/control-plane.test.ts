// `skiff control-plane` end to end: Istio YAML in a folder -> translation -> snapshots -> ADS -> a real Envoy
// started from a `skiff bootstrap` bootstrap. A change to a file reaches Envoy; a broken file is reported with its
// file and field while the last good configuration keeps serving; /status shows the proxy SYNCED; a proxy that
// disconnects is forgotten.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusTable } from "../../control/cli/proxy-status.js";
import { snapshotKey, startControlPlane } from "../../control/control-plane.js";
import type { StreamStatus } from "../../control/xds/streams.js";
import { TypeUrl } from "../../control/resources.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";
import { AdsClient } from "./ads-client.js";

const services = (port: number) => serviceEntry("catalog", 3000, { v1: port });

describeE2E("skiff control-plane: YAML folder to a running Envoy", () => {
  let mesh: Mesh;
  let blue: Upstream;
  let green: Upstream;
  let gatewayPort: number;
  const catalog = () => send(gatewayPort, { headers: { host: "catalog.example.com" } });

  beforeAll(async () => {
    blue = await startUpstream({ name: "blue" });
    green = await startUpstream({ name: "green" });
    gatewayPort = await freePort();
    mesh = await startMesh(
      { "gateway.yaml": gatewayRoute(gatewayPort, "catalog.example.com", "catalog"), "services.yaml": services(blue.port) },
      { nodeId: "ingress-1", role: "gateway", labels: { istio: "ingressgateway" }, namespace: "default", ips: [] },
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await blue?.stop();
    await green?.stop();
  });

  it("routes by the Gateway and VirtualService to the ServiceEntry's endpoint", async () => {
    const response = await catalog();
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("blue");
  });

  it("reports every type SYNCED at /status, and logs the pushes and ACKs", async () => {
    const status = async () => (await (await fetch(`http://127.0.0.1:${mesh.controlPlane.modules.port}/status`)).json()) as StreamStatus[];
    await expect.poll(async () => (await status())[0]?.types.RouteConfiguration?.status).toBe("SYNCED");
    const [proxy] = await status();
    expect(proxy.nodeId).toBe("ingress-1");
    expect(Object.values(proxy.types).every((type) => type?.status === "SYNCED")).toBe(true);
    // `skiff proxy-status` prints the same view as a table.
    expect(statusTable(await status())).toMatch(/^NAME\s+ROLE\s+XDS\s+VERSION\s+CDS\s+EDS\s+ECDS\s+SDS\s+LDS\s+RDS\s+LAST ACK\ningress-1\s+gateway\s+sotw\s+[0-9a-f]{16}\s+SYNCED\s+SYNCED\s+SYNCED\s+IGNORED\s+SYNCED\s+SYNCED\s+\d+s ago$/);
    expect(mesh.log.some((line) => /ingress-1: push Listener/.test(line))).toBe(true);
    expect(mesh.log.some((line) => /ingress-1: ACK RouteConfiguration/.test(line))).toBe(true);
  });

  it("pushes a changed file to the running Envoy", async () => {
    mesh.write("services.yaml", services(green.port));
    await expect.poll(async () => (await catalog()).headers["x-upstream"], { timeout: 15_000 }).toBe("green");
  });

  it("reports a broken file by file and field, and keeps serving its last good version", async () => {
    mesh.write("services.yaml", services(green.port).replace("resolution: STATIC", "resolution: SOMETIMES"));
    await expect.poll(() => mesh.log.find((line) => line.includes("config error")) ?? "", { timeout: 15_000 }).toMatch(/services\.yaml.*resolution/);
    const response = await catalog();
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("green");
  });
});

describe("skiff control-plane: per-proxy state", () => {
  it("forgets a proxy once its last stream closes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-config-"));
    writeFileSync(join(dir, "services.yaml"), services(8000));
    const controlPlane = await startControlPlane({ configDir: dir, xdsPort: 0, httpPort: 0, security: { plaintext: true } });
    const client = new AdsClient(controlPlane.xds.port);
    try {
      client.send({ node: { id: "sidecar-1", metadata: { ROLE: "sidecar" } }, type_url: TypeUrl.Cluster });
      await client.next();
      const key = snapshotKey({ nodeId: "sidecar-1", role: "sidecar", labels: {}, namespace: "default", ips: [] });
      expect(controlPlane.cache.get(key)).toBeDefined();
      client.close();
      await expect.poll(() => controlPlane.cache.get(key)).toBeUndefined();
      expect(controlPlane.xds.status()).toEqual([]);
    } finally {
      client.close();
      await controlPlane.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
