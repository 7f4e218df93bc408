// The address plan of pod networks and the names of what they are made of.
//
// Every mesh network takes its addresses from 198.18.0.0/15 (198.18.0.0 - 198.19.255.255), which RFC 2544 reserves
// for benchmarking network devices and RFC 6890 (table 14) lists as not globally reachable and not forwardable: no
// real network, public or private, uses it, so a pod address can never shadow a host the machine really talks to
// (10/8, 172.16/12 and 192.168/16 are all in use on real networks, and 100.64/10 by carrier NAT and VPNs).
//
// Mesh i (0-255) owns two /24s:
//   198.18.i.0/24  the bridge and the pods: .1 is the host's own address on the bridge, .2-.254 are pods
//   198.19.i.0/24  service addresses (VIPs, like a Kubernetes ClusterIP): assigned to nothing, routed from each pod
//                  to the host, so a connection to one works only when the pod's sidecar captures it
import { isIPv4 } from "node:net";

export const MESH_RANGE = "198.18.0.0/15";
export const MAX_MESHES = 256;
/** Pod addresses are 198.18.i.FIRST_POD_OCTET to .LAST_OCTET; the host has .1. */
export const FIRST_POD_OCTET = 2;
export const LAST_OCTET = 254;

export interface MeshAddresses {
  /** 198.18.i.0/24: the bridge and the pods. */
  podSubnet: string;
  /** 198.19.i.0/24: service addresses. */
  serviceSubnet: string;
  /** The host's address on the bridge (198.18.i.1): what pods reach the control plane at. */
  hostAddress: string;
}

export function meshAddresses(index: number): MeshAddresses {
  checkIndex(index);
  return { podSubnet: `198.18.${index}.0/24`, serviceSubnet: `198.19.${index}.0/24`, hostAddress: `198.18.${index}.1` };
}

export function podAddress(index: number, octet: number): string {
  checkIndex(index);
  return `198.18.${index}.${octet}`;
}

export function serviceAddress(index: number, octet: number): string {
  checkIndex(index);
  return `198.19.${index}.${octet}`;
}

/** Interface names have at most 15 characters (IFNAMSIZ): the bridge of mesh i and the host end of a pod's veth. */
export const LINK_PREFIX = { bridge: "skb", veth: "skv" } as const;

export function bridgeName(index: number): string {
  return `${LINK_PREFIX.bridge}${index}`;
}

export function hostVethName(index: number, octet: number): string {
  return `${LINK_PREFIX.veth}${index}p${octet}`;
}

/** Network namespaces are `skiff.<mesh>.<pod>` (names never contain dots, so the mesh is always recognisable). */
export const NETNS_PREFIX = "skiff.";

export function netnsName(mesh: string, pod: string): string {
  return `${NETNS_PREFIX}${mesh}.${pod}`;
}

/** The comment on every host iptables rule of a mesh, how cleanup finds them. */
export const RULE_COMMENT_PREFIX = "skiff-mesh:";

export function ruleComment(mesh: string): string {
  return `${RULE_COMMENT_PREFIX}${mesh}`;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

/** Mesh, pod and service names: lowercase letters, digits and inner dashes, at most 32 characters (DNS labels). */
export function checkName(kind: "mesh" | "pod" | "service", name: string): void {
  if (!NAME.test(name)) {
    throw new Error(`invalid ${kind} name "${name}": use lowercase letters, digits and inner dashes, at most 32 characters`);
  }
}

/** A service host name as it may appear in /etc/hosts and an Istio `hosts` list (e.g. catalog.default.svc.cluster.local). */
export function checkHostName(name: string): void {
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(name) || name.length > 253) {
    throw new Error(`invalid host name "${name}"`);
  }
}

/** Loopback or a pod network's bridge: where nothing from another machine reaches (README "A closed world"). Servers
 * that answer without authentication (the control plane's HTTP, Prometheus, Jaeger) listen only there. */
export function closedNetwork(host: string): boolean {
  return inSubnet(host, "127.0.0.0/8") || inSubnet(host, MESH_RANGE);
}

/** Whether `address` is an IPv4 address inside `cidr`. */
export function inSubnet(address: string, cidr: string): boolean {
  const [network, bits] = cidr.split("/");
  if (!isIPv4(address) || !isIPv4(network)) return false;
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return ((toNumber(address) & mask) >>> 0) === ((toNumber(network) & mask) >>> 0);
}

function toNumber(address: string): number {
  return address.split(".").reduce((value, part) => ((value << 8) | Number(part)) >>> 0, 0);
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_MESHES) throw new Error(`mesh index ${index} is outside 0-${MAX_MESHES - 1}`);
}
