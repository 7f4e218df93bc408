// The Istio resources Skiff reads, as zod schemas, one file per kind. Objects are strict: a field Skiff does not
// implement is an error naming that field, rather than configuration that silently does nothing. Field names and
// meanings follow Istio's API reference (istio.io/latest/docs/reference/config/networking/ and
// .../proxy/extensions/wasm-plugin/).
import { z } from "zod";
import { metadata } from "./common.js";
import { destinationRuleSpec } from "./destination-rule.js";
import { envoyFilterSpec } from "./envoy-filter.js";
import { gatewaySpec } from "./gateway.js";
import { serviceEntrySpec, workloadEntrySpec } from "./service-entry.js";
import { sidecarSpec } from "./sidecar.js";
import { trafficExtensionSpec } from "./traffic-extension.js";
import { telemetrySpec } from "./telemetry.js";
import { virtualServiceSpec } from "./virtual-service.js";
import { wasmPluginSpec } from "./wasm-plugin.js";
import { authorizationPolicySpec } from "./authorization-policy.js";
import { requestAuthenticationSpec } from "./request-authentication.js";
import { peerAuthenticationSpec } from "./peer-authentication.js";

export * from "./annotations.js";
export * from "./common.js";
export * from "./destination-rule.js";
export * from "./envoy-filter.js";
export * from "./gateway.js";
export * from "./mesh-config.js";
export * from "./service-entry.js";
export * from "./sidecar.js";
export * from "./traffic-extension.js";
export * from "./telemetry.js";
export * from "./virtual-service.js";
export * from "./wasm-plugin.js";
export * from "./authorization-policy.js";
export * from "./request-authentication.js";
export * from "./peer-authentication.js";

export const KINDS = {
  Gateway: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: gatewaySpec },
  VirtualService: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: virtualServiceSpec },
  DestinationRule: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: destinationRuleSpec },
  ServiceEntry: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: serviceEntrySpec },
  WorkloadEntry: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: workloadEntrySpec },
  Sidecar: { group: "networking.istio.io", versions: ["v1alpha3", "v1beta1", "v1"], spec: sidecarSpec },
  EnvoyFilter: { group: "networking.istio.io", versions: ["v1alpha3"], spec: envoyFilterSpec },
  WasmPlugin: { group: "extensions.istio.io", versions: ["v1alpha1"], spec: wasmPluginSpec },
  AuthorizationPolicy: { group: "security.istio.io", versions: ["v1beta1", "v1"], spec: authorizationPolicySpec },
  RequestAuthentication: { group: "security.istio.io", versions: ["v1beta1", "v1"], spec: requestAuthenticationSpec },
  TrafficExtension: { group: "extensions.istio.io", versions: ["v1alpha1"], spec: trafficExtensionSpec },
  PeerAuthentication: { group: "security.istio.io", versions: ["v1beta1", "v1"], spec: peerAuthenticationSpec },
  Telemetry: { group: "telemetry.istio.io", versions: ["v1alpha1", "v1"], spec: telemetrySpec },
} as const;

export type Kind = keyof typeof KINDS;

export const resourceEnvelope = z.looseObject({
  apiVersion: z.string(),
  kind: z.string(),
  metadata,
  spec: z.unknown(),
});
