// WasmPlugin (extensions.istio.io/v1alpha1): the spec schema, and the Wasm module fields TrafficExtension's `wasm`
// shares with it (istio/api extensions/v1alpha1/wasm.proto).
import { z } from "zod";
import { labels } from "./common.js";

export const WASM_PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"] as const;

/** The module and how it runs: WasmPlugin's fields, and TrafficExtension's `wasm`. */
export const wasmModuleFields = {
  url: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits").optional(),
  /** For oci:// urls: the credentials folder credentials/<name>/ holding `.dockerconfigjson`, as a mounted
   * kubernetes.io/dockerconfigjson Secret would. */
  imagePullSecret: z.string().min(1).optional(),
  pluginName: z.string().min(1).max(256).optional(),
  pluginConfig: z.record(z.string(), z.unknown()).optional(),
  failStrategy: z.enum(["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]).optional(),
  vmConfig: z
    .strictObject({
      env: z
        .array(
          z.strictObject({
            name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a C identifier").max(256),
            valueFrom: z.enum(["INLINE", "HOST"]).optional(),
            value: z.string().max(2048).optional(),
          }),
        )
        .max(256)
        .optional(),
    })
    .optional(),
  type: z.enum(["HTTP", "UNSPECIFIED_PLUGIN_TYPE"], { message: "only HTTP Wasm filters are implemented (NETWORK is not)" }).optional(),
};

export const wasmPluginSpec = z.strictObject({
  selector: z.strictObject({ matchLabels: labels }).optional(),
  phase: z.enum(WASM_PHASES).optional(),
  priority: z.number().int().optional(),
  ...wasmModuleFields,
});
