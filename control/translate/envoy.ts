// Small builders for Envoy proto3 JSON shared by the translators.
import { dirname } from "node:path";

/** Go-style duration ("1m30s", "300ms") -> proto3 JSON duration ("90s", "0.300s"). */
export function duration(text: string): string {
  const nanosPer: Record<string, bigint> = { h: 3_600_000_000_000n, m: 60_000_000_000n, s: 1_000_000_000n, ms: 1_000_000n, us: 1_000n, "µs": 1_000n, ns: 1n };
  let nanos = 0n;
  for (const [, value, unit] of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) {
    const [whole, fraction = ""] = value!.split(".");
    const scale = nanosPer[unit!]!;
    nanos += BigInt(whole!) * scale + (BigInt(fraction.padEnd(9, "0").slice(0, 9)) * scale) / 1_000_000_000n;
  }
  const seconds = nanos / 1_000_000_000n;
  const rest = nanos % 1_000_000_000n;
  if (rest === 0n) return `${seconds}s`;
  const digits = rest.toString().padStart(9, "0");
  const width = digits.endsWith("000000") ? 3 : digits.endsWith("000") ? 6 : 9;
  return `${seconds}.${digits.slice(0, width)}s`;
}

export const ADS_CONFIG_SOURCE = { ads: {}, initial_fetch_timeout: "0s", resource_api_version: "V3" };

export function socketAddress(address: string, port: number) {
  return { socket_address: { address, port_value: port } };
}

export function typed(type: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { "@type": `type.googleapis.com/${type}`, ...fields };
}

/** Istio's cluster name for a service port and subset: `outbound|8080|v1|catalog.istioinaction.svc.cluster.local`. */
export function clusterName(port: number, subset: string | undefined, host: string): string {
  return `outbound|${port}|${subset ?? ""}|${host}`;
}

/** Istio's cluster for traffic it refuses: no endpoints, so whatever is routed there fails. */
export const BLACKHOLE_CLUSTER = "BlackHoleCluster";
/** Istio's cluster to a connection's original destination (outbound traffic to hosts outside the registry). */
export const PASSTHROUGH_CLUSTER = "PassthroughCluster";
/** Istio's cluster to the original destination on the inbound side (ports no service declares). */
export const INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster";

/** Istio's inbound cluster name for a port the workload listens on: `inbound|8080||`. */
export function inboundClusterName(port: number): string {
  return `inbound|${port}||`;
}

/** Istio's file-based SDS secrets, sent by ADS: a certificate and its key (`file-cert:<cert>~<key>`), or a CA bundle
 * (`file-root:<ca>`), that Envoy reads from disk and reloads when they are replaced in their folder (rotation). */
export function fileCertificateSecret(certificate: string, privateKey: string): { name: string; body: Record<string, unknown> } {
  const name = `file-cert:${certificate}~${privateKey}`;
  return {
    name,
    body: {
      name,
      tls_certificate: { certificate_chain: { filename: certificate }, private_key: { filename: privateKey }, watched_directory: { path: dirname(certificate) } },
    },
  };
}

export function fileRootSecret(caCertificates: string): { name: string; body: Record<string, unknown> } {
  const name = `file-root:${caCertificates}`;
  return { name, body: { name, validation_context: { trusted_ca: { filename: caCertificates }, watched_directory: { path: dirname(caCertificates) } } } };
}

/** Whether a listener takes a sidecar's inbound traffic: Istio's `virtualInbound` or one marked INBOUND. */
export function inboundListener(body: Record<string, unknown>): boolean {
  return body.name === "virtualInbound" || body.traffic_direction === "INBOUND";
}

/** Istio's secrets for a Kubernetes Secret (`kubernetes://<name>`, `kubernetes://<name>-cacert`), sent by ADS with
 * their PEM inline, as istiod's SecretGen sends a gateway's credential; a renewed Secret is a changed resource. */
export function inlineCertificateSecret(name: string, certificate: string, privateKey: string): { name: string; body: Record<string, unknown> } {
  return { name, body: { name, tls_certificate: { certificate_chain: { inline_string: certificate }, private_key: { inline_string: privateKey } } } };
}

export function inlineRootSecret(name: string, caCertificate: string): { name: string; body: Record<string, unknown> } {
  return { name, body: { name, validation_context: { trusted_ca: { inline_string: caCertificate } } } };
}
