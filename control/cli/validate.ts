// `skiff validate DIR`: checks a config folder as the control plane would read it, translate it and encode it, so
// that "0 errors" means the control plane will take and push it. Errors (a file the control plane would not take, a
// resource it could not push) make the exit code 1; warnings name what Istio accepts but may surprise (routes to
// nowhere, merged resources, installation resources).
import { readFileSync } from "node:fs";
import { ModulePullError, pullModule } from "../modules/oci.js";
import { encodeResource, ResourceEncodingError } from "../protos/encode.js";
import { type ConfigError, DEFAULT_NAMESPACE, formatConfigError, loadConfigDir, type MeshConfig } from "../sources/index.js";
import { checkWithEnvoy } from "../envoy-check.js";
import { EnvoyNotFoundError, locateEnvoy } from "../envoy-binary/locate.js";
import { validateWithEnvoy } from "../envoy-binary/validate.js";
import { checkContext, checkEnvoyFilters, checkTranslation } from "../translate/check.js";
import { translate } from "../translate/index.js";
import { meshWarnings } from "../translate/warnings.js";
import { type ProxyIdentity, translationKey } from "../resources.js";

export async function runValidate(dir: string, options: { namespace?: string } = {}): Promise<void> {
  // The control plane's own load check (EnvoyFilter patches against the proxies they select), then every resource
  // of every kind of proxy encoded as the control plane encodes it before pushing.
  const { mesh, errors } = loadConfigDir(dir, { check: checkTranslation, namespace: options.namespace });
  errors.push(...checkPush(mesh), ...(await checkImages(mesh)));
  // Then Envoy itself on EnvoyFilter results (control/envoy-check.ts).
  errors.push(...(await envoyErrors(mesh)));
  const warnings = [...meshWarnings(mesh), ...checkEnvoyFilters(mesh).warnings];
  for (const error of errors) console.error(`error: ${formatConfigError(error)}`);
  for (const warning of warnings) console.error(`warning: ${formatConfigError(warning)}`);
  const count = mesh.gateways.length + mesh.virtualServices.length + mesh.destinationRules.length + mesh.serviceEntries.length + mesh.wasmPlugins.length + mesh.trafficExtensions.length + mesh.envoyFilters.length + mesh.telemetries.length;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  console.log(`${dir}: ${count} resources valid, ${plural(errors.length, "error")}, ${plural(warnings.length, "warning")}`);
  if (errors.length > 0) process.exitCode = 1;
}

/** Pulls every oci:// module the folder names, as the control plane will: an image that cannot be pulled, or whose
 * digest is not the pinned one, is an error naming the WasmPlugin and its field (spec.url, spec.sha256). */
export async function checkImages(mesh: MeshConfig): Promise<ConfigError[]> {
  const images = mesh.wasmPlugins.flatMap((plugin) => ("image" in plugin.module ? [{ plugin, image: plugin.module }] : []));
  const failures = await Promise.all(
    images.map(async ({ plugin, image }) => {
      try {
        const dockerConfig = image.pullSecret ? readFileSync(image.pullSecret, "utf8") : undefined;
        await pullModule(image.image, { dockerConfig, sha256: image.sha256 });
        return [];
      } catch (error) {
        const field = error instanceof ModulePullError ? error.field : "spec.url";
        return [{ file: plugin.file, resource: `WasmPlugin ${plugin.namespace}/${plugin.name}`, field, message: (error as Error).message }];
      }
    }),
  );
  return failures.flat();
}

/** Translates the mesh for every kind of proxy it configures differently and encodes each resource as the control
 * plane would before pushing it: a resource that would not encode is an error here rather than a rejected snapshot
 * later. */
export function checkPush(mesh: MeshConfig): ConfigError[] {
  const errors = new Map<string, ConfigError>();
  for (const proxy of representativeProxies(mesh)) {
    const who = `for a ${proxy.role} in namespace ${proxy.namespace}${Object.keys(proxy.labels).length ? ` with labels ${Object.entries(proxy.labels).map(([k, v]) => `${k}=${v}`).join(",")}` : ""}`;
    let resources;
    try {
      resources = translate(mesh, checkContext(mesh, proxy));
    } catch (error) {
      errors.set(`translate ${(error as Error).message}`, { file: ".", message: `translation fails ${who}: ${(error as Error).message}` });
      continue;
    }
    for (const [typeUrl, list] of Object.entries(resources)) {
      for (const resource of list) {
        try {
          encodeResource(typeUrl, resource);
        } catch (error) {
          const detail = error instanceof ResourceEncodingError ? error.message : (error as Error).message;
          if (!errors.has(detail)) errors.set(detail, { file: ".", message: `the control plane could not push ${detail} (${who})` });
        }
      }
    }
  }
  return [...errors.values()];
}

/** One proxy per distinct way the mesh can configure one: gateways as their Gateways select them, and sidecars in
 * every namespace the config names with every label set some resource selects on (or none). */
export function representativeProxies(mesh: MeshConfig): ProxyIdentity[] {
  const resources = [...mesh.gateways, ...mesh.virtualServices, ...mesh.destinationRules, ...mesh.serviceEntries, ...mesh.wasmPlugins, ...mesh.trafficExtensions, ...mesh.envoyFilters];
  const namespaces = [...new Set([DEFAULT_NAMESPACE, ...resources.map((r) => r.namespace)])];
  const labelSets = [{}, ...resources.flatMap((r) => selectorLabels(r.spec))];
  const proxies = new Map<string, ProxyIdentity>();
  const add = (proxy: ProxyIdentity) => proxies.set(translationKey(proxy), proxy);
  for (const gateway of mesh.gateways) add({ nodeId: "validate", role: "gateway", labels: gateway.spec.selector, namespace: gateway.namespace, ips: [] });
  for (const namespace of namespaces) for (const labels of labelSets) add({ nodeId: "validate", role: "sidecar", labels, namespace, ips: [] });
  return [...proxies.values()];
}

const SELECTOR_KEYS = new Set(["selector", "matchLabels", "labels", "sourceLabels"]);

/** Label maps under the keys Istio uses for workload selectors, anywhere in a spec. */
function selectorLabels(value: unknown, key = ""): Record<string, string>[] {
  if (typeof value !== "object" || value === null) return [];
  if (Array.isArray(value)) return value.flatMap((item) => selectorLabels(item));
  const entries = Object.entries(value);
  if (SELECTOR_KEYS.has(key) && entries.length > 0 && entries.every(([, v]) => typeof v === "string")) return [value as Record<string, string>];
  return entries.flatMap(([k, v]) => selectorLabels(v, k));
}

/** What Envoy itself refuses in EnvoyFilter results (control/envoy-check.ts), when an Envoy can be found. */
async function envoyErrors(mesh: MeshConfig): Promise<ConfigError[]> {
  if (mesh.envoyFilters.length === 0) return [];
  let envoyPath: string;
  try {
    envoyPath = locateEnvoy().path;
  } catch (error) {
    if (!(error instanceof EnvoyNotFoundError)) throw error;
    console.error("note: EnvoyFilter results not checked with envoy --mode validate: no Envoy found (npx skiff envoy install)");
    return [];
  }
  return checkWithEnvoy(mesh, (resources, options) => validateWithEnvoy(envoyPath, resources, options));
}
