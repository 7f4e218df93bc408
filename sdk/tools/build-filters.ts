// Compiles every filter (filters/<name>/index.ts) to build/filters/<name>.wasm with the project's asconfig.json,
// which extends the SDK preset. Usage: build-filters [name ...] [--target debug]
import asc from "assemblyscript/asc";
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(import.meta.url), "../../..");

/** Compiles an AssemblyScript entry file (relative to the repository root, or absolute) to `outFile` with the
 * project's asconfig.json, which extends the SDK preset. Returns the absolute path of the module. */
export async function compileModule(entry: string, outFile: string, target = "release"): Promise<string> {
  let log = "";
  const { error } = await asc.main(
    [entry, "--config", join(root, "asconfig.json"), "--target", target, "--outFile", outFile, "--baseDir", root],
    { stdout: { write: (s: string) => ((log += s), true) } as never, stderr: { write: (s: string) => ((log += s), true) } as never },
  );
  if (error) throw new Error(`compiling ${entry} failed:\n${log}`);
  return resolve(root, outFile);
}

export async function buildFilter(name: string, target = "release"): Promise<string> {
  const outFile = join("build", "filters", target === "release" ? `${name}.wasm` : `${name}.${target}.wasm`);
  return compileModule(join("filters", name, "index.ts"), outFile, target);
}

export function filterNames(): string[] {
  return readdirSync(join(root, "filters")).filter((name) => existsSync(join(root, "filters", name, "index.ts"))).sort();
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const targetAt = args.indexOf("--target");
  const target = targetAt >= 0 ? args.splice(targetAt, 2)[1] : "release";
  const names = args.length > 0 ? args : filterNames();
  for (const name of names) {
    const out = await buildFilter(name, target);
    console.log(`built ${out.slice(root.length + 1)}`);
  }
}
