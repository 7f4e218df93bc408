// The project the `skiff` command works in: the nearest folder, from the working directory up, that holds a
// node_modules folder (where npm installed Skiff), as npx finds its commands; else the working directory. Its
// filters/, build/ and .envoy/ are the ones `skiff new`, `skiff build`, `skiff run` and `skiff envoy install` use.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export function projectDir(from: string = process.cwd()): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules"))) return dir;
    if (dirname(dir) === dir) return resolve(from);
  }
}
