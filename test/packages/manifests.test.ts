// The two packages a filter author installs, @skiff/proxy-wasm (sdk/) and skiff (control/), must declare every package
// their code imports at run time, at the version this repository pins: a dependency someone adds to the repository
// but not to the package would install fine here (npm hoists it) and break only in a user's project.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const read = (path: string): Manifest => JSON.parse(readFileSync(join(PROJECT_ROOT, path), "utf8")) as Manifest;
const repository = read("package.json");
const pinned: Record<string, string> = { ...repository.dependencies, ...repository.devDependencies };

function sources(dir: string, skip: (path: string) => boolean): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (skip(path)) continue;
    if (statSync(path).isDirectory()) found.push(...sources(path, skip));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts") && !name.endsWith(".d.ts")) found.push(path);
  }
  return found;
}

/** Package names the files import (TypeScript's own scan: static, dynamic and type imports; not text in strings),
 * with a file for each. A type import counts too: the package's declarations refer to it. */
function importedPackages(files: string[]): Map<string, string> {
  const packages = new Map<string, string>();
  for (const file of files) {
    for (const { fileName: specifier } of ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles) {
      if (specifier.startsWith(".") || specifier.startsWith("node:") || builtinModules.includes(specifier)) continue;
      const name = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0];
      if (!packages.has(name)) packages.set(name, relative(PROJECT_ROOT, file));
    }
  }
  return packages;
}

const PACKAGES = [
  {
    folder: "control",
    files: () => sources(join(PROJECT_ROOT, "control"), (path) => /\/(dist|node_modules)$/.test(path)),
  },
  {
    folder: "sdk",
    files: () => [
      ...sources(join(PROJECT_ROOT, "sdk", "testing"), () => false),
      join(PROJECT_ROOT, "sdk", "tools", "compile.ts"),
      join(PROJECT_ROOT, "sdk", "transform", "exports.js"),
    ],
  },
];

describe("package manifests", () => {
  for (const { folder, files } of PACKAGES) {
    it(`${folder}/package.json declares what its code imports, at the repository's versions`, () => {
      const manifest = read(join(folder, "package.json"));
      const declared = manifest.dependencies ?? {};
      const missing = [...importedPackages(files())]
        .filter(([name]) => name !== manifest.name && declared[name] === undefined)
        .map(([name, file]) => `${name} (imported by ${file})`);
      expect(missing, `add these to ${folder}/package.json "dependencies"`).toEqual([]);
      const workspaces = new Set(["@skiff/proxy-wasm", "skiff"]);
      const differing = Object.entries(declared)
        .filter(([name, version]) => !workspaces.has(name) && pinned[name] !== version)
        .map(([name, version]) => `${name}: ${folder} has ${version}, the repository ${pinned[name] ?? "nothing"}`);
      expect(differing, "keep the packages on the repository's versions").toEqual([]);
    });
  }
});
