// `skiff analyze`: finds configuration that is valid but does not do what it says, in the spirit of `istioctl
// analyze`, with Istio's stable message codes and levels (istio/istio pkg/config/analysis/msg/messages.yaml):
//   IST0101 ReferencedResourceNotFound   a Gateway, host or subset that does not exist; a Gateway selector that
//                                        matches no connected proxy
//   IST0106 SchemaValidationError        what the control plane refuses (the config errors of the folder)
//   IST0109 ConflictingMeshGatewayVirtualServiceHosts  two VirtualServices for one host on one gateway (or the mesh)
//   IST0131 VirtualServiceIneffectiveMatch  a match that can never be reached, shadowed by an earlier one
//   IST0132 VirtualServiceHostNotFoundInGateway  a VirtualService host no server of its Gateway accepts
//   IST0173 DestinationRuleSubsetNotSelectPods  a subset whose labels select no endpoint
import type { ConfigError, MeshConfig } from "../sources/index.js";
import type { VirtualService } from "../sources/model.js";
import type { HttpMatch, StringMatch } from "../sources/schema/index.js";
import { Registry } from "../translate/registry.js";

export type Level = "Error" | "Warning" | "Info";

export interface Message {
  code: string;
  name: string;
  level: Level;
  /** "Kind namespace/name", and the file it is in. */
  resource: string;
  file?: string;
  message: string;
}

/** A proxy connected to the control plane (its /status), for the Gateway selector check. */
export interface ConnectedProxy {
  nodeId: string;
  role: "gateway" | "sidecar";
  labels: Record<string, string>;
}

const MESSAGE_TYPES = {
  IST0101: { name: "ReferencedResourceNotFound", level: "Error" },
  IST0106: { name: "SchemaValidationError", level: "Error" },
  IST0109: { name: "ConflictingMeshGatewayVirtualServiceHosts", level: "Error" },
  IST0131: { name: "VirtualServiceIneffectiveMatch", level: "Info" },
  IST0132: { name: "VirtualServiceHostNotFoundInGateway", level: "Warning" },
  IST0173: { name: "DestinationRuleSubsetNotSelectPods", level: "Warning" },
} as const satisfies Record<string, { name: string; level: Level }>;

type Code = keyof typeof MESSAGE_TYPES;

/** Every finding, errors first, then by resource. `proxies` undefined: the connected proxies are unknown and the
 * Gateway selector check is not made. */
export function analyze(mesh: MeshConfig, errors: ConfigError[], proxies?: ConnectedProxy[]): Message[] {
  const out: Message[] = [];
  const add = (code: Code, resource: { kind: string; namespace: string; name: string; file?: string }, message: string) =>
    out.push({ code, ...MESSAGE_TYPES[code], resource: `${resource.kind} ${resource.namespace}/${resource.name}`, file: resource.file, message });
  const registry = new Registry(mesh);

  for (const error of errors) {
    out.push({ code: "IST0106", ...MESSAGE_TYPES.IST0106, resource: error.resource ?? error.file, file: error.file, message: [error.field, error.message].filter(Boolean).join(": ") });
  }

  if (proxies) {
    for (const gateway of mesh.gateways) {
      const selector = Object.entries(gateway.spec.selector);
      if (!proxies.some((proxy) => selector.every(([key, value]) => proxy.labels[key] === value))) {
        add("IST0101", gateway, `Referenced selector not found: "${selector.map(([k, v]) => `${k}=${v}`).join(",")}" (no connected proxy has these labels)`);
      }
    }
  }

  const boundHosts = new Map<string, VirtualService[]>();
  for (const vs of mesh.virtualServices) {
    for (const ref of vs.spec.gateways ?? ["mesh"]) {
      const gatewayKey = ref === "mesh" ? "mesh" : ref.includes("/") ? ref : `${vs.namespace}/${ref}`;
      if (ref !== "mesh") {
        const [namespace, name] = gatewayKey.split("/");
        const gateway = mesh.gateways.find((g) => g.namespace === namespace && g.name === name);
        if (!gateway) {
          add("IST0101", vs, `Referenced gateway not found: "${ref}"`);
          continue;
        }
        const serverHosts = gateway.spec.servers.flatMap((server) => server.hosts.map((host) => (host.includes("/") ? host.split("/")[1]! : host)));
        for (const host of vs.spec.hosts) {
          if (!serverHosts.some((serverHost) => hostCovers(serverHost, host))) {
            add("IST0132", vs, `one or more host [${host}] defined in VirtualService ${vs.namespace}/${vs.name} not found in Gateway ${gatewayKey}.`);
          }
        }
      }
      for (const host of vs.spec.hosts) {
        const key = `${gatewayKey} ${ref === "mesh" ? registry.resolveHost(host, vs.namespace) : host}`;
        boundHosts.set(key, [...(boundHosts.get(key) ?? []), vs]);
      }
    }
    vs.spec.http.forEach((http, index) => {
      for (const destination of [...(http.route ?? []).map((r) => r.destination), ...(http.mirror ? [http.mirror] : []), ...(http.mirrors ?? []).map((m) => m.destination)]) {
        const service = registry.lookup(destination.host, vs.namespace);
        if (!service) {
          add("IST0101", vs, `Referenced host not found: "${destination.host}" (spec.http[${index}])`);
          continue;
        }
        const rule = registry.destinationRule(service);
        if (destination.subset && !rule?.spec.subsets?.some((subset) => subset.name === destination.subset)) {
          add("IST0101", vs, `Referenced host+subset in destinationrule not found: "${destination.host}+${destination.subset}" (spec.http[${index}])`);
        }
      }
    });
    for (const shadowed of ineffectiveMatches(vs)) add("IST0131", vs, shadowed);
  }

  for (const [key, services] of boundHosts) {
    if (services.length < 2) continue;
    const [gateway, host] = key.split(" ");
    const names = services.map((vs) => `${vs.namespace}/${vs.name}`).join(",");
    const where = gateway === "mesh" ? "mesh gateway" : `gateway ${gateway}`;
    for (const vs of services) add("IST0109", vs, `The VirtualServices ${names} associated with ${where} define the same host ${host} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`);
  }

  for (const rule of mesh.destinationRules) {
    const service = registry.lookup(rule.spec.host, rule.namespace);
    if (!service) continue;
    for (const subset of rule.spec.subsets ?? []) {
      const labels = Object.entries(subset.labels ?? {});
      const selects = (service.entry.spec.endpoints ?? []).some((endpoint) => labels.every(([key, value]) => endpoint.labels?.[key] === value));
      if (!selects) add("IST0173", rule, `The Subset (${subset.name}) defined in the DestinationRule (${rule.namespace}/${rule.name}) does not select any pods (no endpoint of ${service.host} has labels ${labels.map(([k, v]) => `${k}=${v}`).join(",") || "(none)"})`);
    }
  }

  const rank: Record<Level, number> = { Error: 0, Warning: 1, Info: 2 };
  return out.sort((a, b) => rank[a.level] - rank[b.level] || a.resource.localeCompare(b.resource) || a.code.localeCompare(b.code));
}

/** Whether a Gateway server host accepts a VirtualService host (`*`, `*.suffix`, exact). */
function hostCovers(serverHost: string, host: string): boolean {
  if (serverHost === "*" || serverHost === host) return true;
  if (serverHost.startsWith("*.")) return host.endsWith(serverHost.slice(1)) || (host.startsWith("*.") && host.endsWith(serverHost.slice(1)));
  return false;
}

/** Matches that an earlier match always takes first (istioctl's analyzer checks the same: a rule after a catch-all,
 * or a match equal to or more specific than an earlier one's URI-only prefix). */
function ineffectiveMatches(vs: VirtualService): string[] {
  const found: string[] = [];
  const earlier: Array<{ rule: number; match: number; value: HttpMatch | undefined }> = [];
  vs.spec.http.forEach((http, rule) => {
    const matches: Array<HttpMatch | undefined> = http.match && http.match.length > 0 ? http.match : [undefined];
    matches.forEach((match, index) => {
      const shadow = earlier.find((previous) => covers(previous.value, match));
      if (shadow) {
        const which = match === undefined ? `VirtualService ${vs.namespace}/${vs.name} rule #${rule} (no match, a catch-all)` : `VirtualService ${vs.namespace}/${vs.name} rule #${rule} match #${index}`;
        const by = shadow.value === undefined ? `rule #${shadow.rule} (a catch-all)` : `rule #${shadow.rule} match #${shadow.match}`;
        found.push(`${which} is not used (it is shadowed by ${by}).`);
      }
    });
    for (const [index, match] of matches.entries()) earlier.push({ rule, match: index, value: match });
  });
  return found;
}

/** Whether every request `later` matches is already matched by `first`. Conservative: only URI-only matches (or none)
 * are taken to cover others, so a "never matches" finding is always right. */
function covers(first: HttpMatch | undefined, later: HttpMatch | undefined): boolean {
  if (first === undefined) return true;
  if (first.headers || first.method || first.ignoreUriCase) return sameMatch(first, later);
  if (!first.uri) return true;
  if (later === undefined || !later.uri || later.ignoreUriCase) return false;
  return uriCovers(first.uri, later.uri);
}

function uriCovers(first: StringMatch, later: StringMatch): boolean {
  if (first.prefix !== undefined) {
    if (first.prefix === "" || first.prefix === "/") return true;
    const value = later.exact ?? later.prefix;
    return value !== undefined && value.startsWith(first.prefix);
  }
  if (first.exact !== undefined) return later.exact === first.exact;
  return first.regex !== undefined && later.regex === first.regex;
}

function sameMatch(first: HttpMatch, later: HttpMatch | undefined): boolean {
  if (!later) return false;
  const { name: _a, ...a } = first;
  const { name: _b, ...b } = later;
  return JSON.stringify(a) === JSON.stringify(b);
}
