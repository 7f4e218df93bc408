// Istio-style YAML from a folder: load it once (`skiff validate`) or watch it (`skiff control-plane`).
import { type FSWatcher, readdirSync, readFileSync, watch } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { assembleValid, LastGoodMesh, type MeshCheck } from "./assemble.js";
import { Debouncer } from "./debounce.js";
import { type ConfigError, type MeshConfig, wasmModules } from "./model.js";
import { type ParsedFile, parseFile } from "./parse.js";

export type { ConfigError, MeshConfig } from "./model.js";
export { CA_SECRET_SUFFIX, credentialReference, formatConfigError, moduleSha256, wasmModules } from "./model.js";
export type { ModuleFile, ModuleImage, ModuleSource } from "./model.js";
export { clientTlsFiles, type CredentialFiles, credentialFiles, DEFAULT_NAMESPACE, MESH_CONFIG_FILE, pullSecretFile, wasmModulePath } from "./parse.js";
export { DEBOUNCE } from "./debounce.js";
export type { MeshCheck } from "./assemble.js";

export interface SourceOptions {
  /** Checks of the assembled mesh that need more than one file (assemble.ts). */
  check?: MeshCheck;
  /** The namespace of resources whose metadata names none (default "default"), as kubectl's `-n`. */
  namespace?: string;
}

/** Reads every *.yaml / *.yml file directly in `dir`. Invalid files contribute nothing and are listed in `errors`. */
export function loadConfigDir(dir: string, options: SourceOptions = {}): { mesh: MeshConfig; errors: ConfigError[] } {
  const root = resolve(dir);
  return assembleValid(root, readFolder(root, options), options.check);
}

/** loadConfigDir for YAML texts by file name instead of the folder's own files (other files, such as certificates and
 * modules, are still read from `dir`): for tools that try variations of a config, such as test/translate's guard. */
export function loadConfigTexts(dir: string, texts: Map<string, string>, options: SourceOptions = {}): { mesh: MeshConfig; errors: ConfigError[] } {
  const root = resolve(dir);
  const files = [...texts.keys()].sort();
  return assembleValid(root, new Map(files.map((file) => [file, parseFile(root, file, texts.get(file)!, options.namespace)])), options.check);
}

/** Watches `dir` and calls `onChange` with the new mesh after each debounced burst of changes that changes it (and
 * the time, epoch ms, of the burst's first file event: where istiod starts its convergence and debounce clocks), and
 * `onErrors` whenever the list of errors changes (an empty list when they are fixed). An invalid file keeps its last
 * good version in the mesh, so a typo never takes routes away. The first call of each happens right away. */
export function watchConfigDir(
  dir: string,
  onChange: (mesh: MeshConfig, firstChangeAt: number) => void,
  onErrors: (errors: ConfigError[]) => void,
  options: SourceOptions = {},
): { close(): Promise<void> } {
  const root = resolve(dir);
  const assembler = new LastGoodMesh(root, options.check);
  let lastMesh = "";
  let lastErrors = "";

  const reload = (firstChangeAt: number) => {
    const { mesh, errors } = assembler.update(readFolder(root, options));
    const meshText = JSON.stringify(mesh);
    const errorsText = JSON.stringify(errors);
    if (errorsText !== lastErrors) {
      lastErrors = errorsText;
      onErrors(errors);
    }
    if (meshText !== lastMesh) {
      lastMesh = meshText;
      watchModules(mesh);
      onChange(mesh, firstChangeAt);
    }
  };

  // Wasm modules usually live outside the folder (build/filters/): their folders are watched too, so that a
  // rebuilt module reaches the proxies like an edited file. Folders, not files: builds replace files.
  const moduleWatchers = new Map<string, FSWatcher>();
  let modulesInFolders = new Map<string, Set<string>>();
  const watchModules = (mesh: MeshConfig) => {
    const files = new Map<string, Set<string>>();
    for (const module of wasmModules(mesh)) {
      if (!("path" in module)) continue;
      const folder = dirname(module.path);
      if (folder !== root) files.set(folder, (files.get(folder) ?? new Set()).add(basename(module.path)));
    }
    for (const [folder, watcher] of moduleWatchers) {
      if (!files.has(folder)) {
        watcher.close();
        moduleWatchers.delete(folder);
      }
    }
    for (const folder of files.keys()) {
      if (moduleWatchers.has(folder)) continue;
      try {
        const moduleWatcher = watch(folder, (_event, name) => name && modulesInFolders.get(folder)?.has(name.toString()) && changed());
        // An unhandled watcher error would end the process; a reload reports what is wrong with the module.
        moduleWatcher.on("error", changed);
        moduleWatchers.set(folder, moduleWatcher);
      } catch {
        // The folder went away; the next reload reports the missing module.
      }
    }
    modulesInFolders = files;
  };

  const debouncer = new Debouncer((firstChangeAt) => {
    try {
      reload(firstChangeAt);
    } catch (error) {
      // The folder itself is unreadable (removed, permissions): report it and keep serving the last mesh.
      lastErrors = "";
      onErrors([{ file: ".", message: `cannot read the config folder ${root}: ${(error as Error).message}` }]);
    }
  });
  const changed = () => debouncer.changed();

  const watcher: FSWatcher = watch(root, changed);
  // The folder removed or unreadable: a reload reports it and the last mesh keeps serving.
  watcher.on("error", changed);
  const close = () => {
    watcher.close();
    for (const moduleWatcher of moduleWatchers.values()) moduleWatcher.close();
    debouncer.cancel();
  };
  try {
    reload(Date.now());
  } catch (error) {
    // The folder cannot be read at all: nothing to serve, so the caller gets the error (and no watcher lingers).
    close();
    throw error;
  }
  return { close: async () => close() };
}

/** The YAML files directly in the folder, in name order. */
function yamlFiles(root: string): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/** The folder's YAML texts by file name (a file that cannot be read is left out; loadConfigDir reports it). */
export function readTexts(root: string): Map<string, string> {
  const texts = new Map<string, string>();
  for (const file of yamlFiles(root)) {
    try {
      texts.set(file, readFileSync(resolve(root, file), "utf8"));
    } catch {
      // Gone between listing and reading.
    }
  }
  return texts;
}

function readFolder(root: string, options: SourceOptions): Map<string, ParsedFile> {
  const parsed = new Map<string, ParsedFile>();
  for (const file of yamlFiles(root)) {
    let text: string;
    try {
      text = readFileSync(resolve(root, file), "utf8");
    } catch (error) {
      // Deleted between listing and reading: the next watch event sees it gone.
      parsed.set(file, { resources: [], errors: [{ file, message: `cannot read: ${(error as Error).message}` }] });
      continue;
    }
    parsed.set(file, parseFile(root, file, text, options.namespace));
  }
  return parsed;
}
