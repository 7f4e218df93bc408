// `skiff validate DIR`: checks a config folder as the control plane would read it. Errors (a file the control plane
// would not take) make the exit code 1; warnings name references that Istio accepts but that route nowhere.
import { formatConfigError, loadConfigDir, type MeshConfig } from "../sources/index.js";
import { checkEnvoyFilters, checkTranslation } from "../translate/check.js";
import { Registry } from "../translate/registry.js";

export function runValidate(dir: string): void {
  const { mesh, errors } = loadConfigDir(dir, { check: checkTranslation });
  for (const error of errors) console.error(`error: ${formatConfigError(error)}`);
  for (const warning of [...danglingReferences(mesh), ...checkEnvoyFilters(mesh).warnings.map(formatConfigError)]) console.error(`warning: ${warning}`);
  const count = mesh.gateways.length + mesh.virtualServices.length + mesh.destinationRules.length + mesh.serviceEntries.length + mesh.wasmPlugins.length + mesh.envoyFilters.length;
  console.log(`${dir}: ${count} resources valid, ${errors.length} error${errors.length === 1 ? "" : "s"}`);
  if (errors.length > 0) process.exitCode = 1;
}

function danglingReferences(mesh: MeshConfig): string[] {
  const registry = new Registry(mesh);
  const warnings: string[] = [];
  for (const vs of mesh.virtualServices) {
    const where = `${vs.file}: VirtualService ${vs.namespace}/${vs.name}`;
    for (const gateway of vs.spec.gateways ?? []) {
      if (gateway === "mesh") continue;
      const [namespace, name] = gateway.includes("/") ? gateway.split("/") : [vs.namespace, gateway];
      if (!mesh.gateways.some((g) => g.name === name && g.namespace === namespace)) warnings.push(`${where}: gateway ${namespace}/${name} is not defined`);
    }
    vs.spec.http.forEach((http, index) => {
      for (const destination of [...http.route.map((r) => r.destination), ...(http.mirror ? [http.mirror] : [])]) {
        const service = registry.lookup(destination.host, vs.namespace);
        if (!service) {
          warnings.push(`${where}: spec.http[${index}]: host ${destination.host} is in no ServiceEntry (requests get 503)`);
          continue;
        }
        const subsets = registry.destinationRule(service)?.spec.subsets ?? [];
        if (destination.subset && !subsets.some((s) => s.name === destination.subset)) {
          warnings.push(`${where}: spec.http[${index}]: subset ${destination.subset} of ${service.host} is in no DestinationRule (requests get 503)`);
        }
      }
    });
  }
  return warnings;
}
