// Once per test run: names the Envoy the e2e tests run against, refuses to skip them in CI, and at the end checks
// that no process started by the tests is still alive.
import { randomUUID } from "node:crypto";
import type { TestProject } from "vitest/node";
import { locateEnvoy } from "../../control/envoy-binary/locate.js";
import { leftoverProcesses } from "./processes.js";

export default function setup(project: TestProject) {
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

  return () => {
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
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    skipE2E: boolean;
  }
}
