// Istio resources -> the Envoy resources of one proxy. Pure: the same mesh and context give the same resources,
// which is what the golden tests in test/translate/ rely on.
import type { MeshConfig } from "../sources/index.js";
import { emptyResources, type ProxyIdentity, type ProxyResources, type TranslationContext, TypeUrl, type XdsResource } from "../resources.js";
import { buildClusters, passthroughCluster } from "./clusters.js";
import { PASSTHROUGH_CLUSTER } from "./envoy.js";
import { applyEnvoyFilters, type PatchEffect } from "./envoyfilter/index.js";
import { buildGatewayListeners, gatewayVirtualServices, kubernetesCredential, selectedGateways } from "./gateway.js";
import { Registry } from "./registry.js";
import { gatewayServices, sidecarScope } from "./scope.js";
import { buildSidecarInbound } from "./sidecar-inbound.js";
import { buildSidecarOutbound } from "./sidecar-outbound.js";
import { buildExtensions, moduleCluster } from "./extensions.js";
import { buildTelemetry } from "./telemetry.js";
import { workloadHttpFilters } from "./http-filters.js";
import { rbacNetworkFilters, workloadPolicies } from "./authz.js";
import { inboundMtls, modeForPort } from "./peer-authentication.js";
import { DEFAULT_TRUST_DOMAIN } from "../ca/spiffe.js";
import { policyForPort } from "./policy.js";
import { clientCredential } from "./upstream-tls.js";

export type { PatchEffect } from "./envoyfilter/index.js";

export function translate(mesh: MeshConfig, context: TranslationContext): ProxyResources {
  return translateWithEffects(mesh, context).resources;
}

/** translate(), and what each EnvoyFilter patch did (for validation and `skiff proxy-config diff`). */
export function translateWithEffects(mesh: MeshConfig, context: TranslationContext): { resources: ProxyResources; effects: PatchEffect[] } {
  const registry = new Registry(mesh, context.proxy);
  const wasm = buildExtensions(mesh, context);
  const proxy = context.proxy;
  const resources = emptyResources();
  const security = { trustDomain: context.trustDomain ?? DEFAULT_TRUST_DOMAIN, certificates: context.workloadCertificates ?? true };
  let listeners: XdsResource[];
  if (proxy.role === "gateway") {
    const gateway = buildGatewayListeners(mesh, registry, proxy, workloadHttpFilters(mesh, context, wasm));
    const { clusters, endpoints, secrets: clusterSecrets } = buildClusters(mesh, registry, gatewayServices(registry, gatewayVirtualServices(mesh, proxy)), security);
    resources[TypeUrl.Cluster] = clusters;
    resources[TypeUrl.ClusterLoadAssignment] = endpoints;
    resources[TypeUrl.Secret] = [...gateway.secrets, ...clusterSecrets.filter((secret) => !gateway.secrets.some((known) => known.name === secret.name))];
    resources[TypeUrl.RouteConfiguration] = gateway.routes;
    listeners = gateway.listeners;
  } else {
    const scope = sidecarScope(mesh, registry, proxy);
    const outbound = buildSidecarOutbound(registry, scope, proxy, wasm.httpFilters);
    // Outbound the workload's own calls pass its Wasm plugins; inbound also its authentication and authorization.
    const inbound = buildSidecarInbound(registry, scope, proxy, workloadHttpFilters(mesh, context, wasm), {
      mtls: inboundMtls(mesh, proxy),
      certificates: security.certificates,
      trustDomain: security.trustDomain,
      tcpFilters: rbacNetworkFilters(workloadPolicies(mesh.authorizationPolicies, mesh, proxy)),
    });
    const { clusters, endpoints, secrets } = buildClusters(mesh, registry, scope.services, security);
    // Istio's order: outbound clusters, BlackHoleCluster, PassthroughCluster, then the inbound ones.
    resources[TypeUrl.Cluster] = [...clusters, passthroughCluster(PASSTHROUGH_CLUSTER), ...inbound.clusters];
    resources[TypeUrl.ClusterLoadAssignment] = endpoints;
    resources[TypeUrl.Secret] = secrets;
    resources[TypeUrl.RouteConfiguration] = outbound.routes;
    listeners = [...outbound.listeners, ...inbound.listeners];
  }
  // Metrics and tracing go into every HTTP connection manager the listeners hold, whoever built them.
  const telemetry = buildTelemetry(mesh, registry, context, wasm.restrict(listeners), new Set(resources[TypeUrl.Cluster].map((cluster) => cluster.name)));
  resources[TypeUrl.Listener] = telemetry.listeners;
  resources[TypeUrl.Cluster].push(...telemetry.clusters);
  const moduleServer = wasm.moduleCluster ?? (telemetry.usesModules ? moduleCluster(context) : undefined);
  if (moduleServer) resources[TypeUrl.Cluster].push(moduleServer);
  resources[TypeUrl.ExtensionConfig] = [...telemetry.extensionConfigs, ...wasm.extensionConfigs];
  return applyEnvoyFilters(mesh, proxy, resources);
}

/** What a user should know about a proxy's translation that the resources do not say: the control plane logs these
 * and the status view (`skiff proxy-status`) shows them beside the proxy. */
export function translationNotes(mesh: MeshConfig, proxy: ProxyIdentity, context: Pick<TranslationContext, "workloadCertificates"> = {}): string[] {
  const notes: string[] = [];
  if (context.workloadCertificates === false) notes.push(...withoutCertificatesNotes(mesh, proxy));
  if (proxy.role === "gateway" && selectedGateways(mesh, proxy).length === 0) {
    const selectors = mesh.gateways.map((gateway) => `${gateway.namespace}/${gateway.name} selects ${labelText(gateway.spec.selector)}`);
    notes.push(
      `no Gateway selects labels ${labelText(proxy.labels)}, so this gateway gets no listeners` +
        (selectors.length > 0 ? ` (${selectors.join("; ")})` : " (the config has no Gateway)"),
    );
  }
  if (proxy.role === "gateway" && mesh.credentials) {
    for (const gateway of selectedGateways(mesh, proxy)) {
      for (const server of gateway.spec.servers) {
        const tls = server.tls;
        if (server.port.protocol !== "HTTPS" || !tls?.credentialName || kubernetesCredential(mesh, tls, proxy.namespace)) continue;
        notes.push(
          `Gateway ${gateway.namespace}/${gateway.name} port ${server.port.number}: no usable Secret ${tls.credentialName} in namespace ${proxy.namespace} ` +
            `(tls.crt and tls.key${tls.mode === "SIMPLE" ? "" : `, and ca.crt or a Secret ${tls.credentialName}-cacert`}), so this server is left out until it exists`,
        );
      }
    }
  }
  if (mesh.credentials) notes.push(...clientCredentialNotes(mesh, proxy));
  if (proxy.role === "sidecar") {
    const scope = sidecarScope(mesh, new Registry(mesh, proxy), proxy);
    if (scope.interception === "NONE" && !scope.sidecar?.spec.ingress?.length) {
      const policies = [
        ...workloadPolicies(mesh.authorizationPolicies, mesh, proxy),
        ...workloadPolicies(mesh.requestAuthentications, mesh, proxy),
        ...workloadPolicies(mesh.peerAuthentications, mesh, proxy),
      ];
      for (const policy of policies) {
        notes.push(
          `${policy.kind} ${policy.namespace}/${policy.name} applies to this workload's inbound traffic; this sidecar runs without traffic ` +
            "capture (INTERCEPTION_MODE NONE) and no Sidecar ingress port, so it has no inbound listener and the policy has no effect here",
        );
      }
    }
    if (scope.interception === "NONE" && scope.outboundTrafficPolicy === "ALLOW_ANY") {
      notes.push(
        "outboundTrafficPolicy is ALLOW_ANY, but this sidecar runs without traffic capture (INTERCEPTION_MODE NONE): " +
          "there is no original destination to pass requests for unknown hosts on to, so they get 502 as under REGISTRY_ONLY",
      );
    }
    for (const service of scope.interception === "NONE" ? scope.services : []) {
      if (service.entry.spec.resolution !== "NONE") continue;
      notes.push(
        `${service.host} (ServiceEntry ${service.entry.namespace}/${service.entry.name}) has resolution NONE: traffic goes on to the address the application dialed, ` +
          "which only a sidecar that captures traffic knows; this sidecar runs without capture (INTERCEPTION_MODE NONE), so it gets no listener for it",
      );
    }
  }
  return notes;
}

/** From Kubernetes: the clusters whose DestinationRule names a `credentialName` this proxy cannot use (another
 * namespace's Secret, or one missing or incomplete), which refuse their traffic (upstream-tls.ts). */
function clientCredentialNotes(mesh: MeshConfig, proxy: ProxyIdentity): string[] {
  const registry = new Registry(mesh, proxy);
  const services = proxy.role === "gateway" ? gatewayServices(registry, gatewayVirtualServices(mesh, proxy)) : sidecarScope(mesh, registry, proxy).services;
  const notes = new Set<string>();
  for (const service of services) {
    const rule = registry.destinationRule(service);
    // Without a workloadSelector, sidecars ignore a credentialName (cluster_tls.go; warnings.ts says so).
    if (!rule || (proxy.role === "sidecar" && !rule.spec.workloadSelector)) continue;
    for (const port of service.entry.spec.ports) {
      for (const subset of [undefined, ...(rule.spec.subsets ?? [])]) {
        const tls = policyForPort(rule.spec.trafficPolicy, subset?.trafficPolicy, port.number)?.tls;
        if (!tls?.credentialName || (tls.mode !== "SIMPLE" && tls.mode !== "MUTUAL")) continue;
        const found = clientCredential(mesh, tls, proxy.namespace);
        if ("problem" in found) notes.add(`DestinationRule ${rule.namespace}/${rule.name} for ${service.host}: ${found.problem}, so its clusters fail every request (503)`);
      }
    }
  }
  return [...notes];
}

/** Where mutual TLS is required but the proxy has no workload certificate (a control plane in --plaintext mode):
 * STRICT inbound ports refuse every connection, ISTIO_MUTUAL clusters every request. */
function withoutCertificatesNotes(mesh: MeshConfig, proxy: ProxyIdentity): string[] {
  const notes: string[] = [];
  const why = "this proxy has no workload certificate (the control plane runs with --plaintext, without a CA)";
  const registry = new Registry(mesh, proxy);
  if (proxy.role === "sidecar") {
    const mtls = inboundMtls(mesh, proxy);
    const decided = mtls.policies.map((policy) => `PeerAuthentication ${policy.namespace}/${policy.name}`).join(", ");
    const strictPorts = registry.instancesOf(proxy.ips).map((instance) => instance.targetPort).filter((port) => modeForPort(mtls, port) === "STRICT");
    if (mtls.mode === "STRICT" || strictPorts.length > 0) {
      const ports = [...new Set(strictPorts)].sort((a, b) => a - b);
      notes.push(`mutual TLS is STRICT (${decided}) ${ports.length > 0 ? `on port(s) ${ports.join(", ")}` : "for this workload"}, but ${why}: those connections are refused, never accepted in plain text`);
    }
  }
  const services = proxy.role === "gateway" ? gatewayServices(registry, gatewayVirtualServices(mesh, proxy)) : sidecarScope(mesh, registry, proxy).services;
  for (const service of services) {
    const rule = registry.destinationRule(service);
    const modes = [rule?.spec.trafficPolicy?.tls?.mode, ...(rule?.spec.subsets ?? []).map((subset) => subset.trafficPolicy?.tls?.mode)];
    if (!modes.includes("ISTIO_MUTUAL")) continue;
    notes.push(`DestinationRule ${rule!.namespace}/${rule!.name} asks for ISTIO_MUTUAL to ${service.host}, but ${why}: its clusters fail every request (503) rather than send plain text`);
  }
  return notes;
}

function labelText(labels: Record<string, string>): string {
  return `{${Object.entries(labels).map(([key, value]) => `${key}=${value}`).join(",")}}`;
}
