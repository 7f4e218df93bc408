// Parsed units (the files of a config folder, the objects of a Kubernetes API server) -> one MeshConfig. A unit is all
// or nothing, and a unit that turns bad keeps its last good version, so a typo never takes routes away.
import type { z } from "zod";
import { type ConfigError, emptyMesh, formatConfigError, type MeshConfig, type MeshTelemetry, type Resource } from "./model.js";
import { MESH_CONFIG_FILE, type ParsedFile } from "./parse.js";
import type { meshConfigSchema } from "./schema/index.js";

/** Checks of the assembled mesh that need more than one unit, or more than the sources know (the callers pass
 * control/translate's: patched results must encode). An error counts as one of its `file`, which then contributes
 * nothing (loadConfigDir) or keeps its last good version (watchers), as with a schema error. */
export type MeshCheck = (mesh: MeshConfig) => ConfigError[];

/** Keeps the last good version of each unit (by its key, ConfigError.file) across updates. */
export class LastGoodMesh {
  private readonly lastGood = new Map<string, ParsedFile>();

  constructor(
    private readonly root: string,
    private readonly check?: MeshCheck,
  ) {}

  /** The mesh of `current` where every unit that is invalid now (or that the check refuses) is replaced by its last
   * good version, if it had one; and the errors of the units as they are now. */
  update(current: Map<string, ParsedFile>): { mesh: MeshConfig; errors: ConfigError[] } {
    const candidate = new Map<string, ParsedFile>();
    for (const [unit, parsed] of current) {
      const good = parsed.errors.length === 0 ? parsed : this.lastGood.get(unit);
      if (good) candidate.set(unit, good);
    }
    // A unit the check refuses keeps its last good version too (or contributes nothing, if it never had one).
    const { mesh, errors: checkErrors, failed } = applyCheck(this.root, candidate, (unit) => this.lastGood.get(unit), this.check);
    for (const [unit, parsed] of current) if (parsed.errors.length === 0 && !failed.has(unit)) this.lastGood.set(unit, parsed);
    for (const unit of this.lastGood.keys()) if (!current.has(unit)) this.lastGood.delete(unit);
    // Errors are those of the units as they are now (the mesh may hold older, good versions of some).
    return { mesh, errors: [...assemble(this.root, current).errors, ...checkErrors] };
  }
}

/** The mesh of `units` without any history: invalid units contribute nothing (`skiff validate`). */
export function assembleValid(root: string, units: Map<string, ParsedFile>, check?: MeshCheck): { mesh: MeshConfig; errors: ConfigError[] } {
  const { errors } = assemble(root, units);
  const valid = new Map([...units].filter(([, unit]) => unit.errors.length === 0));
  const checked = applyCheck(root, valid, () => undefined, check);
  return { mesh: checked.mesh, errors: [...errors, ...checked.errors] };
}

/** Assembles `files`, runs the check, and replaces each file it finds errors in by `fallback(file)` (nothing when
 * undefined) until the check passes. Returns the mesh, the check's errors, and the files that were replaced. */
function applyCheck(
  root: string,
  files: Map<string, ParsedFile>,
  fallback: (file: string) => ParsedFile | undefined,
  check: MeshCheck | undefined,
): { mesh: MeshConfig; errors: ConfigError[]; failed: Set<string> } {
  const failed = new Set<string>();
  const errors: ConfigError[] = [];
  const effective = new Map(files);
  for (;;) {
    const { mesh } = assemble(root, effective);
    const found = check?.(mesh) ?? [];
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
    PeerAuthentication: mesh.peerAuthentications,
    EnvoyFilter: mesh.envoyFilters,
    AuthorizationPolicy: mesh.authorizationPolicies,
    RequestAuthentication: mesh.requestAuthentications,
    Sidecar: mesh.sidecars,
    Telemetry: mesh.telemetries,
  };
  for (const [file, parsed] of files) {
    errors.push(...parsed.errors);
    if (parsed.meshConfig?.outboundTrafficPolicy) mesh.outboundTrafficPolicy = parsed.meshConfig.outboundTrafficPolicy.mode;
    if (parsed.meshConfig?.rootNamespace) mesh.rootNamespace = parsed.meshConfig.rootNamespace;
    if (parsed.meshConfig?.localityLbSetting) mesh.localityLbSetting = parsed.meshConfig.localityLbSetting;
    if (parsed.meshConfig?.enableAutoMtls !== undefined) mesh.enableAutoMtls = parsed.meshConfig.enableAutoMtls;
    mesh.installation.push(...(parsed.installation ?? []));
    if (parsed.meshConfig) mesh.telemetry = meshTelemetry(parsed.meshConfig, mesh.telemetry);
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
  errors.push(...unknownProviders(mesh));
  return { mesh, errors };
}

function meshTelemetry(config: z.infer<typeof meshConfigSchema>, defaults: MeshTelemetry): MeshTelemetry {
  const providers = config.extensionProviders ?? [];
  return {
    enableTracing: config.enableTracing ?? defaults.enableTracing,
    defaultSampling: config.defaultConfig?.tracing?.sampling ?? defaults.defaultSampling,
    defaultProviders: {
      tracing: config.defaultProviders?.tracing ?? defaults.defaultProviders.tracing,
      metrics: config.defaultProviders?.metrics ?? defaults.defaultProviders.metrics,
    },
    extensionProviders: [...providers, ...defaults.extensionProviders.filter((builtIn) => !providers.some((p) => p.name === builtIn.name))],
  };
}

/** Telemetry resources and defaultProviders may only name providers that exist, of the right kind: Istio ignores
 * the others silently, which is exactly the configuration that does nothing. */
function unknownProviders(mesh: MeshConfig): ConfigError[] {
  const errors: ConfigError[] = [];
  const kindOf = (name: string) => {
    // istiod's fetchProvider compares names without case.
    const provider = mesh.telemetry.extensionProviders.find((p) => p.name.toLowerCase() === name.toLowerCase());
    return provider?.prometheus ? "metrics" : provider ? "tracing" : undefined;
  };
  const check = (name: string, want: "tracing" | "metrics", error: Omit<ConfigError, "message">) => {
    const kind = kindOf(name);
    if (kind === undefined) errors.push({ ...error, message: `no extensionProvider named "${name}" in ${MESH_CONFIG_FILE}` });
    else if (kind !== want) errors.push({ ...error, message: `provider "${name}" is not a ${want} provider` });
  };
  for (const want of ["tracing", "metrics"] as const) {
    mesh.telemetry.defaultProviders[want].forEach((name, index) => check(name, want, { file: MESH_CONFIG_FILE, field: `defaultProviders.${want}[${index}]` }));
  }
  for (const telemetry of mesh.telemetries) {
    const where = { file: telemetry.file, resource: `Telemetry ${telemetry.namespace}/${telemetry.name}` };
    for (const want of ["tracing", "metrics"] as const) {
      (telemetry.spec[want] ?? []).forEach((entry, index) =>
        (entry.providers ?? []).forEach((provider, at) => check(provider.name, want, { ...where, field: `spec.${want}[${index}].providers[${at}].name` })),
      );
    }
  }
  return errors;
}
