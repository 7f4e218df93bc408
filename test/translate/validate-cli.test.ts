// `skiff validate DIR` as a user runs it: exit code 0 for a good folder (examples/ included), 1 with the error
// naming file, resource and field for a bad one.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { describeE2E } from "../harness/e2e.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function validate(dir: string, ...flags: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "control/cli/main.ts", "validate", dir, ...flags], { cwd: PROJECT_ROOT, encoding: "utf8" });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Bound to a Gateway that does not exist and routing to a host in no ServiceEntry: valid, but worth a warning. */
const VIRTUAL_SERVICE = `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog]
  gateways: [missing-gateway]
  http:
  - route:
    - destination: { host: catalog }
`;

describe("skiff validate", () => {
  it("accepts the demo mesh in examples/", () => {
    const result = validate("examples");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/examples: \d+ resources valid, 0 errors/);
  });

  it("exits 1 and names file, resource and field; warns about routes to nowhere", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-validate-"));
    dirs.push(dir);
    writeFileSync(
      join(dir, "catalog.yaml"),
      `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: catalog
  trafficPolicy:
    loadBalancer: { simple: FASTEST }
---
${VIRTUAL_SERVICE}`,
    );
    const result = validate(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error: catalog.yaml: DestinationRule shop/catalog: spec.trafficPolicy.loadBalancer.simple: ");
    expect(result.stdout).toContain("1 error");
    // The file is all or nothing, so the VirtualService in it is not read either: no warnings about it.
    writeFileSync(join(dir, "catalog.yaml"), "");
    writeFileSync(join(dir, "vs.yaml"), VIRTUAL_SERVICE);
    const warned = validate(dir);
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain("warning: vs.yaml: VirtualService shop/catalog: spec.gateways[0]: gateway shop/missing-gateway is not defined");
    expect(warned.stderr).toContain("host catalog is in no ServiceEntry");
    expect(warned.stdout).toContain("0 errors, 2 warnings");
  });

  it("puts resources without a namespace into the one -n names, as kubectl does", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-validate-"));
    dirs.push(dir);
    writeFileSync(join(dir, "vs.yaml"), VIRTUAL_SERVICE.replace("namespace: shop", "namespace: other").replace("{ name: catalog, namespace: other }", "{ name: catalog }"));
    expect(validate(dir).stderr).toContain("VirtualService default/catalog: spec.gateways[0]: gateway default/missing-gateway is not defined");
    expect(validate(dir, "-n", "shop").stderr).toContain("VirtualService shop/catalog: spec.gateways[0]: gateway shop/missing-gateway is not defined");
  });

  it("fails a config that loads but that the control plane could not push", () => {
    // A timeout of 100000000 hours is a well-formed duration, but beyond protobuf's Duration (10000 years): the route
    // configuration would not encode, and the control plane would keep the proxy's previous snapshot.
    const dir = mkdtempSync(join(tmpdir(), "skiff-validate-"));
    dirs.push(dir);
    writeFileSync(
      join(dir, "config.yaml"),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 3000, name: http }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog]
  http:
  - route: [{ destination: { host: catalog } }]
    timeout: 100000000h
`,
    );
    const result = validate(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: \.: the control plane could not push RouteConfiguration "3000": field virtual_hosts\[0\]\.routes\[0\]\.route\.timeout: .*\(for a sidecar in namespace default\)/);
    expect(result.stdout).toContain(" 1 error,");
  });
});

// Needs the Envoy binary: `skiff validate` runs envoy --mode validate on EnvoyFilter results.
describeE2E("skiff validate with Envoy", () => {
  it("refuses EnvoyFilter patches whose result Envoy refuses, naming each patch and Envoy's reason", () => {
    // Both encode as Envoy's messages; Envoy itself refuses a Lua script that does not compile and a zero
    // connect_timeout (a protoc-gen-validate rule). Warns about a patch that matches nothing.
    const dir = mkdtempSync(join(tmpdir(), "skiff-validate-"));
    dirs.push(dir);
    writeFileSync(
      join(dir, "mesh.yaml"),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  ports: [{ number: 8080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: 9081 } }]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: patches, namespace: shop }
spec:
  configPatches:
  - applyTo: CLUSTER
    patch: { operation: MERGE, value: { connectTimeout: 2s } }
  - applyTo: HTTP_FILTER
    match: { listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager, subFilter: { name: envoy.filters.http.router } } } } }
    patch:
      operation: INSERT_BEFORE
      value:
        name: lua
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, default_source_code: { inline_string: "function envoy_on_request(h) local x = = 1 end" } }
  - applyTo: CLUSTER
    patch: { operation: MERGE, value: { connectTimeout: 0s } }
  - applyTo: CLUSTER
    match: { cluster: { service: no-such-service } }
    patch: { operation: MERGE, value: { connectTimeout: 1s } }
`,
    );
    const result = validate(dir);
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toContain(
      `error: mesh.yaml: EnvoyFilter shop/patches: spec.configPatches[1]: Envoy refuses the result on a sidecar in namespace shop: script load error: [string "function envoy_on_request(h) local x = = 1 end"]:1: unexpected symbol near '='`,
    );
    expect(lines).toContain("error: mesh.yaml: EnvoyFilter shop/patches: spec.configPatches[2]: Envoy refuses the result on a sidecar in namespace shop: ClusterValidationError.ConnectTimeout: value must be greater than 0s");
    expect(lines).toContain("warning: mesh.yaml: EnvoyFilter shop/patches: spec.configPatches[3]: matches nothing in the configuration Skiff generates for the proxies this EnvoyFilter selects");
    expect(result.stdout).toContain("2 errors");
  });
});
