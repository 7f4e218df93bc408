// Filters delivered by the control plane: a Wasm filter whose config arrives by ECDS and whose module Envoy fetches
// from the module server by sha256. Changing the configuration, then the module itself, under steady load:
// every request succeeds and the new behaviour shows up, without restarting Envoy.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrapYaml } from "../../control/bootstrap/bootstrap.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { inlineServedModules } from "../../control/modules/inline.js";
import { ModuleServer } from "../../control/modules/server.js";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import type { ServedModule } from "../../control/resources.js";
import { XdsServer } from "../../control/xds/server.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { MiB, moduleVariant } from "../harness/wasm-modules.js";
import { meshResources } from "./fixtures.js";
import { steadyLoad } from "./load.js";

const HELLO = readFileSync(`${PROJECT_ROOT}/build/filters/hello.wasm`);

for (const delta of [false, true]) describeE2E(`Wasm filter delivered by ECDS, swapped under load (${delta ? "delta" : "state of the world"})`, () => {
  const cache = new SnapshotCache();
  let xds: XdsServer;
  let modules: ModuleServer;
  let upstream: Upstream;
  let envoy: Envoy;
  let port: number;
  /** What the control plane does: translation's remote reference, then small served modules inlined. */
  const snapshot = (module: ServedModule, configuration: string, inline = true) => {
    const resources = meshResources({
      clusters: { backend: [upstream.port] },
      routeTo: "backend",
      wasm: { module, moduleCluster: { name: "skiff-modules", port: modules.port }, configuration },
    });
    cache.set("gw-wasm", inline ? inlineServedModules(resources, modules, "skiff-modules") : resources);
  };

  beforeAll(async () => {
    upstream = await startUpstream({ name: "backend" });
    modules = await ModuleServer.start();
    xds = await XdsServer.start({ cache });
    // The first module comes remote: Envoy fetches it from the module server while the listener warms.
    snapshot(modules.add(HELLO), "one", false);
    envoy = await startEnvoy({ bootstrap: parse(bootstrapYaml({ nodeId: "gw-wasm", role: "gateway", xdsPort: xds.port, adminPort: 0, delta })) as Record<string, unknown> });
    port = await envoy.listenerPort("ingress");
  });

  afterAll(async () => {
    await envoy?.stop();
    await xds?.stop();
    await modules?.stop();
    await upstream?.stop();
  });

  const swapUnderLoad = async (module: ServedModule, configuration: string) => {
    const load = steadyLoad(port, "x-skiff-hello");
    await expect.poll(() => load.total(), { timeout: 15_000 }).toBeGreaterThan(20);
    snapshot(module, configuration);
    await expect.poll(() => load.values.get(configuration) ?? 0, { timeout: 20_000 }).toBeGreaterThan(50);
    await load.stop();
    return load;
  };

  it("runs the module fetched from the module server with the configuration from ECDS", async () => {
    expect(await envoy.stat("cluster.skiff-modules.upstream_rq_2xx")).toBe(1);
    const response = await send(port);
    expect(response.status).toBe(200);
    expect(response.headers["x-skiff-hello"]).toBe("one");
    expect(response.headers["x-upstream"]).toBe("backend");
  });

  it("applies a new configuration under load with every request answered 200", async () => {
    const load = await swapUnderLoad(modules.add(HELLO), "two");
    expect(Object.fromEntries(load.statuses)).toEqual({ 200: expect.any(Number) });
    expect(load.values.get("one")).toBeGreaterThan(0);
  });

  it("swaps in a different module (new sha256) under load with every request answered 200", async () => {
    const next = modules.add(moduleVariant(HELLO, "v2"));
    expect(next.sha256).not.toBe(modules.add(HELLO).sha256);
    const load = await swapUnderLoad(next, "three");
    expect(Object.fromEntries(load.statuses)).toEqual({ 200: expect.any(Number) });
    expect(load.values.get("two")).toBeGreaterThan(0);
    expect(await envoy.stat("extension_config_discovery.http_filter.skiff-hello.config_reload")).toBeGreaterThanOrEqual(3);
    expect(envoy.log()).not.toMatch(/Failed to load Wasm|Wasm VM failed/i);
  });

  // Modules over the old 1 MiB inline limit, which before reached a running Envoy only on a listener change.
  for (const [size, configuration] of [[3 * MiB, "four"], [24 * MiB, "five"]] as const) {
    it(`swaps in a ${size / MiB} MiB module under load with every request answered 200`, async () => {
      const large = moduleVariant(HELLO, configuration, size);
      expect(large.length).toBeGreaterThanOrEqual(size);
      const load = await swapUnderLoad(modules.add(large), configuration);
      expect(Object.fromEntries(load.statuses)).toEqual({ 200: expect.any(Number) });
      expect(envoy.log()).not.toMatch(/Failed to load Wasm|Wasm VM failed/i);
      const dump = JSON.parse((await send(envoy.adminPort, { path: "/config_dump?resource=ecds_filters" })).body) as { configs: Array<{ ecds_filter: { typed_config: { config: { vm_config: { code: { local: { inline_bytes: string } } } } } } }> };
      const served = Buffer.from(dump.configs[0].ecds_filter.typed_config.config.vm_config.code.local.inline_bytes, "base64");
      expect(served.length).toBe(large.length);
    }, 120_000);
  }
});
