// `describeE2E` is `describe` for tests that need a real Envoy. They are skipped only when a user sets
// SKIFF_SKIP_E2E=1 by hand; in CI (CI=true) that setting fails the run instead (see global-setup.ts).
import { describe, inject } from "vitest";

export const describeE2E = inject("skipE2E") ? describe.skip : describe;

/** `describe` for tests that need pods (pods.ts; root: CAP_NET_ADMIN). Without it they are skipped with a notice,
 * except in CI (CI=true), where global-setup.ts fails the run instead. */
export const describePods = inject("skipPods") ? describe.skip : describe;
