// Envoy fetches `vm_config.code.remote` only while a listener warms (the fetch is an init target of the listener
// being built; see the discussion in envoyproxy/envoy#43818). An ECDS update to a running listener has no such
// init phase, so a changed remote module is never fetched and the new filter config never takes effect. Like
// istio-agent (istio/istio#29989: it fetches modules itself and rewrites ECDS to local code), the control plane
// hands small modules it serves to Envoy inline, which an ECDS update applies at once, without failed requests.
import { TypeUrl, type ProxyResources } from "../resources.js";
import type { ModuleServer } from "./server.js";

/** Modules up to this size travel inline in the ECDS resource; larger ones stay remote. */
export const MAX_INLINE_MODULE_BYTES = 1024 * 1024;

interface WasmCode {
  remote?: { http_uri?: { uri?: string }; sha256?: string };
  local?: unknown;
}

/** Returns `resources` with the remote code of Wasm extension configs that `modules` serves replaced by inline
 * bytes (the bytes the control plane pinned by that sha256). Other resources are shared, not copied. */
export function inlineServedModules(resources: ProxyResources, modules: ModuleServer, maxBytes = MAX_INLINE_MODULE_BYTES): ProxyResources {
  return {
    ...resources,
    [TypeUrl.ExtensionConfig]: resources[TypeUrl.ExtensionConfig].map((resource) => {
      const typed = resource.body.typed_config as { "@type"?: string; config?: { vm_config?: { code?: WasmCode } } } | undefined;
      const remote = typed?.config?.vm_config?.code?.remote;
      const bytes = remote?.sha256 ? modules.bytes(remote.sha256) : undefined;
      if (!typed?.config?.vm_config || !bytes || bytes.length > maxBytes) return resource;
      const code = { local: { inline_bytes: Buffer.from(bytes).toString("base64") } };
      return {
        name: resource.name,
        body: { ...resource.body, typed_config: { ...typed, config: { ...typed.config, vm_config: { ...typed.config.vm_config, code } } } },
      };
    }),
  };
}
