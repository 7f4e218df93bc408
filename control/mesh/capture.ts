// The traffic capture rules istio-init installs in a pod (REDIRECT mode), as iptables-restore input for the pod's
// own network namespace. Chains, rules and their order follow Istio's tools/istio-iptables/pkg/capture/run.go
// (IptablesConfigurator.Run) and its golden files (testdata/*.golden), for the arguments Istio's injection template
// passes: `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020` (the proxy's gid defaults
// to its uid). DNS capture (REDIRECT_DNS), TPROXY and IPv6 are not implemented: pods have IPv6 disabled and resolve
// names from /etc/hosts.

export interface CaptureOptions {
  /** The sidecar's uid and gid, whose own traffic is never captured (Istio: 1337). */
  proxyUid?: number;
  proxyGid?: number;
  /** Where outbound TCP is redirected (Istio: 15001, the virtual outbound listener). */
  outboundPort?: number;
  /** Where inbound TCP is redirected (Istio: 15006, the virtual inbound listener). */
  inboundPort?: number;
  /** Inbound ports to capture, or "*" for all but the excluded ones (`traffic.sidecar.istio.io/includeInboundPorts`). */
  includeInboundPorts?: "*" | number[];
  /** Inbound ports never captured (`excludeInboundPorts`); the sidecar's own ports are always added. */
  excludeInboundPorts?: number[];
  /** Outbound ports never captured (`traffic.sidecar.istio.io/excludeOutboundPorts`). */
  excludeOutboundPorts?: number[];
  /** Outbound destinations to capture, or "*" (`includeOutboundIPRanges`). */
  includeOutboundIpRanges?: "*" | string[];
  /** Outbound destinations never captured (`excludeOutboundIPRanges`). */
  excludeOutboundIpRanges?: string[];
}

export const PROXY_UID = 1337;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const INBOUND_CAPTURE_PORT = 15006;
/** HBONE's tunnel port, which istio-iptables always leaves alone. */
export const INBOUND_TUNNEL_PORT = 15008;
/** The sidecar's admin port: Skiff binds it on the pod's address (so tests and tools on the host reach it), where
 * Istio binds it on localhost; so it is excluded from inbound capture like Istio's other own ports. */
export const SIDECAR_ADMIN_PORT = 15000;
/** What Istio's injection always excludes from inbound capture (`-d 15090,15021,<status port 15020>`): Envoy's
 * Prometheus port, the health port, the agent's merged metrics; plus Skiff's sidecar admin port. */
export const SIDECAR_OWN_PORTS: readonly number[] = [15090, 15021, 15020, SIDECAR_ADMIN_PORT];
/** The source address of Envoy's inbound passthrough connections to the app (Istio's InboundPassthroughCluster binds
 * it), which the rules let through on loopback. */
export const INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6";

/** iptables' multiport match takes at most 15 ports. */
const MULTIPORT_MAX = 15;

export function captureRules(options: CaptureOptions = {}): string {
  const uid = options.proxyUid ?? PROXY_UID;
  const gid = options.proxyGid ?? uid;
  const includeInbound = options.includeInboundPorts ?? "*";
  const excludeInbound = [...new Set([...SIDECAR_OWN_PORTS, ...(options.excludeInboundPorts ?? [])])];
  const includeOutbound = options.includeOutboundIpRanges ?? "*";
  const rules: string[] = [
    "*nat",
    "-N ISTIO_INBOUND",
    "-N ISTIO_REDIRECT",
    "-N ISTIO_IN_REDIRECT",
    "-N ISTIO_OUTPUT",
    `-A ISTIO_INBOUND -p tcp --dport ${INBOUND_TUNNEL_PORT} -j RETURN`,
    `-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${options.outboundPort ?? OUTBOUND_CAPTURE_PORT}`,
    `-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${options.inboundPort ?? INBOUND_CAPTURE_PORT}`,
  ];

  // Inbound (handleInboundPortsInclude): all TCP arriving at the pod goes to ISTIO_INBOUND.
  if (includeInbound === "*" || includeInbound.length > 0) {
    rules.push("-A PREROUTING -p tcp -j ISTIO_INBOUND");
    if (includeInbound === "*") {
      for (const ports of portMatches(excludeInbound)) rules.push(`-A ISTIO_INBOUND -p tcp ${ports} -j RETURN`);
      rules.push("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT");
    } else {
      for (const port of includeInbound) rules.push(`-A ISTIO_INBOUND -p tcp --dport ${port} -j ISTIO_IN_REDIRECT`);
    }
  }

  // Outbound: everything the pod sends passes ISTIO_OUTPUT.
  rules.push("-A OUTPUT -j ISTIO_OUTPUT");
  // Port exclusions come before connections back to the pod itself are redirected.
  for (const ports of portMatches(options.excludeOutboundPorts ?? [])) {
    rules.push(`-A ISTIO_OUTPUT -p tcp ${ports} -j RETURN`, `-A ISTIO_OUTPUT -p udp ${ports} -j RETURN`);
  }
  // Envoy's inbound passthrough to the app, from 127.0.0.6, is not captured again.
  rules.push(`-A ISTIO_OUTPUT -o lo -s ${INBOUND_PASSTHROUGH_SOURCE}/32 -j RETURN`);
  for (const [match, id] of [["--uid-owner", uid], ["--gid-owner", gid]] as const) {
    rules.push(
      // The sidecar calling the pod's own address (app -> sidecar outbound -> sidecar inbound -> app, through a
      // service address that resolves to this pod): captured as inbound.
      `-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport ${INBOUND_TUNNEL_PORT} -m owner ${match} ${id} -j ISTIO_IN_REDIRECT`,
      // The app calling itself by its own address over loopback: not captured.
      `-A ISTIO_OUTPUT -o lo -m owner ! ${match} ${id} -j RETURN`,
      // Everything else the sidecar sends leaves uncaptured (no redirect loop).
      `-A ISTIO_OUTPUT -m owner ${match} ${id} -j RETURN`,
    );
  }
  // Envoy-aware apps and container-to-container traffic on localhost.
  rules.push("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN");
  for (const cidr of options.excludeOutboundIpRanges ?? []) rules.push(`-A ISTIO_OUTPUT -d ${cidr} -j RETURN`);
  if (includeOutbound === "*") {
    rules.push("-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
  } else {
    for (const cidr of includeOutbound) rules.push(`-A ISTIO_OUTPUT -d ${cidr} -j ISTIO_REDIRECT`);
  }
  rules.push("COMMIT");
  return `${rules.join("\n")}\n`;
}

/** `--dport P` for one port, `-m multiport --dports a,b,c` for several (at most 15 a rule), as istio-iptables writes. */
function portMatches(ports: number[]): string[] {
  const matches: string[] = [];
  for (let at = 0; at < ports.length; at += MULTIPORT_MAX) {
    const group = ports.slice(at, at + MULTIPORT_MAX);
    matches.push(group.length === 1 ? `--dport ${group[0]}` : `-m multiport --dports ${group.join(",")}`);
  }
  return matches;
}
