// What a valid mesh does that its author may not expect: references that route nowhere, resources Istio merges or
// ignores, fields that wait for parts Skiff does not have yet. `skiff validate` prints these as warnings and the
// control plane logs them; neither refuses the configuration, because Istio accepts it.
import { type ConfigError, MESH_CONFIG_FILE, type MeshConfig } from "../sources/index.js";
import type { ServiceEntry, VirtualService } from "../sources/model.js";
import { mergePolicies } from "./clusters.js";
import { localityPolicy } from "./locality.js";
import { OVERRIDE_HOST_ANNOTATION } from "./override-host.js";
import { Registry } from "./registry.js";
import { findDelegate } from "./virtual-services.js";

export function meshWarnings(mesh: MeshConfig): ConfigError[] {
  const registry = new Registry(mesh);
  return [
    ...installationWarnings(mesh),
    ...referenceWarnings(mesh, registry),
    ...mergedRuleWarnings(registry),
    ...mergedEntryWarnings(mesh, registry),
    ...routeWarnings(mesh),
    ...pendingFieldWarnings(mesh),
    ...localityWarnings(mesh, registry),
    ...peerAuthenticationWarnings(mesh),
    ...clientTlsWarnings(mesh),
    ...overrideHostWarnings(mesh, registry),
    ...telemetryWarnings(mesh),
  ];
}

/** Telemetry settings istiod accepts that would not do what they say (pilot/pkg/networking/core/tracing.go,
 * pilot/pkg/model/telemetry.go): `enableTracing` counts only for a proxy no tracing provider reaches, and then means
 * the bootstrap's tracer, which Skiff's bootstrap does not have; `defaultConfig.tracing.sampling: 0` is "unset" (1%);
 * a second namespace-wide Telemetry in a namespace is ignored. */
function telemetryWarnings(mesh: MeshConfig): ConfigError[] {
  const warnings: ConfigError[] = [];
  const { enableTracing, defaultSampling, defaultProviders } = mesh.telemetry;
  const tracingEntries = mesh.telemetries.flatMap((t) => t.spec.tracing ?? []);
  const meshWarning = (field: string, message: string) => warnings.push({ file: MESH_CONFIG_FILE, field, message });
  if (enableTracing === false && (defaultProviders.tracing.length > 0 || tracingEntries.length > 0)) {
    meshWarning(
      "enableTracing",
      "has no effect where defaultProviders.tracing or a Telemetry's tracing applies (istiod then traces regardless); turn tracing off with a Telemetry `tracing: [{ disableSpanReporting: true }]`",
    );
  }
  if (enableTracing === true && defaultProviders.tracing.length === 0 && !tracingEntries.some((entry) => entry.providers?.length)) {
    meshWarning(
      "enableTracing",
      "traces nothing: no tracing provider is named (istiod would use the proxy bootstrap's tracer, proxyConfig.tracing, which Skiff's bootstrap does not have); name one in defaultProviders.tracing or a Telemetry",
    );
  }
  if (defaultSampling === 0) {
    meshWarning("defaultConfig.tracing.sampling", "0 is istiod's \"unset\": proxies sample the default 1%; to sample nothing, set randomSamplingPercentage: 0 in a Telemetry");
  }
  const firstWide = new Map<string, string>();
  for (const telemetry of [...mesh.telemetries].sort((a, b) => a.name.localeCompare(b.name))) {
    if (Object.keys(telemetry.spec.selector?.matchLabels ?? {}).length > 0) continue;
    const first = firstWide.get(telemetry.namespace);
    if (first === undefined) firstWide.set(telemetry.namespace, telemetry.name);
    else {
      warnings.push({
        file: telemetry.file,
        resource: `Telemetry ${telemetry.namespace}/${telemetry.name}`,
        message: `another namespace-wide Telemetry in ${telemetry.namespace} comes first (${first}); istiod uses only the oldest, Skiff the first by name, so this one has no effect`,
      });
    }
  }
  return warnings;
}

/** Locality settings that cannot act: failover without outlier detection (Istio warns the same: Envoy never leaves a
 * priority whose endpoints it does not eject), and retryRemoteLocalities where there is no other priority to retry in. */
function localityWarnings(mesh: MeshConfig, registry: Registry): ConfigError[] {
  const warnings: ConfigError[] = [];
  for (const rule of mesh.destinationRules) {
    const policies = [
      { field: "spec.trafficPolicy", policy: rule.spec.trafficPolicy },
      ...(rule.spec.subsets ?? []).map((subset, index) => ({ field: `spec.subsets[${index}].trafficPolicy`, policy: subset.trafficPolicy && mergePolicies(rule.spec.trafficPolicy, subset.trafficPolicy) })),
    ];
    for (const { field, policy } of policies) {
      const setting = policy?.loadBalancer?.localityLbSetting;
      if (!setting) continue;
      const warn = (message: string) => warnings.push({ file: rule.file, resource: `DestinationRule ${rule.namespace}/${rule.name}`, field: `${field}.loadBalancer.localityLbSetting`, message });
      if (!policy?.outlierDetection && (setting.failover?.length || setting.failoverPriority?.length)) {
        warn("failover needs outlierDetection (Istio warns the same): without it no endpoint is ever ejected, so traffic never leaves the local locality");
      }
      const balancer = policy?.loadBalancer?.consistentHash ? "consistentHash" : policy?.loadBalancer?.simple;
      if (setting.distribute?.length && (balancer === "RANDOM" || balancer === "consistentHash")) {
        warn(`distribute's weights take effect with ROUND_ROBIN or LEAST_REQUEST only (Envoy weighs localities for those, and Istio enables it only there); with ${balancer} only its choice of localities applies`);
      }
    }
  }
  for (const vs of mesh.virtualServices) {
    vs.spec.http.forEach((http, index) => {
      if (!http.retries?.retryRemoteLocalities) return;
      const warn = (message: string) =>
        warnings.push({ file: vs.file, resource: `VirtualService ${vs.namespace}/${vs.name}`, field: `spec.http[${index}].retries.retryRemoteLocalities`, message });
      if (http.retries.attempts < 2) {
        warn("Envoy's previous_priorities (update_frequency 2, as Istio sets it) moves retries to another locality from the third attempt on; with attempts 1 the retry stays local");
      }
      const local = (http.route ?? []).filter(({ destination }) => {
        const service = registry.lookup(destination.host, vs.namespace);
        const rule = service && registry.destinationRule(service);
        const subset = rule?.spec.subsets?.find((candidate) => candidate.name === destination.subset);
        const locality = localityPolicy(mesh, mergePolicies(rule?.spec.trafficPolicy, subset?.trafficPolicy));
        return !locality?.failover || Boolean(locality.setting.distribute?.length);
      });
      if (local.length > 0) {
        warn(
          `${local.map(({ destination }) => destination.host).join(", ")}: no locality failover (it needs outlierDetection in a DestinationRule, and locality load balancing not disabled or set to distribute), so every endpoint has one priority and retries have no other locality to go to`,
        );
      }
    });
  }
  return warnings;
}

/** PeerAuthentications Istio ignores: a second mesh- or namespace-wide one in a namespace (Istio keeps the oldest,
 * Skiff the first in load order), a second workload one selecting the same labels, and selectors in the root
 * namespace (ComposePeerAuthentication looks at workload policies outside it only). */
function peerAuthenticationWarnings(mesh: MeshConfig): ConfigError[] {
  const warnings: ConfigError[] = [];
  const seen = new Map<string, string>();
  for (const policy of mesh.peerAuthentications) {
    const resource = `PeerAuthentication ${policy.namespace}/${policy.name}`;
    const labels = policy.spec.selector?.matchLabels ?? {};
    const selected = Object.keys(labels).length > 0;
    if (selected && policy.namespace === mesh.rootNamespace) {
      warnings.push({ file: policy.file, resource, field: "spec.selector", message: `a PeerAuthentication with a selector in the root namespace (${mesh.rootNamespace}) applies to no workload (Istio ignores it): put it in the workloads' namespace` });
      continue;
    }
    const key = `${policy.namespace} ${selected ? JSON.stringify(Object.entries(labels).sort()) : ""}`;
    const first = seen.get(key);
    if (first) {
      const level = selected ? "with the same selector" : policy.namespace === mesh.rootNamespace ? "mesh-wide" : "namespace-wide";
      warnings.push({ file: policy.file, resource, message: `another PeerAuthentication ${level} in ${policy.namespace} comes first (${first}); Istio uses only the oldest, Skiff the first in load order, so this one has no effect` });
    } else seen.set(key, policy.name);
  }
  return warnings;
}

/** DestinationRule TLS that Istio drops: a credentialName for SIMPLE or MUTUAL in a rule without workloadSelector is
 * looked up on gateways only; sidecars then send plain text (cluster_tls.go buildUpstreamClusterTLSContext). */
function clientTlsWarnings(mesh: MeshConfig): ConfigError[] {
  return mesh.destinationRules.flatMap((rule) => {
    if (rule.spec.workloadSelector) return [];
    const policies = [
      ["spec.trafficPolicy.tls", rule.spec.trafficPolicy?.tls] as const,
      ...(rule.spec.subsets ?? []).map((subset, index) => [`spec.subsets[${index}].trafficPolicy.tls`, subset.trafficPolicy?.tls] as const),
    ];
    return policies.flatMap(([field, tls]) =>
      tls?.credentialName && (tls.mode === "SIMPLE" || tls.mode === "MUTUAL")
        ? [{
            file: rule.file,
            resource: `DestinationRule ${rule.namespace}/${rule.name}`,
            field: `${field}.credentialName`,
            message: "credentialName is used by gateways only unless the rule has a workloadSelector: sidecars send this traffic in plain text, as Istio's do; use certificate files, or a workloadSelector",
          }]
        : [],
    );
  });
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
      const ports = service.entry.spec.ports.map((port) => port.number);
      if (destination.port && !ports.includes(destination.port.number)) {
        warn(`${field}.port`, `port ${destination.port.number} is not a port of ${service.host} (its ports: ${ports.join(", ")}), so there is no cluster for it (requests get 503)`);
      }
      const subsets = registry.destinationRule(service)?.spec.subsets ?? [];
      if (destination.subset && !subsets.some((s) => s.name === destination.subset)) {
        warn(`${field}.subset`, `subset ${destination.subset} of ${service.host} is in no DestinationRule (requests get 503)`);
      }
    }
  }
  return warnings;
}

/** Every destination a VirtualService sends requests (or copies of them) to, with its field path. */
function destinations(vs: VirtualService) {
  return vs.spec.http.flatMap((http, index) => [
    ...(http.route ?? []).map((route, i) => ({ field: `spec.http[${index}].route[${i}].destination`, destination: route.destination })),
    ...(http.mirror ? [{ field: `spec.http[${index}].mirror`, destination: http.mirror }] : []),
    ...(http.mirrors ?? []).map((mirror, i) => ({ field: `spec.http[${index}].mirrors[${i}].destination`, destination: mirror.destination })),
  ]);
}

/** Route settings Istio accepts that would do nothing or that point nowhere. */
function routeWarnings(mesh: MeshConfig): ConfigError[] {
  const warnings: ConfigError[] = [];
  for (const vs of mesh.virtualServices) {
    const warn = (field: string, message: string) => warnings.push({ file: vs.file, resource: `VirtualService ${vs.namespace}/${vs.name}`, field, message });
    vs.spec.http.forEach((http, index) => {
      const field = `spec.http[${index}]`;
      if (http.fault?.delay && !http.fault.delay.percentage) warn(`${field}.fault.delay.percentage`, NO_PERCENTAGE("delayed"));
      if (http.fault?.abort && !http.fault.abort.percentage) warn(`${field}.fault.abort.percentage`, NO_PERCENTAGE("aborted"));
      if (http.delegate && !findDelegate(mesh, vs, http.delegate)) {
        const namespace = http.delegate.namespace ?? vs.namespace;
        warn(`${field}.delegate`, `no VirtualService ${namespace}/${http.delegate.name} without hosts is exported to namespace ${vs.namespace}, so this route is left out (as Istio leaves it out)`);
      }
    });
    if (vs.spec.hosts.length === 0 && !mesh.virtualServices.some((root) => root.spec.http.some((http) => http.delegate && findDelegate(mesh, root, http.delegate) === vs))) {
      warnings.push({ file: vs.file, resource: `VirtualService ${vs.namespace}/${vs.name}`, field: "spec.hosts", message: "no hosts: a delegate, but no VirtualService delegates to it, so it routes nothing" });
    }
  }
  return warnings;
}

const NO_PERCENTAGE = (what: string) => `without a percentage no request is ${what} (Istio's API: "if left unspecified, no request will be ${what}"); set percentage.value (100 for every request)`;

/** Istio merges DestinationRules for one host in one namespace into the first (destination-rules.ts). */
function mergedRuleWarnings(registry: Registry): ConfigError[] {
  return registry.ruleMerges().map(({ into, rule, host, addedSubsets, droppedSubsets, trafficPolicyIgnored }) => {
    const parts = [
      addedSubsets.length > 0 ? `its subsets ${addedSubsets.join(", ")} are added to it` : "",
      droppedSubsets.length > 0 ? `its subsets ${droppedSubsets.join(", ")} are dropped (the first rule has subsets of those names)` : "",
      trafficPolicyIgnored ? "its trafficPolicy is ignored (the first rule's applies)" : "",
    ].filter(Boolean);
    return {
      file: rule.file,
      resource: `DestinationRule ${rule.namespace}/${rule.name}`,
      message: `merged into DestinationRule ${into.namespace}/${into.name} (${into.file}), the first rule for ${host} in this namespace, as Istio merges them${parts.length ? `: ${parts.join("; ")}` : ""}`,
    };
  });
}

/** Istio makes one service of every ServiceEntry for a host in a namespace: the first defines it, the endpoints of
 * all count. What a later entry says differently is ignored. */
function mergedEntryWarnings(mesh: MeshConfig, registry: Registry): ConfigError[] {
  const warnings: ConfigError[] = [];
  const seen = new Set<string>();
  for (const entry of mesh.serviceEntries) {
    for (const host of entry.spec.hosts) {
      const service = registry.servicesForHost(host).find((candidate) => candidate.namespace === entry.namespace);
      if (!service || service.entry === entry || seen.has(`${entry.namespace}/${entry.name} ${host}`)) continue;
      seen.add(`${entry.namespace}/${entry.name} ${host}`);
      const ignored = definitionFields.filter((field) => JSON.stringify(entry.spec[field]) !== JSON.stringify(service.entry.spec[field]));
      warnings.push({
        file: entry.file,
        resource: `ServiceEntry ${entry.namespace}/${entry.name}`,
        message:
          `host ${host} is also defined by ServiceEntry ${service.entry.namespace}/${service.entry.name} (${service.entry.file}): as in Istio, both are one service, ` +
          `whose endpoints are those of both and whose definition is the first's` +
          (ignored.length > 0 ? `; this entry's ${ignored.join(", ")} ${ignored.length === 1 ? "is" : "are"} ignored` : ""),
      });
    }
  }
  return warnings;
}

const definitionFields = ["ports", "resolution", "addresses", "location", "exportTo"] as const satisfies ReadonlyArray<keyof ServiceEntry["spec"]>;

/** Fields Skiff accepts whose effect waits for parts it does not have yet. */
function pendingFieldWarnings(mesh: MeshConfig): ConfigError[] {
  const warnings: ConfigError[] = [];
  for (const entry of mesh.serviceEntries) {
    const resource = `ServiceEntry ${entry.namespace}/${entry.name}`;
    entry.spec.endpoints?.forEach((endpoint, index) => {
      if (endpoint.network) warnings.push({ file: entry.file, resource, field: `spec.endpoints[${index}].network`, message: NETWORK });
    });
  }
  for (const workload of mesh.workloadEntries) {
    if (workload.spec.network) warnings.push({ file: workload.file, resource: `WorkloadEntry ${workload.namespace}/${workload.name}`, field: "spec.network", message: NETWORK });
  }
  return warnings;
}

const NETWORK =
  "picks the east-west gateway through which proxies on other networks reach this endpoint (meshNetworks); Skiff has one network and no such gateways, so, as in Istio without meshNetworks, every proxy reaches the endpoint directly";

/** `skiff.dev/override-host` on a rule for a `resolution: NONE` service: a sidecar's cluster for it connects to the
 * address the application dialed (ORIGINAL_DST), so there are no hosts to choose among (clusters.ts). */
function overrideHostWarnings(mesh: MeshConfig, registry: Registry): ConfigError[] {
  return mesh.destinationRules.flatMap((rule) => {
    if (!rule.annotations?.[OVERRIDE_HOST_ANNOTATION]) return [];
    const service = registry.lookup(rule.spec.host, rule.namespace);
    if (service?.entry.spec.resolution !== "NONE") return [];
    return [
      {
        file: rule.file,
        resource: `DestinationRule ${rule.namespace}/${rule.name}`,
        field: `metadata.annotations["${OVERRIDE_HOST_ANNOTATION}"]`,
        message: `has no effect on sidecars: ${service.host} has resolution NONE, so a sidecar connects to the address the application dialed (an ORIGINAL_DST cluster, no hosts to choose among); gateways, which balance over its endpoints, do use it`,
      },
    ];
  });
}
