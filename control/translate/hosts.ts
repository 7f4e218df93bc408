// Host names as Istio compares them (pkg/config/host/name.go and names.go): exact names and wildcards `*` and
// `*.suffix`, and the `namespace/host` form of Gateway server hosts and Sidecar egress hosts.

/** Whether every name `host` covers is also covered by `other` (Istio's Name.SubsetOf): `a.b.com` and `*.b.com` are
 * subsets of `*.b.com` and of `*`; `*.b.com` is not a subset of `a.b.com`. */
export function hostSubsetOf(host: string, other: string): boolean {
  if (other === "*" || host === other) return true;
  if (!other.startsWith("*.")) return false;
  return host.endsWith(other.slice(1)) && host.length > other.length - 1;
}

/** The names both lists cover, the more specific of each overlapping pair (Istio's Names.Intersection), in the
 * order of `hosts`. */
export function intersectHosts(hosts: readonly string[], others: readonly string[]): string[] {
  const out: string[] = [];
  for (const host of hosts) {
    for (const other of others) {
      const common = hostSubsetOf(host, other) ? host : hostSubsetOf(other, host) ? other : undefined;
      if (common !== undefined && !out.includes(common)) out.push(common);
    }
  }
  return out;
}

/** The hosts of `namespace/host` entries that resources of `namespace` may use (Istio's NamesForNamespace): entries
 * of that namespace or `*`, and plain hosts; `./host` means the namespace of the resource that holds it (`ownNamespace`). */
export function hostsForNamespace(entries: readonly string[], ownNamespace: string, namespace: string): string[] {
  return entries.flatMap((entry) => {
    const at = entry.indexOf("/");
    if (at < 0) return [entry];
    const prefix = entry.slice(0, at);
    const allowed = prefix === "*" || (prefix === "." ? ownNamespace : prefix) === namespace;
    return allowed ? [entry.slice(at + 1)] : [];
  });
}

/** The host part of a `namespace/host` entry. */
export function hostPart(entry: string): string {
  return entry.slice(entry.indexOf("/") + 1);
}

/** Whether a resource of `ownNamespace` with this `exportTo` is visible in `namespace` (Istio's visibility: unset
 * or "*" everywhere, "." its own namespace, "~" nowhere, else the namespaces named). */
export function visibleIn(exportTo: readonly string[] | undefined, ownNamespace: string, namespace: string): boolean {
  if (!exportTo || exportTo.length === 0) return true;
  return exportTo.some((entry) => entry === "*" || (entry === "." ? ownNamespace : entry) === namespace);
}
