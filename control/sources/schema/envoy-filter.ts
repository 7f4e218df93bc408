// EnvoyFilter (networking.istio.io/v1alpha3): the spec schema, field for field as istio/api
// networking/v1alpha3/envoy_filter.proto, with the rules of Istio's validation
// (pkg/config/validation/envoyfilter/envoyfilter.go) and, beyond them, a refusal of every combination that istiod
// accepts but then ignores (control/translate/envoyfilter/README.md lists them with the reason), so that a patch
// `skiff validate` accepts is one that takes effect. Patch values are checked against Envoy's messages in parse.ts.
import { z } from "zod";
import { gatewayTargetRefs, labels } from "./common.js";

export const ENVOY_FILTER_APPLY_TO = [
  "LISTENER",
  "FILTER_CHAIN",
  "NETWORK_FILTER",
  "HTTP_FILTER",
  "ROUTE_CONFIGURATION",
  "VIRTUAL_HOST",
  "HTTP_ROUTE",
  "CLUSTER",
  "EXTENSION_CONFIG",
  "BOOTSTRAP",
  "LISTENER_FILTER",
] as const;
export type ApplyTo = (typeof ENVOY_FILTER_APPLY_TO)[number];

export const ENVOY_FILTER_OPERATIONS = ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE", "MERGE_AND_REPLACE_LIST"] as const;
export type PatchOperation = (typeof ENVOY_FILTER_OPERATIONS)[number];

/** The operations istiod applies per applyTo (envoyfilter/*_patch.go). INSERT_* on a kind that is not an ordered
 * list of filters or routes is turned into ADD by istiod (model/envoyfilter.go), and so is accepted here. */
export const OPERATIONS_BY_APPLY_TO: Record<Exclude<ApplyTo, "BOOTSTRAP">, readonly PatchOperation[]> = {
  LISTENER: ["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
  FILTER_CHAIN: ["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
  NETWORK_FILTER: ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"],
  HTTP_FILTER: ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"],
  LISTENER_FILTER: ["MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"],
  ROUTE_CONFIGURATION: ["MERGE", "MERGE_AND_REPLACE_LIST"],
  VIRTUAL_HOST: ["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "REPLACE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
  HTTP_ROUTE: ["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
  CLUSTER: ["MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
  EXTENSION_CONFIG: ["ADD", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"],
};

/** The Envoy message a patch value of each applyTo is (istio pkg/config/xds/xds.go BuildXDSObjectFromStruct). */
export const PATCH_MESSAGE: Record<Exclude<ApplyTo, "BOOTSTRAP">, string> = {
  LISTENER: "envoy.config.listener.v3.Listener",
  FILTER_CHAIN: "envoy.config.listener.v3.FilterChain",
  NETWORK_FILTER: "envoy.config.listener.v3.Filter",
  HTTP_FILTER: "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
  LISTENER_FILTER: "envoy.config.listener.v3.ListenerFilter",
  ROUTE_CONFIGURATION: "envoy.config.route.v3.RouteConfiguration",
  VIRTUAL_HOST: "envoy.config.route.v3.VirtualHost",
  HTTP_ROUTE: "envoy.config.route.v3.Route",
  CLUSTER: "envoy.config.cluster.v3.Cluster",
  EXTENSION_CONFIG: "envoy.config.core.v3.TypedExtensionConfig",
};

export const HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager";

const port = z.number().int().min(1).max(65535);

const listenerMatch = z.strictObject({
  portNumber: port.optional(),
  filterChain: z
    .strictObject({
      name: z.string().optional(),
      sni: z.string().optional(),
      transportProtocol: z.string().optional(),
      applicationProtocols: z.string().optional(),
      filter: z
        .strictObject({
          name: z.string().min(1, "filter match has no name to match on"),
          subFilter: z.strictObject({ name: z.string().min(1, "subFilter match has no name to match on") }).optional(),
        })
        .optional(),
      destinationPort: port.optional(),
    })
    .optional(),
  listenerFilter: z.string().min(1).optional(),
  name: z.string().optional(),
});

const routeConfigurationMatch = z.strictObject({
  portNumber: port.optional(),
  portName: z.string().optional(),
  gateway: z.string().regex(/^[^/]+\/[^/]+$/, "namespace/name of the Gateway").optional(),
  vhost: z
    .strictObject({
      name: z.string().optional(),
      domainName: z.string().optional(),
      route: z.strictObject({ name: z.string().optional(), action: z.enum(["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"]).optional() }).optional(),
    })
    .optional(),
  name: z.string().optional(),
});

const clusterMatch = z.strictObject({
  portNumber: port.optional(),
  service: z.string().optional(),
  subset: z.string().optional(),
  name: z.string().optional(),
});

const configPatch = z
  .strictObject({
    applyTo: z.enum(ENVOY_FILTER_APPLY_TO),
    match: z
      .strictObject({
        context: z.enum(["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"], {
          message: "one of ANY, SIDECAR_INBOUND, SIDECAR_OUTBOUND, GATEWAY (Skiff has no waypoints)",
        }).optional(),
        listener: listenerMatch.optional(),
        routeConfiguration: routeConfigurationMatch.optional(),
        cluster: clusterMatch.optional(),
      })
      .optional(),
    patch: z.strictObject({
      operation: z.enum(ENVOY_FILTER_OPERATIONS),
      value: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .superRefine((patch, ctx) => {
    const problem = (path: PropertyKey[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const { applyTo, match } = patch;
    const operation = patch.patch.operation;
    if (applyTo === "BOOTSTRAP") {
      return problem(["applyTo"], "BOOTSTRAP is not supported: the bootstrap is not served over xDS (it is what `skiff bootstrap` prints) and Istio has deprecated this applyTo");
    }
    if (!OPERATIONS_BY_APPLY_TO[applyTo].includes(operation)) {
      return problem(["patch", "operation"], `${operation} does not apply to ${applyTo} (istiod ignores it); use one of ${OPERATIONS_BY_APPLY_TO[applyTo].join(", ")}`);
    }
    if (operation !== "REMOVE" && patch.patch.value === undefined) problem(["patch", "value"], `${operation} needs a value`);
    const objects = [match?.listener && "listener", match?.routeConfiguration && "routeConfiguration", match?.cluster && "cluster"].filter(Boolean);
    if (objects.length > 1) problem(["match"], `at most one of listener, routeConfiguration or cluster (got ${objects.join(", ")})`);
    const expected =
      applyTo === "CLUSTER" ? "cluster" : ["ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"].includes(applyTo) ? "routeConfiguration" : applyTo === "EXTENSION_CONFIG" ? undefined : "listener";
    for (const object of objects) {
      if (object !== expected) {
        problem(["match", object as string], expected ? `applyTo ${applyTo} takes a ${expected} match` : "EXTENSION_CONFIG patches match by the name of the extension config the proxy asks for, not by a listener, route or cluster");
      }
    }
    if (applyTo === "EXTENSION_CONFIG" && match?.context && match.context !== "ANY") {
      problem(["match", "context"], "EXTENSION_CONFIG patches apply in every context (istiod ignores the context)");
    }
    const filter = match?.listener?.filterChain?.filter;
    if (filter && (applyTo === "LISTENER" || applyTo === "FILTER_CHAIN" || applyTo === "LISTENER_FILTER")) {
      problem(["match", "listener", "filterChain", "filter"], `a filter match has no effect with applyTo ${applyTo}`);
    }
    if (filter?.subFilter && applyTo !== "HTTP_FILTER") problem(["match", "listener", "filterChain", "filter", "subFilter"], "a subFilter match works with applyTo HTTP_FILTER only");
    if (filter?.subFilter && filter.name !== HTTP_CONNECTION_MANAGER) {
      problem(["match", "listener", "filterChain", "filter", "name"], `a subFilter match needs the filter ${HTTP_CONNECTION_MANAGER}`);
    }
    if (match?.listener?.listenerFilter && applyTo !== "LISTENER_FILTER") problem(["match", "listener", "listenerFilter"], "a listenerFilter match works with applyTo LISTENER_FILTER only");
    // Operations on one named element that istiod skips when the element is not named.
    const named: Partial<Record<ApplyTo, [boolean, string]>> = {
      NETWORK_FILTER: [filter !== undefined, "match.listener.filterChain.filter.name"],
      HTTP_FILTER: [filter?.subFilter !== undefined, "match.listener.filterChain.filter.subFilter.name"],
      LISTENER_FILTER: [match?.listener?.listenerFilter !== undefined, "match.listener.listenerFilter"],
    };
    const [hasName, field] = named[applyTo] ?? [true, ""];
    const needsName = operation === "REMOVE" || operation === "REPLACE" || (applyTo === "LISTENER_FILTER" && operation === "MERGE");
    if (needsName && !hasName) problem(["patch", "operation"], `${operation} of a ${applyTo} needs ${field} to say which one (istiod ignores it otherwise)`);
    const value = patch.patch.value ?? {};
    if ((applyTo === "CLUSTER" || applyTo === "FILTER_CHAIN") && operation.startsWith("MERGE") && ("transport_socket" in value || "transportSocket" in value) && Object.keys(value).length > 1) {
      problem(["patch", "value"], "a MERGE with a transport socket changes only the socket (istiod drops the other fields): put the other fields in a patch of their own");
    }
    const routeMatch = match?.routeConfiguration;
    if (routeMatch && (routeMatch.portName || routeMatch.gateway) && match?.context !== "GATEWAY") {
      problem(["match", "routeConfiguration", routeMatch.portName ? "portName" : "gateway"], "portName and gateway match gateway route configurations only: set context GATEWAY");
    }
  });

export const envoyFilterSpec = z
  .strictObject({
    workloadSelector: z.strictObject({ labels }).optional(),
    targetRefs: gatewayTargetRefs.optional(),
    configPatches: z.array(configPatch).min(1),
    priority: z.number().int().min(-2147483648).max(2147483647).optional(),
  })
  .refine((spec) => !(spec.workloadSelector && spec.targetRefs), { message: "at most one of workloadSelector and targetRefs", path: ["targetRefs"] });

export type EnvoyFilterPatch = z.infer<typeof configPatch>;
