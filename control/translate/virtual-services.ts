// The VirtualServices a proxy sees (Istio's SidecarScope / VirtualServicesForGateway): those exported to the
// proxy's namespace (`exportTo` unset or "*", "." for their own namespace, or the namespace named).
import type { MeshConfig } from "../sources/index.js";
import type { VirtualService } from "../sources/model.js";
import type { ProxyIdentity } from "../resources.js";
import { visibleIn } from "./hosts.js";

/** Without a proxy (mesh-wide checks), every VirtualService. */
export function visibleVirtualServices(mesh: MeshConfig, proxy: ProxyIdentity | undefined): VirtualService[] {
  return mesh.virtualServices.filter((vs) => !proxy || visibleIn(vs.spec.exportTo, vs.namespace, proxy.namespace));
}
