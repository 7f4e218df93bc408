// The translation cases the golden and envoy-validate tests share: fixture folders and the proxies they are
// translated for, and the context the control plane would pass.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { wasmModulePath } from "../../control/sources/index.js";
import { type ProxyIdentity, type ProxyResources, type TranslationContext, TypeUrl } from "../../control/resources.js";

const gateway: ProxyIdentity = { nodeId: "ingress", role: "gateway", labels: { istio: "ingressgateway" }, namespace: "default", ips: [] };
// Sidecars without capture (INTERCEPTION_MODE NONE): the loopback layout, listeners on 127.0.0.1 per service port.
export const webapp: ProxyIdentity = { nodeId: "webapp", role: "sidecar", labels: { app: "webapp" }, namespace: "default", ips: [], interceptionMode: "NONE" };
const simpleWeb: ProxyIdentity = { nodeId: "simple-web", role: "sidecar", labels: { app: "simple-web" }, namespace: "istioinaction", ips: [], interceptionMode: "NONE" };

/** A sidecar in a pod with capture (REDIRECT, Istio's default): the webapp pod at 198.18.0.2. */
export const capturedWebapp: ProxyIdentity = { nodeId: "webapp-pod", role: "sidecar", labels: { app: "webapp" }, namespace: "default", ips: ["198.18.0.2"], interceptionMode: "REDIRECT" };
// The shop's workloads in pods with capture, so that both sides (inbound, outbound) carry telemetry.
const shopWebapp: ProxyIdentity = { nodeId: "webapp", role: "sidecar", labels: { app: "webapp", version: "v1" }, namespace: "shop", ips: ["198.18.0.4"], interceptionMode: "REDIRECT" };
const shopCatalog: ProxyIdentity = { nodeId: "catalog", role: "sidecar", labels: { app: "catalog", version: "v1" }, namespace: "shop", ips: ["198.18.0.5"], interceptionMode: "REDIRECT" };

/** The reviews workload of `mesh-mtls`: PeerAuthentication, DestinationRule tls and auto-mTLS as it sees them. */
const capturedReviews: ProxyIdentity = { nodeId: "reviews-pod", role: "sidecar", labels: { app: "reviews" }, namespace: "shop", serviceAccount: "reviews", ips: ["198.18.0.5"], interceptionMode: "REDIRECT" };

export const CASES: Array<[fixture: string, proxy: ProxyIdentity]> = [
  ["locality", { ...capturedWebapp, locality: { region: "r1", zone: "z1", subZone: "s1" } }],
  ["sidecar-capture", capturedWebapp],
  ["mesh-mtls", capturedReviews],
  ["upstream-tls-levels", shopWebapp],
  ["gateway-hosts", gateway],
  ["gateway-l4", gateway],
  ["mesh-routing", webapp],
  ["wasm-plugins", gateway],
  ["wasm-plugins", webapp],
  ["envoyfilter-merge", simpleWeb],
  ["envoyfilter-listeners", gateway],
  ["envoyfilter-routes", gateway],
  ["envoyfilter-routes", { ...webapp, namespace: "shop" }],
  ["envoyfilter-clusters", { ...webapp, namespace: "shop" }],
  ["traffic-extensions", gateway],
  ["override-host", webapp],
  ["telemetry", gateway],
  ["telemetry", shopWebapp],
  ["telemetry", shopCatalog],
  ["locality-fields", { ...webapp, namespace: "shop", labels: { app: "webapp", tier: "web" }, locality: { region: "us-east", zone: "us-east-1a", subZone: "rack1" } }],
  ["locality-distribute", { ...webapp, namespace: "shop", locality: { region: "us-east", zone: "us-east-1a", subZone: "rack1" } }],
  ["extension-fields", { ...gateway, namespace: "shop", labels: { istio: "ingressgateway", "gateway.networking.k8s.io/gateway-name": "edge" } }],
  ["sidecar-resource", { ...capturedWebapp, ips: ["198.18.0.2"] }],
  ["sidecar-resource", { ...capturedWebapp, nodeId: "other", labels: { app: "other" }, ips: ["198.18.0.3"] }],
  ["route-features", { ...webapp, namespace: "shop" }],
  ["destination-policies", { ...webapp, namespace: "shop" }],
  ["service-entries", { ...webapp, namespace: "shop", ips: ["198.18.0.2"] }],
  ["security-policies", { ...gateway, namespace: "istio-system" }],
  ["envoyfilter-matches", { ...gateway, namespace: "shop", labels: { istio: "ingressgateway", "gateway.networking.k8s.io/gateway-name": "edge" } }],
];

/** What the control plane would pass: modules served from 127.0.0.1:15080 as /modules/<sha256>.wasm, and for a
 * RequestAuthentication `jwksUri` the key set it fetched (one fixed set for every https URL ending in /jwks.json). */
export function testContext(dir: string, proxy: ProxyIdentity): TranslationContext {
  return {
    proxy,
    moduleCluster: { name: "skiff-modules", host: "127.0.0.1", port: 15080 },
    module(url) {
      const path = wasmModulePath(dir, url);
      if (!existsSync(path)) return undefined;
      const bytes = readFileSync(path);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      return { uri: `http://127.0.0.1:15080/modules/${sha256}.wasm`, sha256, size: bytes.length };
    },
    // A stand-in: the goldens do not change each time the istio-stats filter is rebuilt.
    statsModule: { uri: `http://127.0.0.1:15080/modules/${"0".repeat(64)}.wasm`, sha256: "0".repeat(64), size: 1 },
    jwks: (uri) => (/^https:\/\/.*\/jwks\.json$/.test(uri) ? FETCHED_JWKS : undefined),
  };
}

const FETCHED_JWKS = '{"keys":[{"kty":"RSA","n":"x2JYmUcNavONqSA0-kRX59ifVCbi-ZWuzfn6OuCLUZBh0lnPlkycr9vDsBQElFLKpAOKQSppPKdPuvoX9KSqv22qkCEy0GgMOKNvhRwVeCanpdsMq0fUfiEIUTr8iWfiIR6AjenP8i3CX7wS71gmWjp1inBJaYXSWapkt4GRZk0","e":"AQAB","kid":"fetched","alg":"RS256"}]}';

/** Resources by type, under readable names, each list in the order translate() returns it. */
export function readable(resources: ProxyResources): Record<string, unknown[]> {
  return {
    clusters: resources[TypeUrl.Cluster].map((r) => r.body),
    endpoints: resources[TypeUrl.ClusterLoadAssignment].map((r) => r.body),
    extension_configs: resources[TypeUrl.ExtensionConfig].map((r) => r.body),
    secrets: resources[TypeUrl.Secret].map((r) => r.body),
    listeners: resources[TypeUrl.Listener].map((r) => r.body),
    routes: resources[TypeUrl.RouteConfiguration].map((r) => r.body),
  };
}
