// The golden translations, checked by Envoy itself: each proxy's resources are folded into one static bootstrap and
// run through `envoy --mode validate` (control/envoy-binary/validate.ts), which checks every field and extension
// Envoy would check on an xDS update. The fixtures' Wasm modules and certificates are placeholders: every filter runs
// the hello module, and TLS is left out (test/scenarios/https-gateway.test.ts runs TLS in a real Envoy).
import { join } from "node:path";
import { expect, it } from "vitest";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { validateWithEnvoy } from "../../control/envoy-binary/validate.js";
import { loadConfigDir } from "../../control/sources/index.js";
import { translate } from "../../control/translate/index.js";
import { describeE2E } from "../harness/e2e.js";
import { CASES, testContext } from "./cases.js";

const HERE = import.meta.dirname;
const HELLO = join(PROJECT_ROOT, "build", "filters", "hello.wasm");

describeE2E("golden translations pass envoy --mode validate", () => {
  for (const [fixture, proxy] of CASES) {
    it(`${fixture} for ${proxy.role} ${proxy.nodeId}`, async () => {
      const dir = join(HERE, "fixtures", fixture);
      const resources = translate(loadConfigDir(dir).mesh, testContext(dir, proxy));
      const verdict = await validateWithEnvoy(locateEnvoy().path, resources, { moduleFile: () => HELLO, withoutTls: true });
      expect(verdict).toEqual({ ok: true, message: "" });
    });
  }
});
