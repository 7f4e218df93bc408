// What one proxy is given of the mesh, as istiod scopes it (pilot/pkg/model/sidecar.go, push_context.go):
// - a sidecar: the Sidecar resource that selects it (its namespace's with a matching workloadSelector, else its
//   namespace's without one, else the root namespace's), whose egress listeners import services and VirtualServices
//   by `namespace/host`, or everything when none applies; its outboundTrafficPolicy and interception mode;
// - a gateway: only the services its bound VirtualServices route to (PILOT_FILTER_GATEWAY_CLUSTER_CONFIG).
import type { MeshConfig } from "../sources/index.js";
import type { Sidecar, VirtualService, OutboundTrafficPolicy } from "../sources/model.js";
import type { Destination, SidecarSpec } from "../sources/schema/index.js";
import type { ProxyIdentity } from "../resources.js";
import { hostSubsetOf } from "./hosts.js";
import type { Registry, Service } from "./registry.js";
import { visibleVirtualServices } from "./virtual-services.js";

type EgressSpec = NonNullable<SidecarSpec["egress"]>[number];
type CaptureMode = EgressSpec["captureMode"];

/** One egress listener of a sidecar: the services and VirtualServices it imports. A listener with a `port` serves
 * only that port (of the services that have it); the catch-all one serves every other port. */
export interface EgressListener {
  port?: { number: number; protocol: string; name?: string };
  bind?: string;
  captureMode?: CaptureMode;
  services: Service[];
  virtualServices: VirtualService[];
}

export interface SidecarScope {
  /** The Sidecar resource in effect, if any. */
  sidecar?: Sidecar;
  egress: EgressListener[];
  /** Every service the proxy gets clusters for: those the egress listeners import, and the destinations of the
   * VirtualServices they import (Istio's collectImportedServices). */
  services: Service[];
  outboundTrafficPolicy: OutboundTrafficPolicy;
  /** NONE: no capture, so listeners bind the ports they serve and there is no virtual inbound/outbound listener. */
  interception: "REDIRECT" | "NONE";
}

/** VirtualServices that apply to a sidecar: exported to its namespace and bound to `mesh`, explicitly or by leaving
 * `gateways` out. */
export function meshVirtualServices(mesh: MeshConfig, registry: Registry, proxy: ProxyIdentity): VirtualService[] {
  return visibleVirtualServices(mesh, registry, proxy).filter((vs) => (vs.spec.gateways ?? ["mesh"]).includes("mesh"));
}

/** The Sidecar resource that applies to a proxy (istiod's getSidecarScope): one of its namespace with a
 * workloadSelector its labels satisfy (the first in file order), else its namespace's without a selector, else the
 * root namespace's without a selector. Gateways take none. */
export function selectSidecar(mesh: MeshConfig, proxy: ProxyIdentity): Sidecar | undefined {
  if (proxy.role === "gateway") return undefined;
  const inNamespace = mesh.sidecars.filter((sidecar) => sidecar.namespace === proxy.namespace);
  return (
    inNamespace.find((sidecar) => sidecar.spec.workloadSelector && Object.entries(sidecar.spec.workloadSelector.labels).every(([k, v]) => proxy.labels[k] === v)) ??
    inNamespace.find((sidecar) => !sidecar.spec.workloadSelector) ??
    mesh.sidecars.find((sidecar) => sidecar.namespace === mesh.rootNamespace && !sidecar.spec.workloadSelector)
  );
}

export function sidecarScope(mesh: MeshConfig, registry: Registry, proxy: ProxyIdentity): SidecarScope {
  const sidecar = selectSidecar(mesh, proxy);
  const egressSpecs: EgressSpec[] = sidecar?.spec.egress ?? [{ hosts: ["*/*"] }];
  const meshServices = meshVirtualServices(mesh, registry, proxy);
  const egress = egressSpecs.map((spec): EgressListener => {
    const imports = new HostImports(spec.hosts, proxy.namespace, registry);
    const services = registry
      .services()
      .filter((service) => imports.importsService(service))
      .filter((service) => !spec.port || service.entry.spec.ports.some((port) => port.number === spec.port!.number));
    return {
      ...(spec.port ? { port: spec.port } : {}),
      ...(spec.bind ? { bind: spec.bind } : {}),
      ...(spec.captureMode ? { captureMode: spec.captureMode } : {}),
      services,
      virtualServices: meshServices.filter((vs) => imports.importsVirtualService(vs)),
    };
  });
  const services = new Map<string, Service>();
  for (const listener of egress) for (const service of listener.services) services.set(service.host, service);
  for (const listener of egress) {
    for (const vs of listener.virtualServices) {
      for (const destination of destinationsOf(vs)) {
        const service = registry.lookup(destination.host, vs.namespace);
        if (service && !services.has(service.host)) services.set(service.host, service);
      }
    }
  }
  return {
    ...(sidecar ? { sidecar } : {}),
    egress,
    // In the registry's order, so that output does not depend on how the services were found.
    services: registry.services().filter((service) => services.has(service.host)),
    outboundTrafficPolicy: sidecar?.spec.outboundTrafficPolicy?.mode ?? mesh.outboundTrafficPolicy,
    interception: proxy.interceptionMode === "NONE" ? "NONE" : "REDIRECT",
  };
}

/** The services a gateway gets clusters for: those the VirtualServices bound to its Gateways route, mirror or
 * forward to (Istio's PILOT_FILTER_GATEWAY_CLUSTER_CONFIG, which the book recommends; Skiff always does it). */
export function gatewayServices(registry: Registry, boundVirtualServices: VirtualService[]): Service[] {
  const hosts = new Set<string>();
  for (const vs of boundVirtualServices) {
    for (const destination of destinationsOf(vs)) {
      const service = registry.lookup(destination.host, vs.namespace);
      if (service) hosts.add(service.host);
    }
  }
  return registry.services().filter((service) => hosts.has(service.host));
}

/** Every destination of a VirtualService: http routes and mirrors, tls and tcp routes (Istio's
 * virtualServiceDestinations). */
export function destinationsOf(vs: VirtualService): Destination[] {
  return [
    ...vs.spec.http.flatMap((http) => [
      ...(http.route ?? []).map((route) => route.destination),
      ...(http.mirror ? [http.mirror] : []),
      ...(http.mirrors ?? []).map((mirror) => mirror.destination),
    ]),
    ...vs.spec.tls.flatMap((tls) => tls.route.map((route) => route.destination)),
    ...vs.spec.tcp.flatMap((tcp) => tcp.route.map((route) => route.destination)),
  ];
}

/** An egress listener's `hosts`: `namespace/dnsName` entries, `.` for the Sidecar's (the proxy's) namespace, `*` for
 * any, and `~` in front of the namespace to exclude (Istio's convertIstioListenerToWrapper). */
class HostImports {
  private readonly imported = new Map<string, string[]>();
  private readonly excluded = new Map<string, string[]>();

  constructor(
    entries: readonly string[],
    ownNamespace: string,
    private readonly registry: Registry,
  ) {
    for (const entry of entries) {
      const at = entry.indexOf("/");
      let namespace = entry.slice(0, at);
      const host = entry.slice(at + 1);
      const exclude = namespace.startsWith("~");
      if (exclude) namespace = namespace.slice(1) || "*";
      if (namespace === ".") namespace = ownNamespace;
      const into = exclude ? this.excluded : this.imported;
      into.set(namespace, [...(into.get(namespace) ?? []), host]);
    }
  }

  /** A service is imported by a host of its namespace or of `*` that covers its host, unless excluded. */
  importsService(service: Service): boolean {
    const namespace = service.entry.namespace;
    const covered = (hosts: string[] | undefined) => (hosts ?? []).some((host) => hostSubsetOf(service.host, host));
    if (covered(this.excluded.get(namespace)) || covered(this.excluded.get("*"))) return false;
    return covered(this.imported.get(namespace)) || covered(this.imported.get("*"));
  }

  /** A VirtualService is imported when one of its hosts (short names resolved in its namespace, as istiod does) and
   * an imported host of its namespace (or `*`) overlap. */
  importsVirtualService(vs: VirtualService): boolean {
    const vsHosts = vs.spec.hosts.map((host) => this.registry.resolveHost(host, vs.namespace));
    const overlaps = (hosts: string[] | undefined) => (hosts ?? []).some((host) => vsHosts.some((vsHost) => hostSubsetOf(vsHost, host) || hostSubsetOf(host, vsHost)));
    const excluded = [...(this.excluded.get(vs.namespace) ?? []), ...(this.excluded.get("*") ?? [])];
    if (vsHosts.every((vsHost) => excluded.some((host) => hostSubsetOf(vsHost, host)))) return false;
    return overlaps(this.imported.get(vs.namespace)) || overlaps(this.imported.get("*"));
  }
}
