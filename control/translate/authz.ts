// AuthorizationPolicy -> Envoy RBAC filters, as istiod builds them (pilot/pkg/security/authz: builder/builder.go,
// model/model.go, model/generator.go, matcher/*.go), so that each field means what Istio's documentation says:
//
// - The policies of a workload are those of its namespace and of the root namespace whose `selector` (if any) its
//   labels match. One RBAC filter per action, in Istio's order: AUDIT (Envoy action LOG), DENY, ALLOW; so a request a
//   DENY policy matches is refused whatever ALLOW says, and with ALLOW policies present a request none of them
//   matches is refused.
// - Each rule becomes one RBAC policy `ns[<ns>]-policy[<name>]-rule[<i>]`: the OR of its `from` entries (principals)
//   and the OR of its `to` entries (permissions), each entry the AND of its fields, each field the OR of its values,
//   each `not*` field a NOT of that OR; `when` conditions are ANDed into every entry. A policy without rules matches
//   nothing (so an ALLOW policy without rules denies every request).
// - On TCP (network RBAC), HTTP-only fields (hosts, methods, paths, request headers, request principals, JWT claims)
//   cannot be checked: an ALLOW rule using one is dropped (it allows nothing), a DENY rule ignores that field (it
//   denies more). This is Istio's fail-closed rule.
import type { MeshConfig } from "../sources/index.js";
import type { AuthorizationPolicy } from "../sources/model.js";
import type { AuthorizationRule } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { typed } from "./envoy.js";

type Json = Record<string, unknown>;
type RbacAction = "ALLOW" | "DENY" | "LOG";

/** The jwt_authn filter's name: its verified payloads are dynamic metadata under `payload` (Istio's
 * EnvoyJwtFilterPayload), which request principals and claims are matched against. */
export const JWT_FILTER = "envoy.filters.http.jwt_authn";
export const JWT_PAYLOAD = "payload";

/** The security policies (AuthorizationPolicy, RequestAuthentication) that apply to a workload: its namespace's and
 * the root namespace's, whose `selector` (if any) its labels match. */
export function workloadPolicies<T extends { namespace: string; spec: { selector?: { matchLabels: Record<string, string> } } }>(
  policies: T[],
  mesh: MeshConfig,
  proxy: Pick<ProxyIdentity, "namespace" | "labels">,
): T[] {
  return policies.filter(
    (policy) =>
      (policy.namespace === proxy.namespace || policy.namespace === mesh.rootNamespace) &&
      Object.entries(policy.spec.selector?.matchLabels ?? {}).every(([key, value]) => proxy.labels[key] === value),
  );
}

/** The RBAC HTTP filters for an inbound HTTP chain (empty when no policy applies). */
export function rbacHttpFilters(policies: AuthorizationPolicy[]): Json[] {
  return rbacConfigs(policies, false).map(({ rules }) => ({
    name: "envoy.filters.http.rbac",
    typed_config: typed("envoy.extensions.filters.http.rbac.v3.RBAC", { rules }),
  }));
}

/** The RBAC network filters for an inbound TCP chain. */
export function rbacNetworkFilters(policies: AuthorizationPolicy[]): Json[] {
  return rbacConfigs(policies, true).map(({ rules }) => ({
    name: "envoy.filters.network.rbac",
    typed_config: typed("envoy.extensions.filters.network.rbac.v3.RBAC", { rules, stat_prefix: "tcp." }),
  }));
}

const ACTIONS: Array<[AuthorizationPolicy["spec"]["action"], RbacAction]> = [
  ["AUDIT", "LOG"],
  ["DENY", "DENY"],
  ["ALLOW", "ALLOW"],
];

function rbacConfigs(policies: AuthorizationPolicy[], forTcp: boolean): Array<{ rules: Json }> {
  const out: Array<{ rules: Json }> = [];
  for (const [action, envoyAction] of ACTIONS) {
    const chosen = policies.filter((policy) => policy.spec.action === action);
    if (chosen.length === 0) continue;
    const named: Json = {};
    for (const policy of chosen) {
      const rules = policy.spec.rules ?? [];
      if (rules.length === 0) named[policyName(policy, 0)] = MATCH_NEVER;
      rules.forEach((rule, index) => {
        const generated = generatePolicy(policy, rule, forTcp, envoyAction);
        if (generated) named[policyName(policy, index)] = generated;
      });
    }
    out.push({ rules: { action: envoyAction, policies: named } });
  }
  return out;
}

function policyName(policy: AuthorizationPolicy, rule: number): string {
  return `ns[${policy.namespace}]-policy[${policy.name}]-rule[${rule}]`;
}

const MATCH_NEVER: Json = { permissions: [{ not_rule: { any: true } }], principals: [{ not_id: { any: true } }] };

/** Raised by a generator for a field it cannot express here (an HTTP-only field on TCP). */
class Unsupported extends Error {}

interface Field {
  values?: string[];
  notValues?: string[];
  /** One value -> its Envoy matcher (called per value, the results ORed). */
  one?: (value: string) => Json;
  /** All values at once -> one Envoy matcher (Istio's "extended" generators: JWT principals and claims). */
  all?: (values: string[]) => Json;
}

/** Istio's Model.New + Generate for one rule; undefined when the rule is skipped (an ALLOW rule on TCP naming an
 * HTTP-only field). */
function generatePolicy(policy: AuthorizationPolicy, rule: AuthorizationRule, forTcp: boolean, action: RbacAction): Json | undefined {
  const httpOnly = <T>(generate: T): T => {
    if (forTcp) throw new Unsupported();
    return generate;
  };
  const basePermission: Field[] = [];
  const basePrincipal: Field[] = [];
  for (const when of rule.when ?? []) {
    const field = { values: when.values, notValues: when.notValues };
    const key = when.key;
    if (key === "destination.ip") basePermission.push({ ...field, one: (v) => ({ destination_ip: cidr(v) }) });
    else if (key === "destination.port") basePermission.push({ ...field, one: (v) => ({ destination_port: Number(v) }) });
    else if (key === "connection.sni") basePermission.push({ ...field, one: (v) => ({ requested_server_name: stringMatcher(v) }) });
    else if (key === "source.ip") basePrincipal.push({ ...field, one: (v) => ({ direct_remote_ip: cidr(v) }) });
    else if (key === "remote.ip") basePrincipal.push({ ...field, one: (v) => ({ remote_ip: cidr(v) }) });
    else if (key === "source.namespace") basePrincipal.push({ ...field, one: namespacePrincipal });
    else if (key === "source.serviceAccount") basePrincipal.push({ ...field, one: (v) => serviceAccountPrincipal(policy.namespace, v) });
    else if (key === "source.principal") basePrincipal.push({ ...field, one: sourcePrincipal });
    else if (key === "request.auth.principal") basePrincipal.push({ ...field, all: (values) => httpOnly(requestPrincipals)(values) });
    else if (key === "request.auth.audiences") basePrincipal.push({ ...field, all: (values) => httpOnly(claimPrincipal)(["aud"], values) });
    else if (key === "request.auth.presenter") basePrincipal.push({ ...field, all: (values) => httpOnly(claimPrincipal)(["azp"], values) });
    else if (key.startsWith("request.headers[")) {
      const name = key.slice("request.headers[".length, -1);
      basePrincipal.push({ ...field, one: (v) => httpOnly({ header: headerMatcher(name, v) }) });
    } else if (key.startsWith("request.auth.claims[")) {
      const claims = [...key.slice("request.auth.claims".length).matchAll(/\[([^\]]+)\]/g)].map((match) => match[1]!);
      basePrincipal.push({ ...field, all: (values) => httpOnly(claimPrincipal)(claims, values) });
    }
  }
  const principals: Field[][] = (rule.from ?? []).map(({ source: s }) => [
    // Istio inserts each at the front, so the last listed here comes first.
    { values: s.principals, notValues: s.notPrincipals, one: sourcePrincipal },
    { values: s.requestPrincipals, notValues: s.notRequestPrincipals, all: (values: string[]) => httpOnly(requestPrincipals)(values) },
    { values: s.serviceAccounts, notValues: s.notServiceAccounts, one: (v: string) => serviceAccountPrincipal(policy.namespace, v) },
    { values: s.namespaces, notValues: s.notNamespaces, one: namespacePrincipal },
    { values: s.remoteIpBlocks, notValues: s.notRemoteIpBlocks, one: (v: string) => ({ remote_ip: cidr(v) }) },
    { values: s.ipBlocks, notValues: s.notIpBlocks, one: (v: string) => ({ direct_remote_ip: cidr(v) }) },
    ...basePrincipal,
  ]);
  if (principals.length === 0) principals.push(basePrincipal);
  const permissions: Field[][] = (rule.to ?? []).map(({ operation: o }) => [
    { values: o.hosts, notValues: o.notHosts, one: (v: string) => httpOnly({ header: hostMatcher(v) }) },
    { values: o.methods, notValues: o.notMethods, one: (v: string) => httpOnly({ header: headerMatcher(":method", v) }) },
    { values: o.paths, notValues: o.notPaths, one: (v: string) => httpOnly(pathPermission(v)) },
    { values: o.ports, notValues: o.notPorts, one: (v: string) => ({ destination_port: Number(v) }) },
    ...basePermission,
  ]);
  if (permissions.length === 0) permissions.push(basePermission);
  try {
    return {
      permissions: permissions.map((fields) => ({ and_rules: { rules: combine(fields, action, "or_rules", "rules", "not_rule", { any: true }) } })),
      principals: principals.map((fields) => ({ and_ids: { ids: combine(fields, action, "or_ids", "ids", "not_id", { any: true }) } })),
    };
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    throw error;
  }
}

/** The AND list of one entry: per field, the OR of its values and the NOT of the OR of its notValues. A field the
 * generator cannot express (Unsupported) fails the rule for ALLOW and is left out for DENY and AUDIT. */
function combine(fields: Field[], action: RbacAction, or: string, set: string, not: string, any: Json): Json[] {
  const and: Json[] = [];
  const attempt = (make: () => Json | undefined) => {
    try {
      const made = make();
      if (made) and.push(made);
    } catch (error) {
      if (!(error instanceof Unsupported) || action === "ALLOW") throw error;
    }
  };
  for (const field of fields) {
    for (const [values, negate] of [
      [field.values, false],
      [field.notValues, true],
    ] as const) {
      if (!values?.length) continue;
      attempt(() => {
        // Per-value generators give the OR of the values (even of one, as Istio writes it); JWT generators one matcher.
        const matcher = field.all ? field.all(values) : { [or]: { [set]: values.map(field.one!) } };
        return negate ? { [not]: matcher } : matcher;
      });
    }
  }
  return and.length > 0 ? and : [any];
}

/** Istio's StringMatcherWithPrefix: `*` any non-empty, `*x` suffix, `x*` prefix, else exact. */
function stringMatcher(value: string, prefix = ""): Json {
  if (value === "*") return { safe_regex: { regex: ".+" } };
  if (value.startsWith("*")) return prefix ? { safe_regex: { regex: `${prefix}.*${quoteMeta(value.slice(1))}` } } : { suffix: value.slice(1) };
  if (value.endsWith("*")) return { prefix: prefix + value.slice(0, -1) };
  return { exact: prefix + value };
}

/** Go's regexp.QuoteMeta, so that RE2 matches the text literally. */
function quoteMeta(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, "\\$&");
}

function authenticated(principalName: Json): Json {
  return { authenticated: { principal_name: principalName } };
}

function sourcePrincipal(value: string): Json {
  return authenticated(stringMatcher(value, "spiffe://"));
}

function namespacePrincipal(value: string): Json {
  return authenticated({ safe_regex: { regex: `.*/ns/${value.split("*").map(quoteMeta).join(".*")}/.*` } });
}

function serviceAccountPrincipal(policyNamespace: string, value: string): Json {
  const slash = value.indexOf("/");
  const [ns, sa] = slash >= 0 ? [value.slice(0, slash), value.slice(slash + 1)] : [policyNamespace, value];
  return authenticated({ safe_regex: { regex: `spiffe://.+/ns/${quoteMeta(ns)}/(.+/|)sa/${quoteMeta(sa)}(/.+)?` } });
}

function cidr(value: string): Json {
  const [address, length] = value.split("/");
  return { address_prefix: address, prefix_len: length !== undefined ? Number(length) : address!.includes(":") ? 128 : 32 };
}

/** Istio's HeaderMatcher: `*` present, `*x` suffix, `x*` prefix, else exact (case-sensitive values). */
function headerMatcher(name: string, value: string): Json {
  if (value === "*") return { name, present_match: true };
  if (value.startsWith("*")) return { name, string_match: { suffix: value.slice(1) } };
  if (value.endsWith("*")) return { name, string_match: { prefix: value.slice(0, -1) } };
  return { name, string_match: { exact: value } };
}

/** Istio's HostMatcher: like headerMatcher on :authority, ignoring case. */
function hostMatcher(value: string): Json {
  if (value === "*") return { name: ":authority", present_match: true };
  if (value.startsWith("*")) return { name: ":authority", string_match: { suffix: value.slice(1), ignore_case: true } };
  if (value.endsWith("*")) return { name: ":authority", string_match: { prefix: value.slice(0, -1), ignore_case: true } };
  return { name: ":authority", string_match: { exact: value, ignore_case: true } };
}

/** `paths`: a string matcher on the path without the query, or Istio's path templates (`{*}`, `{**}`). */
function pathPermission(value: string): Json {
  if (/\{\*\*?\}/.test(value)) {
    return {
      uri_template: {
        name: "uri-template",
        typed_config: typed("envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig", { path_template: value }),
      },
    };
  }
  return { url_path: { path: stringMatcher(value) } };
}

function jwtMetadata(path: string[], value: Json): Json {
  return { metadata: { filter: JWT_FILTER, path: [JWT_PAYLOAD, ...path].map((key) => ({ key })), value } };
}

/** `requestPrincipals` (`<iss>/<sub>`, with Istio's `*` forms): the verified JWT's iss and sub claims. */
function requestPrincipals(values: string[]): Json {
  const any = { safe_regex: { regex: ".+" } };
  const alternatives = values.map((value) => {
    const at = value.lastIndexOf("/");
    const found = at >= 0;
    const [iss, sub] = found ? [value.slice(0, at), value.slice(at + 1)] : [value, ""];
    let matchIss: Json;
    let matchSub: Json;
    if (value === "*") [matchIss, matchSub] = [any, any];
    else if (value.startsWith("*")) {
      if (found) [matchIss, matchSub] = [iss === "*" ? any : { suffix: iss.slice(1) }, { exact: sub }];
      else [matchIss, matchSub] = [any, { suffix: value.slice(1) }];
    } else if (value.endsWith("*")) {
      if (found) [matchIss, matchSub] = [{ exact: iss }, sub === "*" ? any : { prefix: sub.slice(0, -1) }];
      else [matchIss, matchSub] = [{ prefix: value.slice(0, -1) }, any];
    } else [matchIss, matchSub] = [{ exact: iss }, { exact: sub }];
    return { and_ids: { ids: [jwtMetadata(["iss"], { string_match: matchIss }), jwtMetadata(["sub"], { string_match: matchSub })] } };
  });
  return alternatives.length === 1 ? alternatives[0]! : { or_ids: { ids: alternatives } };
}

/** A JWT claim (nested: `[a][b]`) that equals one of `values`, or is a list holding one (Istio's extended JWT
 * matcher). */
function claimPrincipal(claims: string[], values: string[]): Json {
  const matchers = values.map((value) => ({ string_match: stringMatcher(value) }));
  const value = matchers.length === 1 ? matchers[0]! : { or_match: { value_matchers: matchers } };
  return jwtMetadata(claims, { or_match: { value_matchers: [{ list_match: { one_of: value } }, value] } });
}
