// What a valid mesh does that its author may not expect: references that route nowhere, resources Istio merges or
// ignores, fields that wait for parts Skiff does not have yet. `skiff validate` prints these as warnings and the
// control plane logs them; neither refuses the configuration, because Istio accepts it.
import type { ConfigError, MeshConfig } from "../sources/index.js";
import type { VirtualService } from "../sources/model.js";
import { Registry } from "./registry.js";

export function meshWarnings(mesh: MeshConfig): ConfigError[] {
  const registry = new Registry(mesh);
  return [...installationWarnings(mesh), ...referenceWarnings(mesh, registry)];
}

function installationWarnings(mesh: MeshConfig): ConfigError[] {
  return mesh.installation.map(({ file, kind, namespace, name, what, equivalent }) => ({
    file,
    resource: `${kind} ${namespace}/${name}`,
    message: `an installation resource, not mesh configuration: it ${what}, which Skiff does not do from a config folder; the Skiff equivalent: ${equivalent}`,
  }));
}

function referenceWarnings(mesh: MeshConfig, registry: Registry): ConfigError[] {
  const warnings: ConfigError[] = [];
  for (const vs of mesh.virtualServices) {
    const warn = (field: string | undefined, message: string) => warnings.push({ file: vs.file, resource: `VirtualService ${vs.namespace}/${vs.name}`, field, message });
    (vs.spec.gateways ?? []).forEach((gateway, index) => {
      if (gateway === "mesh") return;
      const [namespace, name] = gateway.includes("/") ? gateway.split("/") : [vs.namespace, gateway];
      if (!mesh.gateways.some((g) => g.name === name && g.namespace === namespace)) warn(`spec.gateways[${index}]`, `gateway ${namespace}/${name} is not defined`);
    });
    for (const { field, destination } of destinations(vs)) {
      const service = registry.lookup(destination.host, vs.namespace);
      if (!service) {
        warn(field, `host ${destination.host} is in no ServiceEntry (requests get 503)`);
        continue;
      }
      const subsets = registry.destinationRule(service)?.spec.subsets ?? [];
      if (destination.subset && !subsets.some((s) => s.name === destination.subset)) {
        warn(field, `subset ${destination.subset} of ${service.host} is in no DestinationRule (requests get 503)`);
      }
    }
  }
  return warnings;
}

/** Every destination a VirtualService sends requests (or copies of them) to, with its field path. */
function destinations(vs: VirtualService) {
  return vs.spec.http.flatMap((http, index) => [
    ...http.route.map((route, i) => ({ field: `spec.http[${index}].route[${i}].destination`, destination: route.destination })),
    ...(http.mirror ? [{ field: `spec.http[${index}].mirror`, destination: http.mirror }] : []),
  ]);
}
