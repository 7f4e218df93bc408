// DestinationRule: the spec schema (istio.io networking/v1alpha3/destination_rule.proto).
import { z } from "zod";
import { duration, exportTo, labels, portSelector } from "./common.js";

const consistentHash = z
  .strictObject({
    httpHeaderName: z.string().min(1).optional(),
    httpCookie: z
      .strictObject({
        name: z.string().min(1),
        path: z.string().optional(),
        ttl: duration.optional(),
        attributes: z.array(z.strictObject({ name: z.string().min(1), value: z.string().optional() })).optional(),
      })
      .optional(),
    useSourceIp: z.boolean().optional(),
    httpQueryParameterName: z.string().min(1).optional(),
    ringHash: z.strictObject({ minimumRingSize: z.number().int().positive().max(8_388_608).optional() }).optional(),
    maglev: z.strictObject({ tableSize: z.number().int().positive().max(5_000_011).optional() }).optional(),
    /** Deprecated by Istio in favour of ringHash.minimumRingSize; still honoured. */
    minimumRingSize: z.number().int().positive().max(8_388_608).optional(),
  })
  .refine(
    (h) => [h.httpHeaderName, h.httpCookie, h.useSourceIp, h.httpQueryParameterName].filter((v) => v !== undefined).length === 1,
    { message: "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName" },
  )
  .refine((h) => [h.ringHash, h.maglev].filter((v) => v !== undefined).length <= 1, { message: "only one of ringHash or maglev" })
  .refine((h) => h.minimumRingSize === undefined || h.maglev === undefined, { message: "minimumRingSize is a ring hash setting; with maglev use maglev.tableSize" });

/** Envoy's slow start: new endpoints get traffic gradually (Istio's WarmupConfiguration). */
const warmup = z.strictObject({
  duration,
  minimumPercent: z.number().min(0).max(100).optional(),
  aggression: z.number().min(1).optional(),
});

/** Istio's topology labels (istio.io/api label, pilot registry util/label): a workload's locality as labels, which
 * `failoverPriority` may name. */
export const TOPOLOGY_LABELS = { region: "topology.kubernetes.io/region", zone: "topology.kubernetes.io/zone", subZone: "topology.istio.io/subzone" } as const;

/** LocalityLoadBalancerSetting (DestinationRule `loadBalancer.localityLbSetting`, MeshConfig `localityLbSetting`),
 * validated as Istio's ValidateLocalityLbSetting (pkg/config/validation/agent/validation.go) does. Localities are
 * `region[/zone[/subzone]]`; `distribute` may end one with `*`. The "outlier detection must be provided for failover"
 * check is a warning there and in Skiff (translate/warnings.ts). */
export const localityLbSetting = z
  .strictObject({
    enabled: z.boolean().optional(),
    distribute: z.array(z.strictObject({ from: z.string().min(1), to: z.record(z.string().min(1), z.number().int()) })).optional(),
    failover: z.array(z.strictObject({ from: z.string().min(1), to: z.string().min(1) })).optional(),
    failoverPriority: z.array(z.string().min(1)).optional(),
  })
  .superRefine((lb, context) => {
    const issue = (path: PropertyKey[], message: string) => context.addIssue({ code: "custom", path, message });
    if (lb.distribute?.length && lb.failover?.length) return issue(["failover"], "can not simultaneously specify 'distribute' and 'failover' (Istio refuses both)");
    if (lb.failover?.length) {
      lb.failoverPriority?.forEach((label, index) => {
        if ((Object.values(TOPOLOGY_LABELS) as string[]).includes(label)) issue(["failoverPriority", index], `can not simultaneously set 'failover' and topology label '${label}' in 'failoverPriority' (Istio refuses it)`);
      });
    }
    lb.distribute?.forEach((rule, index) => {
      const weights = Object.values(rule.to);
      if (weights.some((weight) => weight < 1 || weight > 100)) return issue(["distribute", index, "to"], "locality weight must be in range [1, 100]");
      const total = weights.reduce((sum, weight) => sum + weight, 0);
      if (total !== 100) return issue(["distribute", index, "to"], `total locality weight ${total} != 100`);
      const problem = localitiesProblem(Object.keys(rule.to));
      if (problem) issue(["distribute", index, "to"], problem);
    });
    const sources = localitiesProblem((lb.distribute ?? []).map((rule) => rule.from));
    if (sources) issue(["distribute"], sources);
    lb.failover?.forEach((rule, index) => {
      if (rule.from === rule.to) issue(["failover", index], "locality lb failover settings must specify different regions");
      if (rule.from.includes("/") || rule.to.includes("/")) issue(["failover", index], "locality lb failover only specifies regions (no '/')");
      if (rule.from.includes("*") || rule.to.includes("*")) issue(["failover", index], "locality lb failover region should not contain the '*' wildcard");
    });
  });
export type LocalityLbSetting = z.infer<typeof localityLbSetting>;

/** Istio's validateLocalities: a `*` only once and last, no empty part, no locality that overlaps an earlier one. */
function localitiesProblem(localities: string[]): string | undefined {
  // region -> zone -> subzones; "*" marks "everything below".
  const seen = new Map<string, Map<string, Set<string>>>();
  for (const locality of localities) {
    const stars = locality.split("*").length - 1;
    if (stars > 1 || (stars === 1 && !locality.endsWith("*"))) return `locality ${locality}: the wildcard '*' may appear once, at the end`;
    if (seen.has("*")) return `locality ${locality} overlaps with previous ones`;
    const parts = locality.split("/");
    if (parts.length > 3 || parts.some((part) => part === "")) return `locality ${locality} must be region[/zone[/subzone]] without empty parts`;
    const [region, zone, subZone] = parts as [string, string?, string?];
    const zones = seen.get(region);
    if (zone === undefined) {
      if (zones) return `locality ${locality} overlaps with previous ones`;
      seen.set(region, new Map([["*", new Set(["*"])]]));
      continue;
    }
    if (zones?.has("*")) return `locality ${locality} overlaps with previous ones`;
    const subZones = zones?.get(zone);
    if (subZone === undefined) {
      if (subZones) return `locality ${locality} overlaps with previous ones`;
      seen.set(region, (zones ?? new Map()).set(zone, new Set(["*"])));
      continue;
    }
    if (subZones?.has("*") || subZones?.has(subZone)) return `locality ${locality} overlaps with previous ones`;
    seen.set(region, (zones ?? new Map()).set(zone, (subZones ?? new Set()).add(subZone)));
  }
  return undefined;
}

const loadBalancer = z
  .strictObject({
    // LEAST_CONN is Istio's deprecated alias of LEAST_REQUEST.
    simple: z.enum(["UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM"]).optional(),
    consistentHash: consistentHash.optional(),
    warmupDurationSecs: duration.optional(),
    warmup: warmup.optional(),
    localityLbSetting: localityLbSetting.optional(),
  })
  // One policy or none: a loadBalancer may hold only localityLbSetting (Istio's lb_policy oneof may be unset).
  .refine((lb) => lb.simple === undefined || lb.consistentHash === undefined, { message: "only one of simple or consistentHash" })
  .refine((lb) => !(lb.warmup && lb.warmupDurationSecs), { message: "only one of warmup or warmupDurationSecs (its deprecated form)" })
  .refine((lb) => !((lb.warmup || lb.warmupDurationSecs) && (lb.consistentHash || lb.simple === "RANDOM")), {
    message: "warmup applies to ROUND_ROBIN and LEAST_REQUEST only (Envoy has no slow start for RANDOM or consistent hashing)",
  });

const connectionPool = z.strictObject({
  tcp: z
    .strictObject({
      maxConnections: z.number().int().positive().optional(),
      connectTimeout: duration.optional(),
      tcpKeepalive: z
        .strictObject({
          probes: z.number().int().positive().optional(),
          time: duration.optional(),
          interval: duration.optional(),
        })
        .optional(),
      maxConnectionDuration: duration.optional(),
      idleTimeout: duration.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      http1MaxPendingRequests: z.number().int().positive().optional(),
      http2MaxRequests: z.number().int().positive().optional(),
      maxRequestsPerConnection: z.number().int().min(0).optional(),
      maxRetries: z.number().int().min(0).optional(),
      idleTimeout: duration.optional(),
      h2UpgradePolicy: z.enum(["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]).optional(),
      useClientProtocol: z.boolean().optional(),
      maxConcurrentStreams: z.number().int().positive().optional(),
      http2KeepAlive: z.strictObject({ interval: duration.optional(), timeout: duration.optional() }).optional(),
    })
    .optional(),
});

const outlierDetection = z
  .strictObject({
    consecutive5xxErrors: z.number().int().min(0).optional(),
    consecutiveGatewayErrors: z.number().int().min(0).optional(),
    splitExternalLocalOriginErrors: z.boolean().optional(),
    consecutiveLocalOriginFailures: z.number().int().min(0).optional(),
    interval: duration.optional(),
    baseEjectionTime: duration.optional(),
    maxEjectionPercent: z.number().int().min(0).max(100).optional(),
    minHealthPercent: z.number().int().min(0).max(100).optional(),
  })
  .refine((od) => od.consecutiveLocalOriginFailures === undefined || od.splitExternalLocalOriginErrors === true, {
    message: "consecutiveLocalOriginFailures counts only with splitExternalLocalOriginErrors: true (Envoy ignores it otherwise)",
  });

/** ClientTLSSettings: how a client's sidecar talks TLS to the service (istio.io .../destination-rule/#ClientTLSSettings). */
export const clientTls = z
  .strictObject({
    mode: z.enum(["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
    clientCertificate: z.string().min(1).optional(),
    privateKey: z.string().min(1).optional(),
    caCertificates: z.string().min(1).optional(),
    credentialName: z.string().min(1).optional(),
    subjectAltNames: z.array(z.string().min(1)).optional(),
    sni: z.string().min(1).optional(),
    insecureSkipVerify: z.boolean().optional(),
  })
  .superRefine((tls, context) => {
    const files = tls.clientCertificate || tls.privateKey || tls.caCertificates || tls.credentialName;
    if (tls.mode === "ISTIO_MUTUAL" && files) {
      context.addIssue({ code: "custom", message: "ISTIO_MUTUAL uses the workload certificate: clientCertificate, privateKey, caCertificates and credentialName must be empty" });
    }
    if (tls.mode === "MUTUAL" && !tls.credentialName && !(tls.clientCertificate && tls.privateKey)) {
      context.addIssue({ code: "custom", message: "MUTUAL needs clientCertificate and privateKey (or credentialName)" });
    }
    if ((tls.mode === "SIMPLE" || tls.mode === "MUTUAL") && !tls.caCertificates && !tls.credentialName && !tls.insecureSkipVerify) {
      // Istio would verify against the operating system's roots; Skiff asks for the CA explicitly.
      context.addIssue({ code: "custom", message: `${tls.mode} needs caCertificates (or credentialName, or insecureSkipVerify: true): Skiff does not use the OS root store` });
    }
  });
export type ClientTls = z.infer<typeof clientTls>;

/** What a port, a subset or the whole service may set. */
const policyComponents = {
  tls: clientTls.optional(),
  loadBalancer: loadBalancer.optional(),
  connectionPool: connectionPool.optional(),
  outlierDetection: outlierDetection.optional(),
};

const trafficPolicy = z.strictObject({
  ...policyComponents,
  /** Per service port; a port's settings replace the service-level ones, component by component, without inheriting. */
  portLevelSettings: z.array(z.strictObject({ port: portSelector, ...policyComponents })).optional(),
  /** Envoy's retry budget on the cluster's circuit breaker (Istio's TrafficPolicy.RetryBudget). */
  retryBudget: z
    .strictObject({
      percent: z.number().min(0).max(100).optional(),
      minRetryConcurrency: z.number().int().positive().optional(),
      budgetInterval: duration.optional(),
    })
    .optional(),
});
export type TrafficPolicy = z.infer<typeof trafficPolicy>;
export type LoadBalancerSettings = z.infer<typeof loadBalancer>;
export type ConsistentHash = z.infer<typeof consistentHash>;

export const destinationRuleSpec = z
  .strictObject({
    host: z.string().min(1),
    trafficPolicy: trafficPolicy.optional(),
    subsets: z.array(z.strictObject({ name: z.string().min(1), labels: labels.default({}), trafficPolicy: trafficPolicy.optional() })).optional(),
    exportTo: exportTo.optional(),
    /** Applies the rule only to the proxies of its namespace with these labels (Istio's istio.type.v1beta1.WorkloadSelector). */
    workloadSelector: z.strictObject({ matchLabels: labels }).optional(),
  })
  .superRefine((spec, context) => {
    const issue = (path: PropertyKey[], message: string) => context.addIssue({ code: "custom", path, message });
    spec.subsets?.forEach((subset, index) => {
      if (spec.subsets!.findIndex((other) => other.name === subset.name) !== index) {
        issue(["subsets", index, "name"], `subset ${subset.name} is already defined (Istio refuses duplicate subset names)`);
      }
    });
    if (spec.workloadSelector && spec.exportTo && !(spec.exportTo.length === 1 && spec.exportTo[0] === ".")) {
      issue(["exportTo"], 'a rule with a workloadSelector applies only in its own namespace, so exportTo can only be ["."] (Istio refuses others)');
    }
    const policies: Array<[PropertyKey[], TrafficPolicy | undefined]> = [
      [["trafficPolicy"], spec.trafficPolicy],
      ...(spec.subsets ?? []).map((subset, index): [PropertyKey[], TrafficPolicy | undefined] => [["subsets", index, "trafficPolicy"], subset.trafficPolicy]),
    ];
    for (const [path, policy] of policies) {
      policy?.portLevelSettings?.forEach((setting, index) => {
        if (policy.portLevelSettings!.findIndex((other) => other.port.number === setting.port.number) !== index) {
          issue([...path, "portLevelSettings", index, "port"], `port ${setting.port.number} already has settings (Istio uses only the first)`);
        }
      });
    }
  });
export type DestinationRuleSpec = z.infer<typeof destinationRuleSpec>;
