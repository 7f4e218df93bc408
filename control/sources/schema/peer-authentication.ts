// PeerAuthentication (security.istio.io): the spec schema. Which mutual TLS a workload's inbound side accepts
// (istio.io/latest/docs/reference/config/security/peer_authentication/). Validation as Istio's
// (pkg/config/validation: ValidatePeerAuthentication): port-level settings only with a workload selector, at least one
// port when the map is there, ports 1..65535.
import { z } from "zod";
import { matchLabelsSelector } from "./common.js";

export const MUTUAL_TLS_MODES = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"] as const;
export type MutualTlsMode = (typeof MUTUAL_TLS_MODES)[number];

const mutualTls = z.strictObject({ mode: z.enum(MUTUAL_TLS_MODES).default("UNSET") });

export const peerAuthenticationSpec = z
  .strictObject({
    selector: matchLabelsSelector.optional(),
    mtls: mutualTls.optional(),
    /** Keyed by the workload's port (the port its app listens on), as YAML writes it: `8080: { mode: DISABLE }`. */
    portLevelMtls: z.record(z.string(), mutualTls).optional(),
  })
  .superRefine((spec, context) => {
    if (spec.portLevelMtls === undefined) return;
    // Checked here rather than on the record's key schema, whose failure zod reports only as "Invalid key in record".
    for (const port of Object.keys(spec.portLevelMtls)) {
      if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
        context.addIssue({ code: "custom", path: ["portLevelMtls", port], message: "a port number in 1..65535" });
      }
    }
    if (Object.keys(spec.selector?.matchLabels ?? {}).length === 0) {
      context.addIssue({ code: "custom", path: ["portLevelMtls"], message: "a mesh- or namespace-wide PeerAuthentication (no selector) cannot have portLevelMtls (Istio refuses it): add a selector" });
    } else if (Object.keys(spec.portLevelMtls).length === 0) {
      context.addIssue({ code: "custom", path: ["portLevelMtls"], message: "portLevelMtls, if present, needs at least one port (Istio refuses an empty map)" });
    }
  });
export type PeerAuthenticationSpec = z.infer<typeof peerAuthenticationSpec>;
