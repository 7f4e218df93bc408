// EnvoyFilter patches of route configurations: ROUTE_CONFIGURATION (MERGE), VIRTUAL_HOST and HTTP_ROUTE, as istiod's
// pilot/pkg/networking/core/envoyfilter/rc_patch.go applies them: the configuration's MERGEs, then per virtual host
// its REMOVE/MERGE/REPLACE and per route its REMOVE/MERGE, the route ADD/INSERT_*s of each virtual host, and last the
// virtual host ADDs.
import { mergeJson } from "../../protos/merge.js";
import { type ApplyTo, PATCH_MESSAGE } from "../../sources/schema/index.js";
import { applyListOperation } from "./listeners.js";
import { contextMatches, type Json, type Patch, type PatchContext, type PatchReport } from "./select.js";

export function patchRouteConfiguration(route: Json, context: PatchContext, patches: Map<ApplyTo, Patch[]>, report: PatchReport): void {
  const matching = (applyTo: ApplyTo) => (patches.get(applyTo) ?? []).filter((patch) => contextMatches(patch, context) && routeConfigurationMatches(route, context, patch));
  const merge = (target: Json, patch: Patch) => {
    try {
      const merged = mergeJson(PATCH_MESSAGE[patch.applyTo as "HTTP_ROUTE"], target, patch.value, { replaceLists: patch.operation === "MERGE_AND_REPLACE_LIST" });
      for (const key of Object.keys(target)) delete target[key];
      Object.assign(target, merged);
      report.applied(patch, "route", route.name);
    } catch (error) {
      report.problem(patch, "route", route.name, (error as Error).message);
    }
  };

  for (const patch of matching("ROUTE_CONFIGURATION")) merge(route, patch);

  const hostPatches = matching("VIRTUAL_HOST");
  const routePatches = matching("HTTP_ROUTE");
  const hosts: Json[] = [];
  for (const original of route.virtual_hosts ?? []) {
    let host: Json = original;
    let removed = false;
    for (const patch of hostPatches) {
      if (!virtualHostMatches(host, patch)) continue;
      if (patch.operation === "REMOVE") {
        report.applied(patch, "route", route.name);
        removed = true;
        break;
      }
      if (patch.operation === "MERGE" || patch.operation === "MERGE_AND_REPLACE_LIST") merge(host, patch);
      else if (patch.operation === "REPLACE") {
        host = structuredClone(patch.value!);
        report.applied(patch, "route", route.name);
      }
    }
    if (removed) continue;
    patchHttpRoutes(host, routePatches, merge, (patch) => report.applied(patch, "route", route.name));
    hosts.push(host);
  }
  for (const patch of hostPatches) {
    if (patch.operation !== "ADD") continue;
    hosts.push(structuredClone(patch.value!));
    report.applied(patch, "route", route.name);
  }
  if (hosts.length > 0) route.virtual_hosts = hosts;
  else delete route.virtual_hosts;
}

function patchHttpRoutes(host: Json, patches: Patch[], merge: (target: Json, patch: Patch) => void, applied: (patch: Patch) => void): void {
  const hostPatches = patches.filter((patch) => virtualHostMatches(host, patch));
  let routes: Json[] = [];
  for (const route of host.routes ?? []) {
    let removed = false;
    for (const patch of hostPatches) {
      if (!routeMatches(route, patch)) continue;
      if (patch.operation === "REMOVE") {
        applied(patch);
        removed = true;
        break;
      }
      if (patch.operation === "MERGE" || patch.operation === "MERGE_AND_REPLACE_LIST") merge(route, patch);
    }
    if (!removed) routes.push(route);
  }
  for (const patch of hostPatches) {
    if (patch.operation === "REMOVE" || patch.operation.startsWith("MERGE")) continue;
    const hasRouteMatch = patch.match.routeConfiguration?.vhost?.route !== undefined;
    if (patch.operation === "INSERT_FIRST") {
      // istiod inserts first whenever the named route exists (or none is named), not next to it.
      if (hasRouteMatch && !routes.some((route) => routeMatches(route, patch))) continue;
      routes = [structuredClone(patch.value!), ...routes];
      applied(patch);
      continue;
    }
    const result = applyListOperation(routes, patch, (route) => routeMatches(route, patch));
    routes = result.list;
    if (result.applied) applied(patch);
  }
  if (routes.length > 0) host.routes = routes;
  else delete host.routes;
}

/** istiod's routeConfigurationMatch: by name and port for sidecars (the port is the name, or the port of an
 * `inbound|<port>||` name); by name, port, port name and `namespace/name` of the Gateway for gateways, parsed from
 * `http.<port>` and `https.<port>.<port name>.<gateway>.<namespace>`. */
function routeConfigurationMatches(route: Json, context: PatchContext, patch: Patch): boolean {
  const match = patch.match.routeConfiguration;
  if (!match) return true;
  if (match.name && match.name !== route.name) return false;
  if (context !== "GATEWAY") return !match.portNumber || match.portNumber === sidecarRoutePort(route.name);
  const gateway = parseGatewayRouteName(route.name);
  if (match.portName && match.portName !== gateway.portName) return false;
  if (match.gateway && match.gateway !== gateway.gateway) return false;
  return !match.portNumber || match.portNumber === gateway.port;
}

function sidecarRoutePort(name: string): number {
  if (name.startsWith("inbound")) return Number(name.split("|")[1]) || 0;
  return /^\d+$/.test(name) ? Number(name) : 0;
}

function parseGatewayRouteName(name: string): { port: number; portName?: string; gateway?: string } {
  if (name.startsWith("http.")) return { port: Number(name.slice("http.".length)) || 0 };
  const parts = name.split(".");
  if (parts[0] === "https" && parts.length === 5) return { port: Number(parts[1]) || 0, portName: parts[2], gateway: `${parts[4]}/${parts[3]}` };
  return { port: 0 };
}

function virtualHostMatches(host: Json, patch: Patch): boolean {
  const match = patch.match.routeConfiguration?.vhost;
  if (!match) return true;
  return (!match.name || match.name === host.name) && (!match.domainName || (host.domains ?? []).includes(match.domainName));
}

function routeMatches(route: Json, patch: Patch): boolean {
  const match = patch.match.routeConfiguration?.vhost?.route;
  if (!match) return true;
  if (match.name && match.name !== route.name) return false;
  const action = route.route ? "ROUTE" : route.redirect ? "REDIRECT" : route.direct_response ? "DIRECT_RESPONSE" : undefined;
  return !match.action || match.action === "ANY" || action === undefined || match.action === action;
}
