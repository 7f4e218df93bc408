// Compiles proxy-wasm filters written with the SDK: `@skiff/proxy-wasm/compile`, behind `skiff build` and the SDK's
// own tests. A project keeps one filter per folder (filters/<name>/index.ts) and an asconfig.json that extends the
// SDK preset ({ "extends": "@skiff/proxy-wasm/asconfig.json" }); a module goes to build/filters/<name>.wasm.
import asc from "assemblyscript/asc";
import { existsSync, readdirSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";

/** The preset's target a build uses unless told otherwise: `small` (AssemblyScript's minimal runtime, the SDK
 * collecting every 64 finished contexts, shrink level 2). Under half the bytes of `release` (incremental runtime,
 * -O3) and within a third of the peer SDK's module, for at most 3% more Envoy instructions per request, and its memory
 * stayed flat through the soak (bench/RESULTS.md, "Cost against the floor" and "Soak of the build targets"). */
export const DEFAULT_TARGET = "small";

export interface CompileOptions {
  /** The AssemblyScript entry file, absolute or relative to `baseDir`. */
  entry: string;
  /** Where the module goes, absolute or relative to `baseDir`. */
  outFile: string;
  /** The asconfig.json to compile with (it extends the SDK preset). */
  config: string;
  /** A target of the preset: `small` (DEFAULT_TARGET), `release` or `debug`. */
  target?: string;
  /** The project folder: relative paths start there, and packages are found in its node_modules. */
  baseDir: string;
}

/** A compile that failed, with the compiler's output (file, line and message of each error). */
export class CompileError extends Error {
  constructor(readonly entry: string, readonly output: string) {
    super(`compiling ${entry} failed:\n${output.trim()}`);
    this.name = "CompileError";
  }
}

/** Compiles one entry file; returns the absolute path of the module. */
export async function compileFilter(options: CompileOptions): Promise<string> {
  const baseDir = resolve(options.baseDir);
  const toBase = (path: string) => (isAbsolute(path) ? relative(baseDir, path) : path);
  let output = "";
  const sink = { write: (text: string) => ((output += text), true) } as never;
  const { error } = await asc.main(
    [
      toBase(options.entry), "--config", resolve(baseDir, options.config), "--target", options.target ?? DEFAULT_TARGET,
      "--outFile", toBase(options.outFile), "--baseDir", baseDir, "--noColors",
    ],
    { stdout: sink, stderr: sink },
  );
  if (error) throw new CompileError(options.entry, output || error.message);
  return resolve(baseDir, toBase(options.outFile));
}

export interface FilterSource {
  name: string;
  /** filters/<name>/index.ts, relative to the project. */
  entry: string;
  /** build/filters/<name>.wasm (or <name>.<target>.wasm for a target other than the default), relative to the project. */
  outFile: string;
}

/** The filters of a project, by name: every folder of filters/ with an index.ts. */
export function projectFilters(projectDir: string, target = DEFAULT_TARGET): FilterSource[] {
  const filtersDir = join(projectDir, "filters");
  if (!existsSync(filtersDir)) return [];
  return readdirSync(filtersDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(filtersDir, entry.name, "index.ts")))
    .map((entry) => entry.name)
    .sort()
    .map((name) => ({
      name,
      entry: join("filters", name, "index.ts"),
      outFile: filterModule(name, target),
    }));
}

/** Where a filter's module of a target goes, relative to the project: build/filters/<name>.wasm for the default
 * target, build/filters/<name>.<target>.wasm for another. */
export function filterModule(name: string, target = DEFAULT_TARGET): string {
  return join("build", "filters", target === DEFAULT_TARGET ? `${name}.wasm` : `${name}.${target}.wasm`);
}
