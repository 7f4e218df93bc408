// Fields the guard (fields.test.ts) accepts without a golden fixture that shows their effect:
//
// - SHOWN_BY_TEST: the effect is real but changing one field of a fixture cannot show it (a certificate path must
//   name a file that exists, an enum whose every other value is refused in that place, a filter order that needs
//   two resources...). The entry names the test that shows it, as `file: test title`; the guard checks that the
//   test exists. Prefer a golden where one can show it.
// - INFORMATIONAL: the field changes nothing in the generated Envoy configuration, with the reason (and, where
//   Skiff tells the user so, where: a warning or a refusal).
//
// A field listed here that a golden shows an effect of fails the guard: the lists stay true.
import { GRPC_STATUS } from "../../control/sources/schema/index.js";

export const SHOWN_BY_TEST: Record<string, string> = {
  // Gateway TLS: the files must exist, so a changed path is refused at load.
  "Gateway.spec.servers[].tls.serverCertificate": "test/scenarios/https-gateway.test.ts: presents each host's certificate by SNI and routes to its service",
  "Gateway.spec.servers[].tls.privateKey": "test/scenarios/https-gateway.test.ts: presents each host's certificate by SNI and routes to its service",
  "Gateway.spec.servers[].tls.credentialName": "test/scenarios/https-gateway.test.ts: presents each host's certificate by SNI and routes to its service",
  "Gateway.spec.servers[].tls.caCertificates": "test/scenarios/https-gateway.test.ts: requires a client certificate from the CA where the server is MUTUAL",
  "Gateway.spec.servers[].tls.mode=SIMPLE": "test/scenarios/https-gateway.test.ts: presents each host's certificate by SNI and routes to its service",
  "Gateway.spec.servers[].tls.mode=OPTIONAL_MUTUAL": "test/scenarios/https-gateway.test.ts: OPTIONAL_MUTUAL lets clients without a certificate in and refuses a certificate from an unknown CA",
  // DestinationRule client TLS: the files must exist (a changed path is refused at load), and deleting one is refused
  // or, beside insecureSkipVerify, changes nothing; each is shown at each level against real TLS servers.
  "DestinationRule.spec.trafficPolicy.tls.caCertificates": "test/scenarios/tls-origination.test.ts: the rule's tls: mutual TLS with the client certificate from files, or from its credentialName folder",
  "DestinationRule.spec.trafficPolicy.tls.clientCertificate": "test/scenarios/tls-origination.test.ts: the rule's tls: mutual TLS with the client certificate from files, or from its credentialName folder",
  "DestinationRule.spec.trafficPolicy.tls.privateKey": "test/scenarios/tls-origination.test.ts: the rule's tls: mutual TLS with the client certificate from files, or from its credentialName folder",
  "DestinationRule.spec.trafficPolicy.tls.credentialName": "test/scenarios/tls-origination.test.ts: the rule's tls: mutual TLS with the client certificate from files, or from its credentialName folder",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[].tls.caCertificates": "test/scenarios/tls-origination.test.ts: a port's tls replaces the rule's: files with its own SNI and SAN on one port, a credentialName on the other",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[].tls.clientCertificate": "test/scenarios/tls-origination.test.ts: a port's tls replaces the rule's: files with its own SNI and SAN on one port, a credentialName on the other",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[].tls.privateKey": "test/scenarios/tls-origination.test.ts: a port's tls replaces the rule's: files with its own SNI and SAN on one port, a credentialName on the other",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[].tls.credentialName": "test/scenarios/tls-origination.test.ts: a port's tls replaces the rule's: files with its own SNI and SAN on one port, a credentialName on the other",
  "DestinationRule.spec.subsets[].trafficPolicy.tls.caCertificates": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.tls.clientCertificate": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.tls.privateKey": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.tls.credentialName": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[].tls.caCertificates": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[].tls.clientCertificate": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[].tls.privateKey": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[].tls.credentialName": "test/scenarios/tls-origination.test.ts: a subset's tls, and a subset port's, replace the rule's for the routes to that subset",
  // WasmPlugin: a changed url names no module file.
  "WasmPlugin.spec.url": "test/scenarios/wasm-plugins.test.ts: fetches a rebuilt module by its new sha256 and keeps answering",
  "TrafficExtension.spec.wasm.url": "test/scenarios/traffic-extensions.test.ts: runs the Wasm extension (by ECDS, with its pluginConfig), the Lua one and the WasmPlugin",
  // The registry of this scenario requires the credentials the pull secret names.
  "WasmPlugin.spec.imagePullSecret": "test/scenarios/oci-wasm-plugins.test.ts: starts with the image missing: FAIL_OPEN serves requests, then the pushed image takes effect",
  // EnvoyFilter (control/translate/envoyfilter): what takes two filters, or another proxy, to show.
  "EnvoyFilter.spec.priority": "test/translate/envoyfilter.test.ts: priority, then the root namespace's first, then name.namespace; patches in the order written",
  "EnvoyFilter.spec.targetRefs[].group": "test/translate/envoyfilter.test.ts: targetRefs: only the Gateway API gateway of that name in the filter's namespace",
  "EnvoyFilter.spec.targetRefs[].kind": "test/translate/envoyfilter.test.ts: targetRefs: only the Gateway API gateway of that name in the filter's namespace",
  "EnvoyFilter.spec.configPatches[].applyTo=CLUSTER": "test/translate/envoyfilter.test.ts: INSERT_* on clusters is ADD, and an ADD in context ANY lands once on a sidecar",
  "EnvoyFilter.spec.configPatches[].match.context=ANY": "test/translate/envoyfilter.test.ts: INSERT_* on clusters is ADD, and an ADD in context ANY lands once on a sidecar",
  "EnvoyFilter.spec.configPatches[].match.context=SIDECAR_INBOUND": "test/translate/envoyfilter.test.ts: INSERT_* on clusters is ADD, and an ADD in context ANY lands once on a sidecar",
  // Locality weights must add up to 100, so no one weight can change alone; every localityLbSetting is one schema
  // and one translation (locality.ts), whose weights this test shows (the locality fixtures show the rest).
  "DestinationRule.spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[].to.*": "test/translate/locality.test.ts: weighs localities for proxies in `from`, and leaves out localities no `to` names",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[].loadBalancer.localityLbSetting.distribute[].to.*": "test/translate/locality.test.ts: weighs localities for proxies in `from`, and leaves out localities no `to` names",
  "DestinationRule.spec.subsets[].trafficPolicy.loadBalancer.localityLbSetting.distribute[].to.*": "test/translate/locality.test.ts: weighs localities for proxies in `from`, and leaves out localities no `to` names",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[].loadBalancer.localityLbSetting.distribute[].to.*": "test/translate/locality.test.ts: weighs localities for proxies in `from`, and leaves out localities no `to` names",
  "MeshConfig.localityLbSetting.distribute[].to.*": "test/translate/locality.test.ts: weighs localities for proxies in `from`, and leaves out localities no `to` names",
  // tcp and tls route weights must add up to 100, so no one weight can change alone.
  "VirtualService.spec.tcp[].route[].weight": "test/scenarios/tcp-tls.test.ts: splits TCP connections by the tcp route's weights (80/20), for a protocol where the server speaks first",
  "VirtualService.spec.tls[].route[].weight": "test/translate/golden/sidecar-resource.webapp-pod.json: \"weight\": 70",
  "MeshConfig.rootNamespace": "test/translate/envoyfilter.test.ts: the root namespace is meshconfig.yaml's rootNamespace",
  "MeshConfig.outboundTrafficPolicy.mode=ALLOW_ANY": "test/translate/sidecar-semantics.test.ts: ALLOW_ANY (Istio's default) passes unknown hosts and ports through to where they were going",
  "MeshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY": "test/translate/sidecar-semantics.test.ts: REGISTRY_ONLY in meshconfig.yaml refuses them: 502 for HTTP, the blackhole for the rest",
  // REMOVE takes no value, and every other operation needs one: its golden shows it (listener 127.0.0.1_8081 gone).
  "EnvoyFilter.spec.configPatches[].patch.operation=REMOVE": "test/translate/fixtures/envoyfilter-listeners/filters.yaml: patch: { operation: REMOVE }",
  // Provider names: renaming one in a fixture leaves its references naming no provider, which is refused.
  "MeshConfig.extensionProviders[].name": "test/translate/telemetry.test.ts: a provider name picks among meshconfig's extensionProviders (defaultProviders and Telemetry alike), case aside",
  "Telemetry.spec.tracing[].providers[].name": "test/translate/telemetry.test.ts: a provider name picks among meshconfig's extensionProviders (defaultProviders and Telemetry alike), case aside",
  "Telemetry.spec.metrics[].providers[].name": "test/translate/telemetry.test.ts: metrics providers by name: a Telemetry naming prometheus turns Istio's metrics on where defaultProviders.metrics is empty",
  // The one operation accepted, and required (Istio's default, UPSERT, is refused): no other value to try.
  "Telemetry.spec.metrics[].overrides[].tagOverrides.*.operation": "test/translate/telemetry.test.ts: tagOverrides REMOVE: the labels each metric goes without, per side, in the istio-stats configuration",
  // gRPC status names: a table, shown value by value in one test (UNAVAILABLE also in the route-features golden).
  ...Object.fromEntries(
    GRPC_STATUS.filter((status) => status !== "UNAVAILABLE").map((status) => [`VirtualService.spec.http[].fault.abort.grpcStatus=${status}`, "test/translate/traffic-api.test.ts: fault.abort.grpcStatus: every gRPC status name aborts with its code"]),
  ),
};

export const INFORMATIONAL: Record<string, string> = {
  "ServiceEntry.spec.endpoints[].network":
    "picks the east-west gateway of another network (meshNetworks); with one network Istio ignores it too, and skiff validate warns that it has no effect",
  "WorkloadEntry.spec.network":
    "picks the east-west gateway of another network (meshNetworks); with one network Istio ignores it too, and skiff validate warns that it has no effect",
  "Sidecar.spec.egress[].port.name": "names the port for people: istiod builds the listener, its routes and clusters from the number and protocol, so the name changes no configuration",
  "Sidecar.spec.ingress[].port.name": "names the port for people: istiod builds the inbound chain and cluster from the number and protocol, so the name changes no configuration",
  "Gateway.spec.servers[].name": "Istio uses it only in stat prefixes for the server; Skiff makes no per-server statistics",
  "Gateway.spec.servers[].port.protocol=HTTP2":
    "the same listener as HTTP: the gateway's HTTP connection manager speaks HTTP/1.1 and HTTP/2 alike (codec AUTO), as Istio's does",
  "Gateway.spec.servers[].tls.mode=PASSTHROUGH":
    "the zero value of the enum, which Istio writes beside httpsRedirect on plain HTTP servers; refused on HTTPS servers (TLS passthrough is not implemented)",
  "Gateway.spec.servers[].tls.mode=ISTIO_MUTUAL": "refused at load on every server (checkGatewayTls): it needs the mesh's own CA on the gateway",
  "WasmPlugin.spec.sha256": "checked against the module file at load (a mismatch is refused); the Wasm config pins the module by the sha256 of the file itself",
  "WasmPlugin.spec.type=HTTP": "the only type: every WasmPlugin is an HTTP filter",
  "WasmPlugin.spec.type=UNSPECIFIED_PLUGIN_TYPE": "means HTTP, as in Istio; HTTP is the only type implemented (NETWORK is refused at load)",
  "TrafficExtension.spec.wasm.type=HTTP": "the only type implemented (NETWORK is refused at load): every Wasm TrafficExtension is an HTTP filter",
  "TrafficExtension.spec.wasm.type=UNSPECIFIED_PLUGIN_TYPE": "means HTTP, as in Istio; HTTP is the only type implemented (NETWORK is refused at load)",
  "TrafficExtension.spec.wasm.sha256": "checked against the module file at load (a mismatch is refused); the Wasm config pins the module by the sha256 of the file itself",
  "TrafficExtension.spec.wasm.imagePullSecret":
    "credentials for pulling an oci:// module, not part of the Envoy configuration; the same field and pull as WasmPlugin.spec.imagePullSecret (wasmModuleFields, shown by test/scenarios/oci-wasm-plugins.test.ts)",
  "TrafficExtension.spec.targetRefs[].group": "the one value the schema accepts, and required (gateway.networking.k8s.io: Skiff has no waypoints to target); the name picks the gateway (extension-fields golden)",
  "TrafficExtension.spec.targetRefs[].kind": "the one value the schema accepts, and required (Gateway: Skiff has no waypoints to target); the name picks the gateway (extension-fields golden)",
  "TrafficExtension.spec.targetRefs[].namespace": "must be the TrafficExtension's own namespace (refused otherwise, as Istio's CRD refuses cross-namespace references), so writing it changes nothing",
  "AuthorizationPolicy.spec.action=CUSTOM": "refused at load: an external authorizer (ext_authz) is not supported",
  "AuthorizationPolicy.spec.provider.name": "refused at load: it names the external authorizer of action CUSTOM, which is not supported",
  "RequestAuthentication.spec.jwtRules[].timeout":
    "bounds Envoy's fetch of a remote key set; the control plane fetches jwksUri itself and inlines the keys (as istiod does by default), so Envoy fetches nothing",
  "EnvoyFilter.spec.targetRefs[].namespace": "must be the EnvoyFilter's own namespace (refused otherwise, as Istio matches nothing then), so writing it changes nothing",
  "MeshConfig.enableTracing":
    "istiod reads it only for a proxy no tracing provider reaches (no Telemetry tracing, no defaultProviders.tracing), to trace with the bootstrap's tracer (proxyConfig.tracing), which Skiff's bootstrap does not have; skiff validate warns when it is false while a provider applies (istiod traces regardless) and when it is true with no provider named (test/translate/telemetry.test.ts)",
  "EnvoyFilter.spec.configPatches[].applyTo=BOOTSTRAP": "refused at load: Skiff's bootstrap comes from skiff bootstrap, not from the control plane",
};

/** Fields that landed before the guard without the evidence it asks for, by the engineer who owes it (a golden where
 * the field changes the output, or a SHOWN_BY_TEST / INFORMATIONAL entry). The guard lets these through and prints
 * them; it refuses any other field without evidence, so the list only shrinks. Remove an entry with its evidence. */
export const OWED: Record<string, string> = {
};
