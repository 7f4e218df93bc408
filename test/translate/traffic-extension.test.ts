// TrafficExtension beyond the golden (fixtures/traffic-extensions): what validation refuses, namespace scoping for
// sidecars, traffic selectors on a sidecar, and that a rebuilt module changes the mesh like a WasmPlugin's.
import { createHash } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ProxyIdentity } from "../../control/resources.js";
import { loadConfigDir } from "../../control/sources/index.js";
import { configFolder, removeConfigFolders } from "./config.js";

afterAll(removeConfigFolders);

const MODULE = join(import.meta.dirname, "fixtures", "traffic-extensions", "modules", "empty.wasm");
const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  ports: [{ number: 8080, name: http, protocol: HTTP }, { number: 9090, name: http-metrics, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: 9081, http-metrics: 9091 } }]
`;
/** A Wasm module's 8-byte header: enough to be served and pinned (translation does not run it). */
const EMPTY_MODULE = "\0asm\x01\0\0\0";
const sidecar = (namespace: string): ProxyIdentity => ({ nodeId: "s", role: "sidecar", labels: { app: "webapp" }, namespace, ips: [] });

function extension(name: string, namespace: string, spec: string): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;
}

/** The HTTP filters of the listener's (first) filter chain that has an HTTP connection manager. */
function filtersOn(folder: ReturnType<typeof configFolder>, proxy: ProxyIdentity, listener: string): string[] {
  const chains: Array<{ filters: Array<{ name: string; typed_config?: { http_filters?: Array<{ name: string }> } }> }> = folder.translate(proxy).listeners.get(listener)!.filter_chains;
  const manager = chains.flatMap((chain) => chain.filters).find((filter) => filter.name === "envoy.filters.network.http_connection_manager")!;
  // Istio's standard metrics filter (istio.stats.*) is first in every chain; these tests are about the extensions.
  return manager.typed_config!.http_filters!.map((filter) => filter.name).filter((name) => !name.startsWith("istio.stats."));
}

describe("TrafficExtension validation", () => {
  const refused: Array<[string, string, string]> = [
    ["neither wasm nor lua", "  phase: AUTHN\n", "spec: exactly one of wasm or lua must be set"],
    ["both wasm and lua", "  wasm: { url: module.wasm }\n  lua: { inlineCode: x }\n", "spec: exactly one of wasm or lua must be set"],
    ["selector and targetRefs", "  selector: { matchLabels: { a: b } }\n  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: g }]\n  lua: { inlineCode: x }\n", "spec.targetRefs: only one of targetRefs or selector can be set"],
    ["a targetRef in another namespace", "  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: g, namespace: other }]\n  lua: { inlineCode: x }\n", "spec.targetRefs[0].namespace: a targetRef can only name a Gateway in the TrafficExtension's namespace shop"],
    ["a waypoint target", "  targetRefs: [{ group: '', kind: Service, name: catalog }]\n  lua: { inlineCode: x }\n", "spec.targetRefs[0].group"],
    ["a network Wasm filter", "  wasm: { url: module.wasm, type: NETWORK }\n", "spec.wasm.type: only HTTP Wasm filters are implemented"],
    ["Lua over 64 KiB", `  lua: { inlineCode: "${"-".repeat(65537)}" }\n`, "spec.lua.inlineCode: at most 64 KiB"],
    ["a module that does not exist", "  wasm: { url: missing.wasm }\n", "spec.wasm.url: module file"],
    ["a sha256 that is not the module's", `  wasm: { url: module.wasm, sha256: "${"0".repeat(64)}" }\n`, "spec.wasm.sha256: the module's sha256 is"],
    ["an OCI reference that does not parse", "  wasm: { url: oci:// }\n", "spec.wasm.url: "],
    ["a pull secret for a file module", "  wasm: { url: module.wasm, imagePullSecret: creds }\n", "spec.wasm.imagePullSecret: only oci:// modules are pulled with credentials"],
  ];
  for (const [what, spec, message] of refused) {
    it(`refuses ${what}`, () => {
      const folder = configFolder({ "module.wasm": EMPTY_MODULE, "extension.yaml": extension("x", "shop", spec) });
      expect(folder.messages.join("\n")).toContain(`extension.yaml: TrafficExtension shop/x: ${message}`);
    });
  }
});

describe("TrafficExtension on sidecars", () => {
  it("applies in its own namespace and from the root namespace only", () => {
    const folder = configFolder({
      "service.yaml": SERVICE,
      "extensions.yaml": [extension("mine", "shop", "  lua: { inlineCode: '-- shop' }\n"), extension("mesh-wide", "istio-system", "  lua: { inlineCode: '-- all' }\n"), extension("other", "billing", "  lua: { inlineCode: '-- billing' }\n")].join("---\n"),
    });
    expect(folder.messages).toEqual([]);
    expect(filtersOn(folder, sidecar("shop"), "0.0.0.0_8080")).toEqual([
      "extensions.istio.io/trafficextension/istio-system.mesh-wide",
      "extensions.istio.io/trafficextension/shop.mine",
      "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router",
    ]);
    expect(filtersOn(folder, sidecar("billing"), "0.0.0.0_8080")).toEqual([
      "extensions.istio.io/trafficextension/istio-system.mesh-wide",
      "extensions.istio.io/trafficextension/billing.other",
      "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router",
    ]);
  });

  it("runs a CLIENT selector on the sidecar's outbound listeners of the ports it names, a SERVER one on its inbound side", () => {
    const folder = configFolder({
      "service.yaml": SERVICE,
      "extensions.yaml": [
        extension("metrics-port", "shop", "  match: [{ mode: CLIENT, ports: [{ number: 9090 }] }]\n  lua: { inlineCode: '-- 9090' }\n"),
        extension("inbound", "shop", "  match: [{ mode: SERVER }]\n  lua: { inlineCode: '-- inbound' }\n"),
      ].join("---\n"),
    });
    expect(filtersOn(folder, sidecar("shop"), "0.0.0.0_8080")).toEqual(["envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
    expect(filtersOn(folder, sidecar("shop"), "0.0.0.0_9090")).toEqual(["extensions.istio.io/trafficextension/shop.metrics-port", "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
    expect(filtersOn(folder, sidecar("shop"), "virtualInbound")).toEqual(["extensions.istio.io/trafficextension/shop.inbound", "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]);
  });

  it("pins the module by sha256 (ECDS, like a WasmPlugin), and a rebuilt module changes the mesh", () => {
    const folder = configFolder({ "service.yaml": SERVICE, "extension.yaml": extension("wasm", "shop", "  wasm: { url: module.wasm }\n") });
    copyFileSync(MODULE, join(folder.dir, "module.wasm"));
    const sha256 = () => loadConfigDir(folder.dir).mesh.trafficExtensions[0]!.module!.sha256;
    expect(sha256()).toBe(createHash("sha256").update(readFileSync(MODULE)).digest("hex"));
    writeFileSync(join(folder.dir, "module.wasm"), Buffer.from([0, 97, 115, 109, 1, 0, 0, 0, 0]));
    expect(sha256()).toBe(createHash("sha256").update(Buffer.from([0, 97, 115, 109, 1, 0, 0, 0, 0])).digest("hex"));
  });
});
