// EnvoyFilter results checked by Envoy itself (`envoy --mode validate`), at `skiff validate` and at the control
// plane's config load: what translate/check.ts cannot know (protoc-gen-validate rules such as a positive
// connect_timeout, a Lua script that does not compile, a filter that must be last) is refused there, naming the
// EnvoyFilter and the patch, instead of being NACKed by every proxy at push time.
//
// For each proxy translate/check.ts checks, Envoy validates the patched result. When it refuses, the culprit is found
// by bisection over the patches in the order they apply (prefixes of it are validated; the first prefix Envoy
// refuses ends with the culprit), after making sure Envoy accepts the result without any EnvoyFilter (if not, the
// fault is not an EnvoyFilter's, and TLS is left out: a certificate Envoy cannot load fails the translation alone).
import type { EnvoyVerdict, FoldOptions } from "./envoy-binary/validate.js";
import type { ProxyResources } from "./resources.js";
import { type ConfigError, type MeshConfig, wasmModules } from "./sources/index.js";
import type { EnvoyFilter } from "./sources/model.js";
import { checkContext, checkedProxies, describe } from "./translate/check.js";
import { selectFilters } from "./translate/envoyfilter/index.js";
import { translate, translateWithEffects } from "./translate/index.js";

const MAX_CULPRITS_PER_PROXY = 5;

/** EnvoyFilters holding just the given patches of theirs (their order and indices are kept by the caller). */
function filtersOf(patches: Array<{ filter: EnvoyFilter; index: number }>): EnvoyFilter[] {
  const byFilter = new Map<EnvoyFilter, number[]>();
  for (const { filter, index } of patches) byFilter.set(filter, [...(byFilter.get(filter) ?? []), index]);
  return [...byFilter].map(([filter, indices]) => ({ ...filter, spec: { ...filter.spec, configPatches: indices.map((index) => filter.spec.configPatches[index]!) } }));
}

/** Validates `resources` with Envoy (validateWithEnvoy bound to an Envoy binary). */
export type EnvoyValidator = (resources: ProxyResources, options: FoldOptions) => Promise<EnvoyVerdict>;

export async function checkWithEnvoy(mesh: MeshConfig, validate: EnvoyValidator): Promise<ConfigError[]> {
  const errors: ConfigError[] = [];
  const moduleFiles = new Map(wasmModules(mesh).flatMap((module) => ("path" in module ? [[module.sha256, module.path] as const] : [])));
  const fold: FoldOptions = { moduleFile: (sha256) => moduleFiles.get(sha256) };
  for (const proxy of checkedProxies(mesh)) {
    const context = checkContext(mesh, proxy);
    const { resources, effects } = translateWithEffects(mesh, context);
    if (effects.length === 0) continue;
    let options = fold;
    let verdict = await validate(resources, options);
    if (verdict.ok) continue;
    const without = (filters: EnvoyFilter[]) => translate({ ...mesh, envoyFilters: filters }, context);
    // (`without(filters)`: the translation with only those EnvoyFilters.)
    if (!(await validate(without([]), options)).ok) {
      options = { ...fold, withoutTls: true };
      if (!(await validate(without([]), options)).ok) continue; // Envoy refuses this proxy's config without any EnvoyFilter
      verdict = await validate(resources, options);
      if (verdict.ok) continue;
    }
    // The patches in the order they apply; the shortest refused prefix ends with a culprit. After each culprit, the
    // rest without it is validated again, so that every refused patch is named (up to a few per proxy).
    let remaining = selectFilters(mesh, proxy).flatMap((filter) => filter.spec.configPatches.map((_patch, index) => ({ filter, index })));
    for (let found = 0; !verdict.ok && remaining.length > 0 && found < MAX_CULPRITS_PER_PROXY; found++) {
      const list = remaining;
      let [low, high] = [0, list.length]; // prefix `low` is accepted, prefix `high` refused
      let refusal = verdict;
      while (high - low > 1) {
        const middle = Math.floor((low + high) / 2);
        const result = await validate(without(filtersOf(list.slice(0, middle))), options);
        if (result.ok) low = middle;
        else [high, refusal] = [middle, result];
      }
      const culprit = list[high - 1]!;
      const resource = `EnvoyFilter ${culprit.filter.namespace}/${culprit.filter.name}`;
      const field = `spec.configPatches[${culprit.index}]`;
      if (!errors.some((error) => error.resource === resource && error.field === field)) {
        errors.push({ file: culprit.filter.file, resource, field, message: `Envoy refuses the result on ${describe(proxy)}: ${refusal.message}` });
      }
      remaining = list.filter((patch) => patch !== culprit);
      verdict = await validate(without(filtersOf(remaining)), options);
    }
  }
  return errors;
}

/** Between the config folder and the proxies in the control plane: each new mesh passes checkWithEnvoy first. An
 * EnvoyFilter Envoy refuses keeps the version that last passed (or is left out, if none did), and the rest of the
 * change goes through, as a file with a schema error keeps its last good version. Meshes are checked one at a
 * time; while one is checked, only the newest of those that arrive meanwhile waits. */
export class EnvoyFilterGate {
  private passed: MeshConfig | undefined;
  private running = false;
  private waiting: { mesh: MeshConfig; apply: (mesh: MeshConfig, errors: ConfigError[]) => void } | undefined;

  /** `validate` undefined: no Envoy to check with, meshes pass unchecked. */
  constructor(private readonly validate: EnvoyValidator | undefined) {}

  /** Calls `apply` with the mesh to serve and Envoy's errors, now (nothing to check) or once checked. */
  submit(mesh: MeshConfig, apply: (mesh: MeshConfig, errors: ConfigError[]) => void): void {
    if (!this.running && (!this.validate || mesh.envoyFilters.length === 0)) {
      this.passed = mesh;
      apply(mesh, []);
      return;
    }
    this.waiting = { mesh, apply };
    if (!this.running) void this.drain();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting) {
        const { mesh, apply } = this.waiting;
        this.waiting = undefined;
        const { checked, errors } = await this.check(mesh);
        this.passed = checked;
        apply(checked, errors);
      }
    } finally {
      this.running = false;
    }
  }

  private async check(mesh: MeshConfig): Promise<{ checked: MeshConfig; errors: ConfigError[] }> {
    if (!this.validate || mesh.envoyFilters.length === 0) return { checked: mesh, errors: [] };
    const errors: ConfigError[] = [];
    let checked = mesh;
    for (let round = 0; round < 3; round++) {
      let found: ConfigError[];
      try {
        found = await checkWithEnvoy(checked, this.validate);
      } catch (error) {
        // Envoy could not run at all: say so, and serve what the other checks accepted.
        return { checked, errors: [...errors, { file: ".", message: `EnvoyFilter results not checked with envoy --mode validate: ${(error as Error).message}` }] };
      }
      if (found.length === 0) break;
      errors.push(...found);
      const refused = new Set(found.map((error) => error.resource));
      const previous = (filter: EnvoyFilter) => this.passed?.envoyFilters.find((candidate) => candidate.namespace === filter.namespace && candidate.name === filter.name);
      checked = {
        ...checked,
        envoyFilters: checked.envoyFilters.flatMap((filter) => {
          if (!refused.has(`EnvoyFilter ${filter.namespace}/${filter.name}`)) return [filter];
          const last = round === 0 ? previous(filter) : undefined;
          return last && last !== filter ? [last] : [];
        }),
      };
    }
    return { checked, errors };
  }
}
