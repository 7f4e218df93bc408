// `skiff build [name...]`: compiles the project's filters (filters/<name>/index.ts) with its asconfig.json, which
// extends the SDK preset, to build/filters/<name>.wasm; `--watch` rebuilds a filter when its folder or the
// configuration changes.
import { Command } from "commander";
import { existsSync, statSync, watch } from "node:fs";
import { join } from "node:path";
import { projectDir } from "../project.js";

// Loaded when a build runs: the compiler is a large module the other commands never need.
type CompileModule = typeof import("@skiff/proxy-wasm/compile");
const sdk = (): Promise<CompileModule> => import("@skiff/proxy-wasm/compile");

export interface BuiltFilter {
  name: string;
  /** Absolute path of the module. */
  module: string;
  bytes: number;
}

/** Builds the named filters of a project (all when none is named); throws a CompileError for the first that fails. */
export async function buildFilters(project: string, names: string[] = [], target?: string): Promise<BuiltFilter[]> {
  const { compileFilter, projectFilters } = await sdk();
  if (!existsSync(join(project, "asconfig.json"))) {
    throw new Error(`${project} has no asconfig.json: create a filter with \`skiff new filter <name>\`, which writes one`);
  }
  const filters = projectFilters(project, target);
  for (const name of names) {
    if (!filters.some((filter) => filter.name === name)) {
      throw new Error(`no filter ${name} in ${join(project, "filters")} (have: ${filters.map((f) => f.name).join(", ") || "none"})`);
    }
  }
  const chosen = names.length > 0 ? filters.filter((filter) => names.includes(filter.name)) : filters;
  if (chosen.length === 0) throw new Error(`no filters in ${join(project, "filters")}: create one with \`skiff new filter <name>\``);
  const built: BuiltFilter[] = [];
  for (const filter of chosen) {
    const module = await compileFilter({ entry: filter.entry, outFile: filter.outFile, config: "asconfig.json", target, baseDir: project });
    built.push({ name: filter.name, module, bytes: statSync(module).size });
  }
  return built;
}

function report(built: BuiltFilter[], project: string): void {
  for (const filter of built) console.log(`built ${filter.module.slice(project.length + 1)} (${filter.bytes} bytes)`);
}

/** Rebuilds on change until interrupted: a filter's own folder rebuilds that filter; asconfig.json, or a change
 * outside any filter's folder, rebuilds all of them. Changes are gathered for 100 ms, so a save is one build. */
async function watchFilters(project: string, names: string[], target: string | undefined): Promise<void> {
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let building = Promise.resolve();
  const rebuild = () => {
    const all = pending.has("*");
    const chosen = all ? names : [...pending].filter((name) => names.length === 0 || names.includes(name));
    pending.clear();
    if (!all && chosen.length === 0) return;
    building = building.then(async () => {
      try {
        report(await buildFilters(project, chosen, target), project);
      } catch (error) {
        console.error((error as Error).message);
      }
    });
  };
  const changed = (what: string) => {
    pending.add(what);
    clearTimeout(timer);
    timer = setTimeout(rebuild, 100);
  };
  const watchers = [
    watch(join(project, "filters"), { recursive: true }, (_event, file) => {
      if (file === null || file.endsWith(".test.ts")) return;
      const [folder, ...rest] = file.split(/[\\/]/);
      changed(rest.length > 0 ? folder : "*");
    }),
    watch(join(project, "asconfig.json"), () => changed("*")),
  ];
  console.log(`watching ${join(project, "filters")} (Ctrl-C stops)`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  for (const watcher of watchers) watcher.close();
  clearTimeout(timer);
  await building;
}

export const buildCommand = new Command("build")
  .description("compile the project's filters (filters/<name>/index.ts) to build/filters/<name>.wasm with the SDK preset")
  .argument("[names...]", "only these filters (default: all)")
  .option("--target <target>", "a target of the preset: small (default), release or debug; another target than the default goes to build/filters/<name>.<target>.wasm")
  .option("--watch", "then rebuild a filter whenever its files change")
  .action(async (names: string[], options: { target?: string; watch?: boolean }) => {
    const project = projectDir();
    report(await buildFilters(project, names, options.target), project);
    if (options.watch) await watchFilters(project, names, options.target);
  });
