// `skiff analyze`: each finding with istioctl analyze's code and level, on a folder that has one of each problem,
// and a clean verdict on the demo mesh; the CLI's output lines and exit code.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { analyze, type Message } from "../../control/analyze/analyze.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { loadConfigDir } from "../../control/sources/index.js";

const PROBLEMS = {
  "services.yaml": `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{ number: 3000, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints:
  - { address: 127.0.0.1, ports: { http: 9082 }, labels: { version: v1 } }
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: catalog
  subsets:
  - { name: version-v1, labels: { version: v1 } }
  - { name: version-v3, labels: { version: v3 } }
`,
  "gateway.yaml": `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: gw, namespace: shop }
spec:
  selector: { istio: egressgateway }
  servers:
  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["catalog.example.com"]
`,
  "routes.yaml": `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog]
  http:
  - route: [{ destination: { host: catalog, subset: version-v1 } }]
  - match: [{ uri: { prefix: /items } }]
    route: [{ destination: { host: catalog, subset: version-v2 } }]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: catalog-again, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  http:
  - match: [{ uri: { prefix: /api } }]
    route: [{ destination: { host: catalog } }]
  - match: [{ uri: { prefix: /api/v2 } }, { headers: { x-user: { exact: bob } } }]
    route: [{ destination: { host: reviews } }]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: front, namespace: shop }
spec:
  hosts: ["shop.example.com"]
  gateways: [gw, missing-gw]
  http:
  - route: [{ destination: { host: catalog } }]
`,
};

let dir: string;
let messages: Message[];
const find = (code: string, text: string) => messages.filter((m) => m.code === code && m.message.includes(text));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "skiff-analyze-"));
  for (const [file, text] of Object.entries(PROBLEMS)) writeFileSync(join(dir, file), text);
  const { mesh, errors } = loadConfigDir(dir);
  messages = analyze(mesh, errors, [{ nodeId: "ingressgateway", role: "gateway", labels: { istio: "ingressgateway" } }]);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("skiff analyze findings", () => {
  it("IST0101: a gateway, a host and a subset that do not exist; a Gateway selector no connected proxy has", () => {
    expect(find("IST0101", 'Referenced gateway not found: "missing-gw"')).toMatchObject([{ level: "Error", resource: "VirtualService shop/front", file: "routes.yaml" }]);
    expect(find("IST0101", 'Referenced host not found: "reviews"')).toMatchObject([{ resource: "VirtualService shop/catalog-again" }]);
    expect(find("IST0101", 'Referenced host+subset in destinationrule not found: "catalog+version-v2"')).toMatchObject([{ resource: "VirtualService shop/catalog" }]);
    expect(find("IST0101", 'Referenced selector not found: "istio=egressgateway"')).toMatchObject([{ resource: "Gateway shop/gw", file: "gateway.yaml" }]);
  });

  it("IST0109: two VirtualServices for one host on the mesh gateway, however the host is written", () => {
    const conflicts = messages.filter((m) => m.code === "IST0109");
    expect(conflicts.map((m) => m.resource).sort()).toEqual(["VirtualService shop/catalog", "VirtualService shop/catalog-again"]);
    expect(conflicts[0]!.message).toContain("define the same host catalog.shop.svc.cluster.local");
  });

  it("IST0131: a match shadowed by an earlier catch-all or a broader prefix, and not one that a header tells apart", () => {
    expect(find("IST0131", "").map((m) => m.message)).toEqual([
      "VirtualService shop/catalog rule #1 match #0 is not used (it is shadowed by rule #0 (a catch-all)).",
      "VirtualService shop/catalog-again rule #1 match #0 is not used (it is shadowed by rule #0 match #0).",
    ]);
  });

  it("IST0132: a VirtualService host its Gateway's servers do not accept", () => {
    expect(find("IST0132", "shop.example.com")).toMatchObject([{ level: "Warning", resource: "VirtualService shop/front" }]);
  });

  it("IST0173: a DestinationRule subset that selects no endpoint", () => {
    expect(find("IST0173", "version-v3")).toMatchObject([{ level: "Warning", resource: "DestinationRule shop/catalog" }]);
    expect(find("IST0173", "version-v1")).toEqual([]);
  });

  it("IST0106: what the control plane refuses", () => {
    writeFileSync(join(dir, "broken.yaml"), "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: { name: b, namespace: shop }\nspec: { hosts: [x], http: [], bogus: 1 }\n");
    const { mesh, errors } = loadConfigDir(dir);
    rmSync(join(dir, "broken.yaml"));
    const refused = analyze(mesh, errors).filter((m) => m.code === "IST0106");
    expect(refused.length).toBeGreaterThan(0);
    for (const message of refused) expect(message).toMatchObject({ level: "Error", resource: "VirtualService shop/b", file: "broken.yaml" });
    expect(refused.map((m) => m.message)).toContainEqual(expect.stringContaining("bogus"));
  });

  it("finds nothing wrong in the demo mesh", () => {
    const { mesh, errors } = loadConfigDir(join(PROJECT_ROOT, "examples"));
    expect(analyze(mesh, errors, [{ nodeId: "ingressgateway", role: "gateway", labels: { istio: "ingressgateway" } }])).toEqual([]);
  });
});

describe("skiff analyze command", () => {
  const run = promisify(execFile);
  const skiff = (...args: string[]) => run(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), ...args], { cwd: PROJECT_ROOT });

  it("prints istioctl's lines, errors first, and exits 1 on an Error", async () => {
    const failed = await skiff("analyze", dir, "--no-control-plane").catch((error: { code: number; stdout: string }) => error);
    expect("code" in failed && failed.code).toBe(1);
    const lines = failed.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^Error \[IST0101\] \(/);
    expect(lines).toContain('Error [IST0101] (VirtualService shop/front routes.yaml) Referenced gateway not found: "missing-gw"');
    expect(lines.at(-1)).toMatch(/^Info: no control plane answered .* Gateway selectors were not checked/);
  });

  it("exits 0 on the demo mesh", async () => {
    const { stdout } = await skiff("analyze", join(PROJECT_ROOT, "examples"), "--no-control-plane");
    expect(stdout).toContain("No validation issues found");
  });
});
