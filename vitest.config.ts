import { defineConfig } from "vitest/config";

export default defineConfig({
  // Tests written as a filter author writes them import "@skiff/proxy-wasm/testing"; in this repository that resolves
  // to the TypeScript sources (the package's "skiff-source" condition), not to a build that could be stale.
  ssr: { resolve: { conditions: ["skiff-source", "module", "node", "development|production"] } },
  test: {
    include: ["test/**/*.test.ts", "sdk/**/*.test.ts", "filters/**/*.test.ts", "control/**/*.test.ts"],
    globalSetup: ["test/harness/global-setup.ts"],
    setupFiles: ["test/harness/setup.ts"],
    pool: "forks",
    // Two cores: one test file per core; e2e files start their own Envoys.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // expect.poll waits for Envoy to apply something; 1 s (vitest's default) is too short on a busy 2-core machine.
    expect: { poll: { timeout: 15_000 } },
  },
});
