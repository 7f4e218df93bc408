// Resources that install a mesh rather than configure it, found in a config folder because users keep them beside
// their Istio YAML (the book does): an `IstioOperator` (install.istio.io) and the gateway `Deployment`s whose proxy
// Istio injects (`inject.istio.io/templates: gateway`, or `sidecar.istio.io/inject: "true"`). Skiff does not run
// workloads; it says what they are and which Skiff command plays their part.
import type { InstallationResource } from "./model.js";

interface Envelope {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: unknown;
}

type Json = Record<string, any>; // Kubernetes and IstioOperator YAML, read loosely: only the fields named here matter.

/** The installation resource `envelope` is, or undefined when it is something else. */
export function installationResource(file: string, envelope: Envelope): InstallationResource | undefined {
  const { apiVersion, kind, metadata } = envelope;
  const spec = (envelope.spec ?? {}) as Json;
  const base = { file, kind, namespace: metadata.namespace, name: metadata.name };
  if (kind === "IstioOperator" && apiVersion.startsWith("install.istio.io/")) {
    const gateways = [...(spec.components?.ingressGateways ?? []), ...(spec.components?.egressGateways ?? [])] as Json[];
    const commands = gateways
      .filter((gateway) => gateway.enabled !== false && gateway.name)
      .map((gateway) => bootstrapCommand(gateway.name, "gateway", gateway.namespace ?? metadata.namespace, gateway.label ?? { istio: gateway.name }));
    return {
      ...base,
      what: "installs Istio (istiod and its gateways)",
      equivalent: ["`skiff control-plane --config <this folder>` for istiod", ...commands.map((command) => `\`${command}\` and an Envoy on it for each enabled gateway`)].join("; "),
    };
  }
  if (kind === "Deployment" && apiVersion === "apps/v1") {
    const template = (spec.template ?? {}) as Json;
    const annotations = (template.metadata?.annotations ?? {}) as Record<string, string>;
    const injected = annotations["sidecar.istio.io/inject"] === "true" || annotations["inject.istio.io/templates"] !== undefined;
    if (!injected) return undefined;
    const role = annotations["inject.istio.io/templates"] === "gateway" ? "gateway" : "sidecar";
    const labels = (template.metadata?.labels ?? spec.selector?.matchLabels ?? {}) as Record<string, string>;
    return {
      ...base,
      what: role === "gateway" ? "is a gateway whose Envoy Istio injects" : "is a workload whose sidecar Istio injects",
      equivalent: `\`${bootstrapCommand(metadata.name, role, metadata.namespace, labels)}\` and an Envoy on it`,
    };
  }
  return undefined;
}

function bootstrapCommand(node: string, role: "gateway" | "sidecar", namespace: string, labels: Record<string, string>): string {
  const flags = Object.entries(labels).map(([key, value]) => ` --label ${key}=${value}`);
  return `skiff bootstrap --node ${node} --role ${role} --namespace ${namespace}${flags.join("")}`;
}
