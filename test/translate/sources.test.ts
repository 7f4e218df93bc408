// Reading the config folder: what is accepted, how bad input is reported (file, resource, field), and that a watched
// folder keeps its last good configuration while a file is broken.
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type ConfigError, formatConfigError, loadConfigDir, type MeshConfig, watchConfigDir } from "../../control/sources/index.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "skiff-sources-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const serviceEntry = (name: string, version = "v1alpha3") => `apiVersion: networking.istio.io/${version}
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: shop
spec:
  hosts: [${name}.shop.svc.cluster.local]
  resolution: STATIC
  ports:
  - { number: 3000, name: http }
  endpoints:
  - { address: 127.0.0.1, ports: { http: 9000 } }
`;

const virtualService = (weights: [number, number]) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: catalog
  namespace: shop
spec:
  hosts: [catalog]
  http:
  - route:
    - destination: { host: catalog, subset: v1 }
      weight: ${weights[0]}
    - destination: { host: catalog, subset: v2 }
      weight: ${weights[1]}
`;

describe("loadConfigDir", () => {
  it("reads multi-document files in every supported apiVersion", () => {
    writeFileSync(join(dir, "services.yaml"), [serviceEntry("a", "v1alpha3"), serviceEntry("b", "v1beta1"), serviceEntry("c", "v1")].join("---\n"));
    writeFileSync(join(dir, "routes.yml"), virtualService([90, 10]));
    writeFileSync(join(dir, "notes.txt"), "not configuration");
    const { mesh, errors } = loadConfigDir(dir);
    expect(errors).toEqual([]);
    expect(mesh.serviceEntries.map((s) => `${s.namespace}/${s.name} ${s.file}`)).toEqual(["shop/a services.yaml", "shop/b services.yaml", "shop/c services.yaml"]);
    expect(mesh.virtualServices[0]!.spec.http[0]!.route!.map((r) => r.weight)).toEqual([90, 10]);
    // Istio's default when meshconfig.yaml says nothing.
    expect(mesh.outboundTrafficPolicy).toBe("ALLOW_ANY");
  });

  it("names file, resource and field for a bad value, and drops only that file", () => {
    writeFileSync(join(dir, "services.yaml"), serviceEntry("catalog"));
    writeFileSync(join(dir, "routes.yaml"), virtualService([0, 0]));
    const { mesh, errors } = loadConfigDir(dir);
    expect(errors).toEqual([
      { file: "routes.yaml", resource: "VirtualService shop/catalog", field: "spec.http[0].route", message: "total destination weight = 0 (Istio refuses it)" },
    ]);
    expect(formatConfigError(errors[0]!)).toBe("routes.yaml: VirtualService shop/catalog: spec.http[0].route: total destination weight = 0 (Istio refuses it)");
    expect(mesh.virtualServices).toEqual([]);
    expect(mesh.serviceEntries).toHaveLength(1);
  });

  it("rejects fields it does not implement instead of ignoring them", () => {
    writeFileSync(
      join(dir, "dr.yaml"),
      `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: catalog }
spec:
  host: catalog
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 5 seconds
    tunnel: { protocol: CONNECT, targetHost: egress, targetPort: 8443 }
`,
    );
    const { errors } = loadConfigDir(dir);
    expect(errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ file: "dr.yaml", resource: "DestinationRule default/catalog", field: "spec.trafficPolicy.tunnel" }),
        expect.objectContaining({ resource: "DestinationRule default/catalog", field: "spec.trafficPolicy.outlierDetection.interval", message: expect.stringContaining("duration") }),
      ]),
    );
  });

  it("checks an EnvoyFilter MERGE value against Envoy's Cluster message", () => {
    // The seed writes budget_percent as a bare number; in proto3 JSON an envoy.type.v3.Percent is { value: 20 }.
    writeFileSync(
      join(dir, "retry-budget.yaml"),
      `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: simple-backend-retry-status-codes, namespace: istioinaction }
spec:
  configPatches:
  - applyTo: CLUSTER
    match: { context: SIDECAR_OUTBOUND, cluster: { portNumber: 80, service: simple-backend.istioinaction.svc.cluster.local } }
    patch:
      operation: MERGE
      value:
        circuit_breakers:
          thresholds:
          - retry_budget:
              budget_percent: 20.0
              min_retry_concurrency: 5
`,
    );
    expect(loadConfigDir(dir).errors).toEqual([
      {
        file: "retry-budget.yaml",
        resource: "EnvoyFilter istioinaction/simple-backend-retry-status-codes",
        field: "spec.configPatches[0].patch.value.circuit_breakers.thresholds[0].retry_budget.budget_percent",
        message: "cannot decode message envoy.type.v3.Percent from JSON: 20 (the value is an Envoy envoy.config.cluster.v3.Cluster)",
      },
    ]);
  });

  it("reports wrong apiVersions and kinds, broken YAML, missing or mismatched modules and duplicates", () => {
    writeFileSync(join(dir, "a.yaml"), serviceEntry("catalog").replace("networking.istio.io/v1alpha3", "networking.istio.io/v2"));
    writeFileSync(join(dir, "b.yaml"), "kind: [unclosed\n");
    writeFileSync(join(dir, "c.yaml"), `apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: rb }\nspec:\n  url: missing.wasm\n`);
    writeFileSync(join(dir, "module.wasm"), "\0asm\x01\0\0\0");
    writeFileSync(join(dir, "g.yaml"), `apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: pinned }\nspec:\n  url: module.wasm\n  sha256: "${"0".repeat(64)}"\n`);
    writeFileSync(join(dir, "d.yaml"), `apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: { name: s }\nspec: {}\n`);
    writeFileSync(join(dir, "e.yaml"), serviceEntry("dup"));
    writeFileSync(join(dir, "f.yaml"), serviceEntry("dup"));
    writeFileSync(join(dir, "meshconfig.yaml"), "outboundTrafficPolicy: { mode: SOMETIMES }\n");
    const byFile = new Map<string, ConfigError>(loadConfigDir(dir).errors.map((e) => [e.file, e]));
    expect(byFile.get("a.yaml")).toMatchObject({ resource: "ServiceEntry shop/catalog", field: "apiVersion" });
    expect(byFile.get("b.yaml")?.message).toMatch(/^not valid YAML/);
    expect(byFile.get("c.yaml")).toMatchObject({ resource: "WasmPlugin default/rb", field: "spec.url", message: expect.stringContaining("does not exist") });
    expect(byFile.get("g.yaml")).toMatchObject({ resource: "WasmPlugin default/pinned", field: "spec.sha256", message: expect.stringMatching(/^the module's sha256 is [0-9a-f]{64}$/) });
    expect(byFile.get("d.yaml")).toMatchObject({ resource: "ProxyConfig default/s", field: "kind" });
    expect(byFile.get("f.yaml")).toMatchObject({ resource: "ServiceEntry shop/dup", message: expect.stringContaining("already defined in e.yaml") });
    expect(byFile.get("meshconfig.yaml")).toMatchObject({ field: "outboundTrafficPolicy.mode" });
    expect(byFile.has("e.yaml")).toBe(false);
  });

  it("reports YAML whose aliases expand without bound instead of throwing", () => {
    const ten = (item: string) => `[${Array(10).fill(item).join(", ")}]`;
    writeFileSync(join(dir, "laughs.yaml"), `a: &a ${ten("x")}\nb: &b ${ten("*a")}\nc: &c ${ten("*b")}\nd: ${ten("*c")}\n`);
    expect(loadConfigDir(dir).errors).toEqual([{ file: "laughs.yaml", message: expect.stringMatching(/^not valid YAML: .*alias/) }]);
  });

  it("reports a WasmPlugin url that names a folder instead of throwing", () => {
    mkdirSync(join(dir, "modules"));
    writeFileSync(join(dir, "p.yaml"), `apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: folder }\nspec:\n  url: modules\n`);
    expect(loadConfigDir(dir).errors).toEqual([
      { file: "p.yaml", resource: "WasmPlugin default/folder", field: "spec.url", message: expect.stringContaining("cannot read module") },
    ]);
  });
});

describe("watchConfigDir", () => {
  it("keeps the last good version of a file that turns bad, and takes the fix", async () => {
    writeFileSync(join(dir, "services.yaml"), serviceEntry("catalog"));
    writeFileSync(join(dir, "routes.yaml"), virtualService([90, 10]));
    const meshes: MeshConfig[] = [];
    const reports: ConfigError[][] = [];
    const watcher = watchConfigDir(dir, (mesh) => meshes.push(mesh), (errors) => reports.push(errors));
    try {
      expect(meshes).toHaveLength(1);
      expect(reports).toEqual([[]]);

      writeFileSync(join(dir, "routes.yaml"), virtualService([0, 0]));
      await until(() => reports.length === 2);
      expect(reports[1]).toEqual([expect.objectContaining({ file: "routes.yaml", resource: "VirtualService shop/catalog", field: "spec.http[0].route" })]);
      expect(meshes).toHaveLength(1); // Nothing changed for the proxies: the 90/10 version stays.

      writeFileSync(join(dir, "routes.yaml"), virtualService([50, 50]));
      await until(() => meshes.length === 2);
      expect(meshes[1]!.virtualServices[0]!.spec.http[0]!.route!.map((r) => r.weight)).toEqual([50, 50]);
      expect(reports[2]).toEqual([]);
    } finally {
      await watcher.close();
    }
  });

  it("follows a rebuilt WasmPlugin module outside the folder", async () => {
    const modules = mkdtempSync(join(tmpdir(), "skiff-modules-"));
    try {
      writeFileSync(join(modules, "filter.wasm"), "\0asm\x01\0\0\0");
      writeFileSync(join(dir, "plugin.yaml"), `apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: p }\nspec:\n  url: ${join(modules, "filter.wasm")}\n`);
      const meshes: MeshConfig[] = [];
      const watcher = watchConfigDir(dir, (mesh) => meshes.push(mesh), () => {});
      try {
        // A rebuild writes a new file and moves it over the old one.
        writeFileSync(join(modules, "filter.wasm.tmp"), "\0asm\x01\0\0\0\0\x05\x04name");
        renameSync(join(modules, "filter.wasm.tmp"), join(modules, "filter.wasm"));
        await until(() => meshes.length === 2);
        expect(meshes[1]!.wasmPlugins[0]!.module.sha256).not.toBe(meshes[0]!.wasmPlugins[0]!.module.sha256);
      } finally {
        await watcher.close();
      }
    } finally {
      rmSync(modules, { recursive: true, force: true });
    }
  });

  it("turns a burst of writes into one update", async () => {
    const meshes: MeshConfig[] = [];
    const watcher = watchConfigDir(dir, (mesh) => meshes.push(mesh), () => {});
    try {
      for (const name of ["a", "b", "c", "d", "e"]) writeFileSync(join(dir, `${name}.yaml`), serviceEntry(name));
      await until(() => meshes.length === 2);
      await sleep(500);
      expect(meshes).toHaveLength(2);
      expect(meshes[1]!.serviceEntries.map((s) => s.name)).toEqual(["a", "b", "c", "d", "e"]);
    } finally {
      await watcher.close();
    }
  });
});

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}
