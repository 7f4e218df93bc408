// Envoy fetches `vm_config.code.remote` only while a listener warms (the fetch is an init target of the listener
// being built; see the discussion in envoyproxy/envoy#43818). An ECDS update to a running listener has no such
// init phase, so a changed remote module is never fetched and the new filter config never takes effect. Like
// istio-agent (istio/istio#29989: it fetches modules itself and rewrites ECDS to local code), the control plane hands
// the modules it serves to Envoy in the ECDS resource itself, which an ECDS update applies at once, without failed
// requests. There is no size limit on the way: Envoy's own gRPC client (`envoy_grpc`, what `skiff bootstrap` uses)
// takes messages of any size unless `max_receive_message_length` is set (config/core/v3/grpc_service.proto), and the
// ADS server's gRPC library sends any size. A module travels once per change per proxy: the xDS server sends only
// the ECDS resources that changed.
import { TypeUrl, type ProxyResources } from "../resources.js";
import type { ModuleServer } from "./server.js";

interface WasmCode {
  remote?: { http_uri?: { uri?: string }; sha256?: string };
  local?: unknown;
}

/** Returns `resources` with the remote code of Wasm extension configs that `modules` serves replaced by inline
 * bytes (the bytes the control plane pinned by that sha256). Other resources are shared, not copied. The cluster
 * `moduleCluster` (the module server, at this control plane's own address) goes too once no remote code is left to
 * fetch through it: replicas of the control plane listen on different addresses, and a cluster naming one of them
 * would give the same inputs different configurations (and versions) on different replicas. */
export function inlineServedModules(resources: ProxyResources, modules: ModuleServer, moduleCluster: string): ProxyResources {
  const extensionConfigs = resources[TypeUrl.ExtensionConfig].map((resource) => {
      const typed = resource.body.typed_config as { "@type"?: string; config?: { vm_config?: { code?: WasmCode } } } | undefined;
      const remote = typed?.config?.vm_config?.code?.remote;
      const bytes = remote?.sha256 ? modules.bytes(remote.sha256) : undefined;
      if (!typed?.config?.vm_config || !bytes) return resource;
      const code = { local: { inline_bytes: Buffer.from(bytes).toString("base64") } };
      return {
        name: resource.name,
        body: { ...resource.body, typed_config: { ...typed, config: { ...typed.config, vm_config: { ...typed.config.vm_config, code } } } },
      };
    });
  const stillFetched = extensionConfigs.some((resource) => JSON.stringify(resource.body).includes(`"cluster":${JSON.stringify(moduleCluster)}`));
  return {
    ...resources,
    [TypeUrl.ExtensionConfig]: extensionConfigs,
    [TypeUrl.Cluster]: stillFetched ? resources[TypeUrl.Cluster] : resources[TypeUrl.Cluster].filter((cluster) => cluster.name !== moduleCluster),
  };
}
