// Compiles the SDK's test modules (sdk/fixtures/<name>/index.ts) for tests into build/sdk-fixtures/<name>.wasm,
// unless that file is newer than the fixture and the SDK sources. Test files run in parallel processes: the first
// to need a module takes a lock file and compiles it (to a private file, renamed into place, so nobody reads half a
// module); the others wait for it instead of compiling the same module again.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { compileFilter } from "./compile.js";

const root = resolve(fileURLToPath(import.meta.url), "../../..");
const built = new Map<string, Promise<string>>();
/** A lock older than this belongs to a compile that died; a compile takes seconds. */
const STALE_LOCK_MS = 120_000;

/** The absolute path of the compiled fixture module `name`, built with the preset's `target` (release, small, debug). */
export function fixtureModule(name: string, target = "release"): Promise<string> {
  const key = `${name}.${target}`;
  let module = built.get(key);
  if (module === undefined) {
    module = compile(name, target);
    built.set(key, module);
  }
  return module;
}

async function compile(name: string, target: string): Promise<string> {
  const dir = join(root, "build", "sdk-fixtures");
  mkdirSync(dir, { recursive: true });
  const final = join(dir, target === "release" ? `${name}.wasm` : `${name}.${target}.wasm`);
  const sources = [join(root, "sdk", "assembly"), join(root, "sdk", "fixtures", name), join(root, "sdk", "asconfig.json")];
  const upToDate = () => existsSync(final) && statSync(final).mtimeMs > Math.max(...sources.map(newestMtime));
  const lock = `${final}.lock`;
  for (;;) {
    if (upToDate()) return final;
    if (takeLock(lock)) break;
    await sleep(100);
  }
  try {
    if (upToDate()) return final;
    const temporary = join(dir, `${name}.${process.pid}.${Date.now()}.wasm`);
    await compileFilter({ entry: join("sdk", "fixtures", name, "index.ts"), outFile: temporary, config: "asconfig.json", target, baseDir: root });
    renameSync(temporary, final);
    return final;
  } finally {
    rmSync(lock, { force: true });
  }
}

function takeLock(lock: string): boolean {
  try {
    closeSync(openSync(lock, "wx"));
    return true;
  } catch {
    if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) rmSync(lock, { force: true });
    return false;
  }
}

function newestMtime(path: string): number {
  if (!statSync(path).isDirectory()) return statSync(path).mtimeMs;
  return Math.max(0, ...readdirSync(path, { withFileTypes: true }).map((entry) => newestMtime(join(path, entry.name))));
}
