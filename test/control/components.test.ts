// The components builder (control/components): a missing component is named with the command that builds it, and
// two builds of the same component at once (two worktrees sharing SKIFF_COMPONENTS_DIR) both succeed with one
// complete result and nothing half-written left behind. Uses the `descriptors` entry, which `npm test` has built, so
// the Go caches are warm and each build here is the wrapper, a cached compile and a link.
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ComponentNotBuiltError, componentPath } from "../../control/components/build.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";

const skiff = (args: string[], env: NodeJS.ProcessEnv) =>
  promisify(execFile)(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), ...args], { cwd: PROJECT_ROOT, env, timeout: 300_000 });

describe("skiff components", () => {
  const saved = process.env.SKIFF_COMPONENTS_DIR;
  const empty = mkdtempSync(join(tmpdir(), "skiff-components-"));
  afterEach(() => {
    if (saved === undefined) delete process.env.SKIFF_COMPONENTS_DIR;
    else process.env.SKIFF_COMPONENTS_DIR = saved;
  });
  afterAll(() => rmSync(empty, { recursive: true, force: true }));

  it("names the command that builds a component that is not built", async () => {
    process.env.SKIFF_COMPONENTS_DIR = empty;
    expect(() => componentPath("descriptors")).toThrow(ComponentNotBuiltError);
    expect(() => componentPath("descriptors")).toThrow("npx skiff components build descriptors");
    await expect(skiff(["components", "which", "descriptors"], { ...process.env, SKIFF_COMPONENTS_DIR: empty })).rejects.toMatchObject({
      stderr: expect.stringContaining("npx skiff components build descriptors"),
    });
    expect(() => componentPath("kafka")).toThrow(/no component named "kafka" \(known: descriptors/);
  });

  it("builds once into place when two builds race, leaving nothing half-written", async () => {
    const reference = readFileSync(componentPath("descriptors"));
    const shared = mkdtempSync(join(tmpdir(), "skiff-components-"));
    try {
      const env = { ...process.env, SKIFF_COMPONENTS_DIR: shared };
      const outputs = await Promise.all([skiff(["components", "build", "descriptors"], env), skiff(["components", "build", "descriptors"], env)]);
      const paths = outputs.map(({ stdout }) => stdout.trim().replace(/^descriptors: (\S+).*$/, "$1"));
      expect(paths[0]).toBe(paths[1]);
      expect(readdirSync(shared)).toEqual([paths[0].split("/").at(-2)]);
      expect(readFileSync(paths[0]).equals(reference)).toBe(true);
      const again = await skiff(["components", "build", "descriptors"], env);
      expect(again.stdout).toContain("(already built)");
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  }, 600_000);
});
