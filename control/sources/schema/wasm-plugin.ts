// WasmPlugin: the spec schema.
import { z } from "zod";
import { labels } from "./common.js";

export const WASM_PHASES = ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"] as const;

export const wasmPluginSpec = z.strictObject({
  selector: z.strictObject({ matchLabels: labels }).optional(),
  url: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits").optional(),
  /** For oci:// urls: the credentials folder credentials/<name>/ holding `.dockerconfigjson`, as a mounted
   * kubernetes.io/dockerconfigjson Secret would. */
  imagePullSecret: z.string().min(1).optional(),
  pluginName: z.string().optional(),
  pluginConfig: z.record(z.string(), z.unknown()).optional(),
  phase: z.enum(WASM_PHASES).optional(),
  priority: z.number().int().optional(),
  failStrategy: z.enum(["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]).optional(),
  type: z.enum(["HTTP"]).optional(),
});
