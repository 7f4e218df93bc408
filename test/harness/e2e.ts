// `describeE2E` is `describe` for tests that need a real Envoy. They are skipped only when a user sets
// SKIFF_SKIP_E2E=1 by hand; in CI (CI=true) that setting fails the run instead (see global-setup.ts).
import { describe, inject } from "vitest";

export const describeE2E = inject("skipE2E") ? describe.skip : describe;
