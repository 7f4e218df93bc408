// ServiceEntry and WorkloadEntry: the spec schemas. A ServiceEntry's `endpoints` are WorkloadEntry specs without
// the kind around them; a WorkloadEntry resource is selected by ServiceEntries whose workloadSelector it matches.
import { z } from "zod";
import { exportTo, ipAddress, labels, workloadSelector } from "./common.js";

const port = z.number().int().min(1).max(65535);

export const workloadEntrySpec = z.strictObject({
  address: z.string().min(1),
  ports: z.record(z.string(), port).optional(),
  labels: labels.optional(),
  network: z.string().min(1).optional(),
  weight: z.number().int().positive().optional(),
  serviceAccount: z.string().min(1).optional(),
  /** `region/zone/subzone` (Istio's WorkloadEntry.locality); when unset, the `istio-locality` label says it. */
  locality: z
    .string()
    .regex(/^[^/]+(\/[^/]+){0,2}$/, "region[/zone[/subzone]], without empty parts")
    .optional(),
});
export type WorkloadEntrySpec = z.infer<typeof workloadEntrySpec>;

// TCP, and TLS/HTTPS (TLS the sidecar passes through, told apart by SNI), as Istio reads them.
export const SERVICE_PROTOCOLS = ["HTTP", "HTTP2", "GRPC", "TCP", "TLS", "HTTPS"] as const;

export const serviceEntrySpec = z
  .strictObject({
    hosts: z.array(z.string().min(1)).min(1),
    addresses: z.array(z.union([ipAddress, z.cidrv4(), z.cidrv6()], { message: "an IP address or CIDR block" })).optional(),
    ports: z
      .array(
        z.strictObject({
          number: port,
          name: z.string().min(1),
          protocol: z.enum(SERVICE_PROTOCOLS).default("HTTP"),
          targetPort: port.optional(),
        }),
      )
      .min(1),
    /** Unset is MESH_EXTERNAL, Istio's zero value: no auto mTLS to the service. */
    location: z.enum(["MESH_EXTERNAL", "MESH_INTERNAL"]).optional(),
    /** Identities allowed to serve the service (SPIFFE IDs or other SANs), beside its endpoints' service accounts: what
     * a client's mutual TLS checks the server's certificate against. */
    subjectAltNames: z.array(z.string().min(1)).optional(),
    // Istio's default is NONE: traffic goes on to the address the application dialed.
    resolution: z.enum(["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]).default("NONE"),
    endpoints: z.array(workloadEntrySpec).optional(),
    workloadSelector: workloadSelector.optional(),
    exportTo: exportTo.optional(),
  })
  .superRefine((spec, context) => {
    // Istio's ValidateServiceEntry, the rules that decide what the entry means.
    const issue = (path: PropertyKey[], message: string) => context.addIssue({ code: "custom", path, message });
    if (spec.endpoints && spec.workloadSelector) issue(["workloadSelector"], "only one of workloadSelector or endpoints (Istio refuses both)");
    if (spec.resolution === "NONE" && spec.endpoints?.length) {
      issue(["endpoints"], "resolution NONE (the default) passes traffic on to the address the application dialed and takes no endpoints (Istio refuses them too); set resolution: STATIC or DNS to use these endpoints");
    }
    if (spec.resolution === "DNS_ROUND_ROBIN" && (spec.endpoints?.length ?? 0) > 1) issue(["endpoints"], "DNS_ROUND_ROBIN takes at most one endpoint (Istio refuses more)");
    if ((spec.addresses ?? []).some((address) => address.includes("/")) && spec.resolution !== "NONE" && spec.resolution !== "STATIC") {
      issue(["addresses"], "CIDR addresses are allowed only with resolution NONE or STATIC (Istio refuses them otherwise)");
    }
    const names = spec.ports.map((p) => p.name);
    spec.ports.forEach((p, index) => {
      if (names.indexOf(p.name) !== index) issue(["ports", index, "name"], `port name ${p.name} is already defined`);
      if (spec.ports.findIndex((other) => other.number === p.number) !== index) issue(["ports", index, "number"], `port ${p.number} is already defined`);
    });
    spec.endpoints?.forEach((endpoint, index) => {
      for (const name of Object.keys(endpoint.ports ?? {})) {
        if (!names.includes(name)) issue(["endpoints", index, "ports", name], `the ServiceEntry has no port named ${name}`);
      }
      if (spec.resolution === "STATIC" && !ipAddress.safeParse(endpoint.address).success) {
        issue(["endpoints", index, "address"], "resolution STATIC needs IP addresses; use resolution DNS for host names");
      }
    });
  });
