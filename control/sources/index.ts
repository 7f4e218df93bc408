// Istio-style YAML from a folder: load it once (`skiff validate`) or watch it (`skiff control-plane`).
import { type FSWatcher, readdirSync, readFileSync, watch } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { type ConfigError, emptyMesh, formatConfigError, type MeshConfig, type Resource, wasmModules } from "./model.js";
import { type ParsedFile, parseFile } from "./parse.js";

export type { ConfigError, MeshConfig } from "./model.js";
export { formatConfigError, moduleSha256, wasmModules } from "./model.js";
export type { ModuleFile, ModuleImage, ModuleSource } from "./model.js";
export { type CredentialFiles, credentialFiles, DEFAULT_NAMESPACE, MESH_CONFIG_FILE, pullSecretFile, wasmModulePath } from "./parse.js";

/** istiod's push debounce: wait for 100 ms without changes, but never longer than 10 s after the first one. */
export const DEBOUNCE = { quietMs: 100, maxMs: 10_000 };

/** Checks of the assembled mesh that need more than one file, or more than the sources know (the callers pass
 * control/translate's: patched results must encode). An error counts as one of its `file`, which then contributes
 * nothing (loadConfigDir) or keeps its last good version (watchConfigDir), as with a schema error. */
export interface SourceOptions {
  check?: (mesh: MeshConfig) => ConfigError[];
  /** The namespace of resources whose metadata names none (default "default"), as kubectl's `-n`. */
  namespace?: string;
}

/** Reads every *.yaml / *.yml file directly in `dir`. Invalid files contribute nothing and are listed in `errors`. */
export function loadConfigDir(dir: string, options: SourceOptions = {}): { mesh: MeshConfig; errors: ConfigError[] } {
  const root = resolve(dir);
  const parsed = readFolder(root, options);
  const { errors } = assemble(root, parsed);
  const valid = new Map([...parsed].filter(([, file]) => file.errors.length === 0));
  const checked = applyCheck(root, valid, () => undefined, options);
  return { mesh: checked.mesh, errors: [...errors, ...checked.errors] };
}

/** Assembles `files`, runs the check, and replaces each file it finds errors in by `fallback(file)` (nothing when
 * undefined) until the check passes. Returns the mesh, the check's errors, and the files that were replaced. */
function applyCheck(
  root: string,
  files: Map<string, ParsedFile>,
  fallback: (file: string) => ParsedFile | undefined,
  options: SourceOptions,
): { mesh: MeshConfig; errors: ConfigError[]; failed: Set<string> } {
  const failed = new Set<string>();
  const errors: ConfigError[] = [];
  const effective = new Map(files);
  for (;;) {
    const { mesh } = assemble(root, effective);
    const found = options.check?.(mesh) ?? [];
    for (const error of found) if (!errors.some((known) => formatConfigError(known) === formatConfigError(error))) errors.push(error);
    const bad = [...new Set(found.map((error) => error.file))].filter((file) => !failed.has(file));
    if (bad.length === 0) return { mesh, errors, failed };
    for (const file of bad) {
      failed.add(file);
      const previous = fallback(file);
      if (previous && previous !== files.get(file)) effective.set(file, previous);
      else effective.delete(file);
    }
  }
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
  const lastGood = new Map<string, ParsedFile>();
  let lastMesh = "";
  let lastErrors = "";

  let burstStart: number | undefined;
  const reload = () => {
    const firstChangeAt = burstStart ?? Date.now();
    burstStart = undefined;
    const current = readFolder(root, options);
    const candidate = new Map<string, ParsedFile>();
    for (const [file, parsed] of current) {
      const good = parsed.errors.length === 0 ? parsed : lastGood.get(file);
      if (good) candidate.set(file, good);
    }
    // A file the check refuses keeps its last good version too (or contributes nothing, if it never had one).
    const { mesh, errors: checkErrors, failed } = applyCheck(root, candidate, (file) => lastGood.get(file), options);
    for (const [file, parsed] of current) if (parsed.errors.length === 0 && !failed.has(file)) lastGood.set(file, parsed);
    for (const file of lastGood.keys()) if (!current.has(file)) lastGood.delete(file);
    // Errors are those of the files as they are now (the mesh may hold older, good versions of some).
    const errors = [...assemble(root, current).errors, ...checkErrors];
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

  let quietTimer: NodeJS.Timeout | undefined;
  let maxTimer: NodeJS.Timeout | undefined;
  const fire = () => {
    clearTimeout(quietTimer);
    clearTimeout(maxTimer);
    quietTimer = maxTimer = undefined;
    try {
      reload();
    } catch (error) {
      // The folder itself is unreadable (removed, permissions): report it and keep serving the last mesh.
      lastErrors = "";
      onErrors([{ file: ".", message: `cannot read the config folder ${root}: ${(error as Error).message}` }]);
    }
  };
  const changed = () => {
    burstStart ??= Date.now();
    clearTimeout(quietTimer);
    quietTimer = setTimeout(fire, DEBOUNCE.quietMs);
    maxTimer ??= setTimeout(fire, DEBOUNCE.maxMs);
  };

  const watcher: FSWatcher = watch(root, changed);
  // The folder removed or unreadable: a reload reports it and the last mesh keeps serving.
  watcher.on("error", changed);
  const close = () => {
    watcher.close();
    for (const moduleWatcher of moduleWatchers.values()) moduleWatcher.close();
    clearTimeout(quietTimer);
    clearTimeout(maxTimer);
  };
  try {
    reload();
  } catch (error) {
    // The folder cannot be read at all: nothing to serve, so the caller gets the error (and no watcher lingers).
    close();
    throw error;
  }
  return { close: async () => close() };
}

function readFolder(root: string, options: SourceOptions): Map<string, ParsedFile> {
  const files = readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map((entry) => entry.name)
    .sort();
  const parsed = new Map<string, ParsedFile>();
  for (const file of files) {
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

function assemble(root: string, files: Map<string, ParsedFile>): { mesh: MeshConfig; errors: ConfigError[] } {
  const mesh = emptyMesh(root);
  const errors: ConfigError[] = [];
  const seen = new Map<string, string>();
  const lists: Record<string, Resource<unknown>[]> = {
    Gateway: mesh.gateways,
    VirtualService: mesh.virtualServices,
    DestinationRule: mesh.destinationRules,
    ServiceEntry: mesh.serviceEntries,
    WorkloadEntry: mesh.workloadEntries,
    WasmPlugin: mesh.wasmPlugins,
    TrafficExtension: mesh.trafficExtensions,
    EnvoyFilter: mesh.envoyFilters,
    AuthorizationPolicy: mesh.authorizationPolicies,
    RequestAuthentication: mesh.requestAuthentications,
    Sidecar: mesh.sidecars,
  };
  for (const [file, parsed] of files) {
    errors.push(...parsed.errors);
    if (parsed.meshConfig?.outboundTrafficPolicy) mesh.outboundTrafficPolicy = parsed.meshConfig.outboundTrafficPolicy.mode;
    if (parsed.meshConfig?.rootNamespace) mesh.rootNamespace = parsed.meshConfig.rootNamespace;
    if (parsed.meshConfig?.localityLbSetting) mesh.localityLbSetting = parsed.meshConfig.localityLbSetting;
    mesh.installation.push(...(parsed.installation ?? []));
    for (const resource of parsed.resources) {
      const id = `${resource.kind} ${resource.namespace}/${resource.name}`;
      const first = seen.get(id);
      if (first !== undefined) {
        errors.push({ file, resource: id, message: `duplicate resource: already defined in ${first}; this one is ignored` });
        continue;
      }
      seen.set(id, file);
      lists[resource.kind]!.push(resource);
    }
  }
  return { mesh, errors };
}
