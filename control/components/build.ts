// Builds the components of the catalog from the Go module proxy into a git-ignored folder, and finds them.
// A build happens in a temporary folder beside its destination and is renamed into place only when complete and
// checked, so concurrent builds (two worktrees sharing SKIFF_COMPONENTS_DIR) never see a half-written file: the first
// rename wins and the other build's result is discarded. A built component is reused while its recipe is unchanged.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { projectDir } from "../project.js";
import { type Component, component } from "./catalog.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const BUILDING = ".building-";

export class ComponentNotBuiltError extends Error {
  constructor(readonly component: Component, path: string) {
    super(
      `${component.name} ${component.version} is not built (looked for ${path}). ` +
        `Build it with \`npx skiff components build ${component.name}\` (needs Go; see control/components/README.md).`,
    );
    this.name = "ComponentNotBuiltError";
  }
}

/** Where components live: $SKIFF_COMPONENTS_DIR, or `.components/` in the project (control/project.ts). */
export function componentsRoot(): string {
  return resolve(process.env.SKIFF_COMPONENTS_DIR || join(projectDir(), ".components"));
}

/** The folder of a component's build: name, version and a digest of the recipe, so a changed recipe builds anew. */
export function componentDir(entry: Component): string {
  return join(componentsRoot(), `${entry.name}-${entry.version}-${recipeDigest(entry)}`);
}

function artifactName(entry: Component): string {
  return "program" in entry.artifact ? entry.artifact.program : entry.artifact.file;
}

/** The path of a built component's program (or file), or ComponentNotBuiltError naming the command that builds it. */
export function componentPath(name: string): string {
  const entry = component(name);
  const path = join(componentDir(entry), artifactName(entry));
  if (!existsSync(path)) throw new ComponentNotBuiltError(entry, path);
  return path;
}

export interface BuildResult {
  path: string;
  /** False when an existing build was reused. */
  built: boolean;
  seconds: number;
}

/** Builds a component unless it is built already; logs each step. Throws with Go's own output on failure. */
export function buildComponent(name: string, log: (line: string) => void = () => {}): BuildResult {
  const entry = component(name);
  const final = componentDir(entry);
  const path = join(final, artifactName(entry));
  if (existsSync(path)) return { path, built: false, seconds: 0 };

  const started = Date.now();
  mkdirSync(componentsRoot(), { recursive: true });
  removeAbandonedBuilds();
  const work = mkdtempSync(join(componentsRoot(), `${BUILDING}${entry.name}-${process.pid}-`));
  try {
    const source = join(work, "src");
    const out = join(work, "out");
    mkdirSync(out);
    writeWrapper(entry, source);
    const go = goRunner(source, log);
    if ("fromModule" in entry.artifact) {
      // A file of the module itself: download the module (verified against the checksum database) and take the file.
      const { Dir } = JSON.parse(go(["mod", "download", "-json", `${entry.module}@${entry.version}`])) as { Dir: string };
      cpSync(join(Dir, entry.artifact.fromModule), join(out, entry.artifact.file));
      return finish(entry, out, final, path, started);
    }
    go(["get", `${entry.module}@${entry.version}`]);
    if (entry.blankImports) {
      const packages = go(["list", entry.blankImports]).trim().split("\n");
      writeFileSync(join(source, "imports.go"), `package main\n\nimport (\n${packages.map((p) => `\t_ "${p}"\n`).join("")})\n`);
      log(`linking in ${packages.length} packages of ${entry.blankImports}`);
    }
    const program = "program" in entry.artifact ? entry.artifact.program : entry.artifact.writtenBy;
    const ldflags = ["-s", "-w", ...(entry.ldflags ?? [])].join(" ");
    go(["build", "-trimpath", `-ldflags=${ldflags}`, "-o", join(out, program), entry.package]);
    if ("program" in entry.artifact) {
      run(join(out, program), entry.artifact.check, out, log);
    } else {
      run(join(out, program), [join(out, entry.artifact.file)], out, log);
      rmSync(join(out, program));
    }
    return finish(entry, out, final, path, started);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Records how the component was made and renames it into place. */
function finish(entry: Component, out: string, final: string, path: string, started: number): BuildResult {
  const seconds = Math.round((Date.now() - started) / 1000);
  const goVersion = spawnSync("go", ["env", "GOVERSION"], { encoding: "utf8" }).stdout.trim();
  writeFileSync(join(out, "component.json"), JSON.stringify({ ...entry, goVersion, builtAt: new Date().toISOString(), seconds }, null, 2) + "\n");
  try {
    renameSync(out, final);
  } catch (error) {
    // Another build of the same recipe finished first: use it.
    const code = (error as NodeJS.ErrnoException).code;
    if ((code !== "ENOTEMPTY" && code !== "EEXIST") || !existsSync(path)) throw error;
  }
  return { path, built: true, seconds };
}

function writeWrapper(entry: Component, dir: string): void {
  mkdirSync(dir);
  if (entry.files) cpSync(join(HERE, "go", entry.name), dir, { recursive: true });
  const replace = entry.replace?.length ? `\nreplace (\n${entry.replace.map((line) => `\t${line}\n`).join("")})\n` : "";
  writeFileSync(join(dir, "go.mod"), `module skiff.local/components/${entry.name}\n\ngo 1.26\n${replace}`);
}

/** Runs `go` in the wrapper module with the machine's GOPROXY and GOTOOLCHAIN; -mod=mod lets it complete go.mod and
 * go.sum (every module is still checked against the checksum database); GOWORK=off keeps any go.work out. */
function goRunner(cwd: string, log: (line: string) => void): (args: string[]) => string {
  const env = { ...process.env, GOFLAGS: [process.env.GOFLAGS, "-mod=mod"].filter(Boolean).join(" "), GOWORK: "off" };
  return (args) => {
    log(`go ${args.join(" ")}`);
    const result = spawnSync("go", args, { cwd, env, encoding: "utf8", maxBuffer: 64 << 20, stdio: ["ignore", "pipe", "pipe"] });
    if (result.error) {
      const missing = (result.error as NodeJS.ErrnoException).code === "ENOENT";
      throw new Error(missing ? "Go is needed to build components: install Go 1.26 or newer and put `go` on PATH" : result.error.message);
    }
    if (result.status !== 0) throw new Error(`go ${args.join(" ")} failed:\n${result.stderr.trim()}`);
    return result.stdout;
  };
}

function run(program: string, args: string[], cwd: string, log: (line: string) => void): void {
  log(`${program.split("/").pop()} ${args.map((arg) => arg.replace(cwd + "/", "")).join(" ")}`);
  const result = spawnSync(program, args, { cwd, encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "pipe"] });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim();
  if (result.status !== 0) throw new Error(`${program} ${args.join(" ")} did not succeed (${result.error?.message ?? `exit ${result.status}`}):\n${output}`);
  if (output) log(output.split("\n")[0]);
}

/** The temporary folders of builds whose process is gone (killed mid-build). */
function removeAbandonedBuilds(): void {
  for (const name of readdirSync(componentsRoot())) {
    const pid = Number(/^\.building-.+-(\d+)-\w+$/.exec(name)?.[1]);
    if (pid && !alive(pid)) rmSync(join(componentsRoot(), name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function recipeDigest(entry: Component): string {
  const hash = createHash("sha256").update(JSON.stringify(entry));
  if (entry.files) {
    const dir = join(HERE, "go", entry.name);
    for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(join(dir, file)));
  }
  return hash.digest("hex").slice(0, 8);
}

