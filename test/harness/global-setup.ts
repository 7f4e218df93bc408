// Once per test run: names the Envoy the e2e tests run against, refuses to skip them in CI, compiles the SDK's test
// modules, and at the end checks that no process started by the tests is still alive.
import { randomUUID } from "node:crypto";
import type { TestProject } from "vitest/node";
import { locateEnvoy } from "../../control/envoy-binary/locate.js";
import { leftoverProcesses } from "./processes.js";
import { ensureMeshPrerequisites, hasNetAdmin } from "../../control/mesh/host.js";
import { cleanupMeshes } from "../../control/mesh/mesh.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";

export default async function setup(project: TestProject) {
  const runId = randomUUID();
  process.env.SKIFF_TEST_RUN = runId;
  const skip = process.env.SKIFF_SKIP_E2E === "1";
  if (skip && process.env.CI === "true") throw new Error("SKIFF_SKIP_E2E=1 is not allowed in CI: the e2e tests must run");
  if (skip) {
    console.log("SKIFF_SKIP_E2E=1: end-to-end tests against Envoy are SKIPPED");
  } else {
    const envoy = locateEnvoy(); // Throws, listing what it tried, when there is none.
    console.log(`e2e tests run against Envoy ${envoy.version} (${envoy.path}, from ${envoy.source})`);
  }
  project.provide("skipE2E", skip);
  project.provide("skipPods", !setUpPods(skip));
  // Compiled here once (seconds each, a minute on a loaded machine) rather than inside the first test file's hook
  // that needs them, where two test files compiling at once could run out of the hook's time.
  for (const [name, target] of [["probe", "release"], ["probe", "small"], ["tcp-probe", "release"]]) await fixtureModule(name, target);

  return () => {
    // Meshes this run made and did not remove (a worker that crashed, or a test that never stopped its mesh).
    const meshes = hasNetAdmin() ? cleanupMeshes({ testRun: runId }).removedMeshes : [];
    const left = leftoverProcesses(runId);
    for (const { pid } of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    if (left.length > 0) {
      throw new Error(`processes left running after the tests (now killed):\n${left.map((p) => `  ${p.pid} ${p.command}`).join("\n")}`);
    }
    if (meshes.length > 0) throw new Error(`mesh networks left behind by the tests (now removed): ${meshes.join(", ")}`);
  };
}

/** Pod tests need root (network namespaces, links, iptables) and iptables from Debian, installed here when missing.
 * They are skipped without root, except in CI, which runs as root and must run them. Leftovers of crashed test runs
 * (meshes made by tests whose owning process is gone) are removed first; live meshes of other runs and engineers, and
 * meshes not made by tests (the demo's, the CLI's), are left alone. */
function setUpPods(skipE2E: boolean): boolean {
  if (skipE2E) return false;
  if (!hasNetAdmin()) {
    if (process.env.CI === "true") throw new Error("the pod tests need root (CAP_NET_ADMIN) and CI must run them: run the tests as root");
    console.log("not root: pod tests (network namespaces, capture rules) are SKIPPED");
    return false;
  }
  ensureMeshPrerequisites("the pod tests", (line) => console.log(line));
  const { removedMeshes } = cleanupMeshes({ onlyTestRuns: true });
  if (removedMeshes.length) console.log(`removed mesh networks of crashed test runs: ${removedMeshes.join(", ")}`);
  return true;
}

declare module "vitest" {
  export interface ProvidedContext {
    skipE2E: boolean;
    skipPods: boolean;
  }
}
