// The workload a proxy or an endpoint stands for, as Istio's metrics and traces name it. Kept free of translation
// code: `skiff bootstrap` names the proxy's service cluster with it.
import type { ProxyIdentity } from "../resources.js";

/** A workload's name from its app and version, as a Deployment `<app>-<version>` is usually named; proxies and
 * endpoints are named alike, so the metrics of both sides of a request agree. */
export function workloadName(app: string, version: string | undefined): string {
  return version ? `${app}-${version}` : app;
}

/** The name, labels and namespace the metrics and spans give a proxy (istio-stats' configuration). */
export function workloadOf(proxy: ProxyIdentity): { workload: string; namespace: string; app: string; version: string } {
  const app = proxy.labels["service.istio.io/canonical-name"] ?? proxy.labels.app ?? (proxy.labels.istio ? `istio-${proxy.labels.istio}` : proxy.nodeId);
  const version = proxy.labels["service.istio.io/canonical-revision"] ?? proxy.labels.version ?? "unknown";
  return { workload: workloadName(app, proxy.labels.version), namespace: proxy.namespace, app, version };
}
