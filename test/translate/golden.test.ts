// Golden translation tests: each folder in fixtures/ is a config folder; for each proxy listed below, the Envoy
// resources translate() makes must equal golden/<fixture>.<proxy>.json. After a deliberate change, regenerate with
//   SKIFF_UPDATE_GOLDEN=1 npx vitest run test/translate/golden.test.ts
// and review the diff: a golden file must be right, not just stable (see test/translate/README.md).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { encodeResource } from "../../control/protos/encode.js";
import { loadConfigDir } from "../../control/sources/index.js";
import { translate } from "../../control/translate/index.js";
import { TypeUrl } from "../../control/resources.js";
import { CASES, readable, testContext, webapp } from "./cases.js";

const HERE = import.meta.dirname;

describe("translate() against golden Envoy configs", () => {
  for (const [fixture, proxy] of CASES) {
    it(`${fixture} for ${proxy.role} ${proxy.nodeId}`, () => {
      const dir = join(HERE, "fixtures", fixture);
      const { mesh, errors } = loadConfigDir(dir);
      expect(errors).toEqual([]);
      // Certificate paths are absolute; the golden files hold them relative to the fixture folder.
      const actual = JSON.parse(JSON.stringify(readable(translate(mesh, testContext(dir, proxy)))).replaceAll(dir, "<config-dir>"));
      const goldenPath = join(HERE, "golden", `${fixture}.${proxy.nodeId}.json`);
      if (process.env.SKIFF_UPDATE_GOLDEN === "1") writeFileSync(goldenPath, JSON.stringify(actual, null, 2) + "\n");
      expect(actual).toEqual(JSON.parse(readFileSync(goldenPath, "utf8")));
    });
  }

  it("every resource is named as its body names it, so xDS names and config agree", () => {
    for (const [fixture, proxy] of CASES) {
      const dir = join(HERE, "fixtures", fixture);
      const resources = translate(loadConfigDir(dir).mesh, testContext(dir, proxy));
      for (const [type, list] of Object.entries(resources)) {
        for (const resource of list) {
          const bodyName = type === TypeUrl.ClusterLoadAssignment ? resource.body.cluster_name : resource.body.name;
          expect(bodyName, `${type} ${resource.name}`).toBe(resource.name);
        }
      }
    }
  });

  it("every resource is valid proto3 JSON for its Envoy type (field names, enums, durations, Any types)", () => {
    for (const [fixture, proxy] of CASES) {
      const dir = join(HERE, "fixtures", fixture);
      const resources = translate(loadConfigDir(dir).mesh, testContext(dir, proxy));
      for (const [type, list] of Object.entries(resources)) {
        for (const resource of list) expect(() => encodeResource(type, resource), `${fixture}: ${resource.name}`).not.toThrow();
      }
    }
  });

  it("an EnvoyFilter leaves proxies outside its workloadSelector alone", () => {
    const dir = join(HERE, "fixtures", "envoyfilter-merge");
    const clusters = translate(loadConfigDir(dir).mesh, testContext(dir, { ...webapp, namespace: "istioinaction" }))[TypeUrl.Cluster];
    const patched = clusters.find((c) => c.name === "outbound|80||simple-backend.istioinaction.svc.cluster.local");
    expect(patched?.body.connect_timeout).toBe("10s");
    expect((patched?.body.circuit_breakers as { thresholds: unknown[] }).thresholds).toEqual([expect.not.objectContaining({ retry_budget: expect.anything() })]);
  });
});
