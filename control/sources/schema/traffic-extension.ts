// TrafficExtension (extensions.istio.io/v1alpha1, Istio 1.32, WasmPlugin's successor): the spec schema, as istio/api
// extensions/v1alpha1/traffic_extension.proto and its CRD rules (exactly one of wasm or lua; at most one of
// selector or targetRefs).
import { z } from "zod";
import { gatewayTargetRefs, labels } from "./common.js";
import { wasmModuleFields } from "./wasm-plugin.js";

export const TRAFFIC_EXTENSION_PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED"] as const;

export const trafficExtensionSpec = z
  .strictObject({
    selector: z.strictObject({ matchLabels: labels }).optional(),
    targetRefs: gatewayTargetRefs.optional(),
    phase: z.enum(TRAFFIC_EXTENSION_PHASES).optional(),
    /** Higher first within a phase; unset sorts after every set priority (Int32Value, istiod's sortByPriority). */
    priority: z.number().int().min(-2147483648).max(2147483647).optional(),
    match: z
      .array(
        z.strictObject({
          mode: z.enum(["UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"]).optional(),
          ports: z.array(z.strictObject({ number: z.number().int().min(1).max(65535) })).optional(),
        }),
      )
      .optional(),
    wasm: z.strictObject(wasmModuleFields).optional(),
    lua: z.strictObject({ inlineCode: z.string().min(1).max(65536, "at most 64 KiB (use a Wasm filter for more)") }).optional(),
  })
  .refine((spec) => (spec.wasm === undefined) !== (spec.lua === undefined), { message: "exactly one of wasm or lua must be set" })
  .refine((spec) => !(spec.selector && spec.targetRefs), { message: "only one of targetRefs or selector can be set", path: ["targetRefs"] });
