// The golden translations, checked by Envoy itself: each proxy's resources are folded into one static bootstrap and
// run through `envoy --mode validate`, which checks every field and extension Envoy would check on an xDS update
// (without binding ports, so the fixtures' port 80 is fine). Folding: EDS clusters get their endpoints inline, RDS
// its route configuration inline, ECDS filters their config inline (with the hello module as a local file, since
// validation fetches nothing). Certificates (SDS) are left out, the filter chains' transport sockets with them (the
// fixtures' certificates are placeholders): test/scenarios/https-gateway.test.ts runs TLS in a real Envoy.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { loadConfigDir } from "../../control/sources/index.js";
import { translate } from "../../control/translate/index.js";
import { type ProxyResources, TypeUrl } from "../../control/resources.js";
import { describeE2E } from "../harness/e2e.js";
import { CASES, testContext } from "./cases.js";

type Json = Record<string, any>; // Envoy JSON, reshaped in place: typing it field by field would only restate it.

const HERE = import.meta.dirname;
const work = mkdtempSync(join(tmpdir(), "skiff-validate-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function staticBootstrap(resources: ProxyResources): Json {
  const endpoints = new Map(resources[TypeUrl.ClusterLoadAssignment].map((r) => [r.name, r.body]));
  const routes = new Map(resources[TypeUrl.RouteConfiguration].map((r) => [r.name, r.body]));
  const filters = new Map(resources[TypeUrl.ExtensionConfig].map((r) => [r.name, structuredClone(r.body.typed_config) as Json]));
  for (const filter of filters.values()) {
    filter.config.vm_config.code = { local: { filename: join(PROJECT_ROOT, "build", "filters", "hello.wasm") } };
  }
  const clusters = resources[TypeUrl.Cluster].map((resource) => {
    const cluster = structuredClone(resource.body) as Json;
    if (cluster.type === "EDS") {
      delete cluster.eds_cluster_config;
      cluster.type = "STATIC";
      cluster.load_assignment = endpoints.get(cluster.name);
    }
    return cluster;
  });
  const listeners = resources[TypeUrl.Listener].map((resource) => {
    const listener = structuredClone(resource.body) as Json;
    for (const chain of listener.filter_chains) {
      delete chain.transport_socket;
      const manager = chain.filters[0].typed_config;
      manager.route_config = routes.get(manager.rds.route_config_name);
      delete manager.rds;
      manager.http_filters = manager.http_filters.map((filter: Json) =>
        filter.config_discovery ? { name: filter.name, typed_config: filters.get(filter.name) } : filter,
      );
    }
    return listener;
  });
  return { static_resources: { clusters, listeners } };
}

describeE2E("golden translations pass envoy --mode validate", () => {
  for (const [fixture, proxy] of CASES) {
    it(`${fixture} for ${proxy.role} ${proxy.nodeId}`, () => {
      const dir = join(HERE, "fixtures", fixture);
      const bootstrap = staticBootstrap(translate(loadConfigDir(dir).mesh, testContext(dir, proxy)));
      const path = join(work, `${fixture}.${proxy.nodeId}.json`);
      writeFileSync(path, JSON.stringify(bootstrap));
      const result = spawnSync(locateEnvoy().path, ["--mode", "validate", "-c", path, "--log-level", "error"], { encoding: "utf8" });
      expect(`${result.stdout}${result.stderr}`).toContain("OK");
      expect(result.status).toBe(0);
    });
  }
});
