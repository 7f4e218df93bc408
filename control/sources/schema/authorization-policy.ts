// AuthorizationPolicy (security.istio.io): the spec schema
// (istio.io/latest/docs/reference/config/security/authorization-policy/). Values follow Istio's validation
// (pkg/config/validation: ValidateAuthorizationPolicy): every `from` has a non-empty source, every `to` a non-empty
// operation, every `when` a known key with values or notValues.
import { z } from "zod";
import { matchLabelsSelector } from "./common.js";

const strings = z.array(z.string().min(1)).min(1).optional();
const ports = z.array(z.string().regex(/^\d+$/, "a port number").refine((port) => Number(port) <= 65535, "a port number up to 65535")).min(1).optional();
const cidr = z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, "an IP address or CIDR block");
const cidrs = z.array(cidr).min(1).optional();

const source = z
  .strictObject({
    principals: strings,
    notPrincipals: strings,
    requestPrincipals: strings,
    notRequestPrincipals: strings,
    namespaces: strings,
    notNamespaces: strings,
    serviceAccounts: strings,
    notServiceAccounts: strings,
    ipBlocks: cidrs,
    notIpBlocks: cidrs,
    remoteIpBlocks: cidrs,
    notRemoteIpBlocks: cidrs,
  })
  .refine((s) => Object.values(s).some((v) => v !== undefined), { message: "a source must set at least one field" })
  .refine((s) => !(s.serviceAccounts || s.notServiceAccounts) || !(s.principals || s.notPrincipals || s.namespaces || s.notNamespaces), {
    message: "serviceAccounts cannot be set together with principals or namespaces (Istio's validation)",
  });

const operation = z
  .strictObject({
    hosts: strings,
    notHosts: strings,
    ports,
    notPorts: ports,
    methods: strings,
    notMethods: strings,
    paths: strings,
    notPaths: strings,
  })
  .refine((o) => Object.values(o).some((v) => v !== undefined), { message: "an operation must set at least one field" });

/** The attributes a `when` condition may name (Istio's authorization conditions). */
const WHEN_KEY =
  /^(request\.headers\[[^\]]+\]|source\.ip|remote\.ip|source\.namespace|source\.principal|source\.serviceAccount|request\.auth\.principal|request\.auth\.audiences|request\.auth\.presenter|request\.auth\.claims(\[[^\]]+\])+|destination\.ip|destination\.port|connection\.sni)$/;

const condition = z
  .strictObject({
    key: z.string().regex(WHEN_KEY, "a supported attribute: request.headers[NAME], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[NAME], destination.ip, destination.port or connection.sni"),
    values: strings,
    notValues: strings,
  })
  .refine((c) => c.values !== undefined || c.notValues !== undefined, { message: "a condition needs values or notValues" })
  .superRefine((c, context) => {
    const check = (list: string[] | undefined, field: "values" | "notValues", valid: (v: string) => boolean, what: string) => {
      list?.forEach((value, index) => {
        if (!valid(value)) context.addIssue({ code: "custom", path: [field, index], message: `${c.key} takes ${what}` });
      });
    };
    if (c.key === "destination.port") check(c.values, "values", (v) => /^\d+$/.test(v) && Number(v) <= 65535, "port numbers");
    if (c.key === "destination.port") check(c.notValues, "notValues", (v) => /^\d+$/.test(v) && Number(v) <= 65535, "port numbers");
    const isCidr = (v: string) => cidr.safeParse(v).success;
    if (["source.ip", "remote.ip", "destination.ip"].includes(c.key)) {
      check(c.values, "values", isCidr, "IP addresses or CIDR blocks");
      check(c.notValues, "notValues", isCidr, "IP addresses or CIDR blocks");
    }
  });

const rule = z.strictObject({
  from: z.array(z.strictObject({ source })).optional(),
  to: z.array(z.strictObject({ operation })).optional(),
  when: z.array(condition).optional(),
});
export type AuthorizationRule = z.infer<typeof rule>;

export const authorizationPolicySpec = z
  .strictObject({
    selector: matchLabelsSelector.optional(),
    action: z.enum(["ALLOW", "DENY", "AUDIT", "CUSTOM"]).default("ALLOW"),
    rules: z.array(rule).optional(),
    provider: z.strictObject({ name: z.string().min(1) }).optional(),
  })
  .refine((spec) => spec.action !== "CUSTOM", {
    message: "action CUSTOM (an external authorizer, ext_authz) is not supported by Skiff; use ALLOW, DENY or AUDIT",
    path: ["action"],
  })
  .refine((spec) => spec.provider === undefined, { message: "provider is only for action CUSTOM", path: ["provider"] });
