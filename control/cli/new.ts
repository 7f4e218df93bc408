// `skiff new filter <name>`: scaffolds a filter in the project: filters/<name>/ with index.ts, an emulator test and a
// README, plus (once per project) asconfig.json extending the SDK preset and filters/tsconfig.json for editors.
import { Command, InvalidArgumentError } from "commander";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { projectDir } from "../project.js";
import { ASCONFIG, FILTERS_TSCONFIG, filterNames, filterReadme, filterSource, filterTest } from "./templates.js";

function filterName(value: string): string {
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(value)) {
    throw new InvalidArgumentError("expected lower-case letters and digits, words joined by '-' (e.g. my-filter)");
  }
  return value;
}

/** Writes the files of a new filter; returns the paths written, relative to the project. */
export function scaffoldFilter(project: string, name: string): string[] {
  const folder = join(project, "filters", name);
  if (existsSync(folder)) throw new Error(`filters/${name} already exists in ${project}`);
  const names = filterNames(name);
  const files: Array<[string, string]> = [
    [join(folder, "index.ts"), filterSource(names)],
    [join(folder, `${name}.test.ts`), filterTest(names)],
    [join(folder, "README.md"), filterReadme(names)],
  ];
  if (!existsSync(join(project, "asconfig.json"))) files.push([join(project, "asconfig.json"), ASCONFIG]);
  if (!existsSync(join(project, "filters", "tsconfig.json"))) files.push([join(project, "filters", "tsconfig.json"), FILTERS_TSCONFIG]);
  mkdirSync(folder, { recursive: true });
  for (const [path, text] of files) writeFileSync(path, text);
  return files.map(([path]) => relative(project, path));
}

export const newCommand = new Command("new").description("scaffold something in the project");

newCommand
  .command("filter")
  .description("a new filter in filters/<name>/: index.ts, an emulator test, a README (and asconfig.json once)")
  .argument("<name>", "the filter's name, e.g. my-filter", filterName)
  .action((name: string) => {
    const project = projectDir();
    for (const file of scaffoldFilter(project, name)) console.log(`created ${file}`);
    console.log(`
Next, in ${project}:
  npx skiff build                  # build/filters/${name}.wasm
  npx vitest run filters/${name}   # its emulator test (npm install --save-dev vitest once)
  npx skiff run ${name}            # a local Envoy with the filter in front of 127.0.0.1:8080`);
  });
