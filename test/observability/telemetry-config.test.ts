// Telemetry resources and MeshConfig's telemetry fields as `skiff validate` and the control plane read them: a
// provider that does not exist, or of the wrong kind, is an error naming file, resource and field (Istio ignores
// such a reference silently, which is configuration that does nothing).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { formatConfigError, loadConfigDir } from "../../control/sources/index.js";

let dir: string;
function folder(files: Record<string, string>) {
  dir = mkdtempSync(join(tmpdir(), "skiff-telemetry-"));
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text);
  return loadConfigDir(dir);
}

afterEach(() => rmSync(dir, { recursive: true, force: true }));

const MESH = `defaultProviders: { tracing: [zipkin] }
extensionProviders:
- name: zipkin
  zipkin: { service: zipkin.istio-system.svc.cluster.local, port: 9411 }
`;

describe("Telemetry and MeshConfig telemetry validation", () => {
  it("reads Telemetry in telemetry.istio.io v1 and v1alpha1, and the mesh's providers with Istio's built-in prometheus", () => {
    const { mesh, errors } = folder({
      "meshconfig.yaml": MESH,
      "t.yaml": `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ randomSamplingPercentage: 50 }]
---
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: { name: no-metrics, namespace: shop }
spec:
  metrics: [{ providers: [{ name: prometheus }], overrides: [{ disabled: true }] }]
`,
    });
    expect(errors).toEqual([]);
    expect(mesh.telemetries.map((t) => `${t.namespace}/${t.name}`)).toEqual(["istio-system/mesh-default", "shop/no-metrics"]);
    expect(mesh.telemetry.extensionProviders.map((p) => p.name)).toEqual(["zipkin", "prometheus"]);
    expect(mesh.telemetry.defaultProviders).toEqual({ tracing: ["zipkin"], metrics: ["prometheus"] });
  });

  it("names the field of a provider that does not exist or is of the wrong kind", () => {
    const { errors } = folder({
      "meshconfig.yaml": `${MESH}defaultProviders: { tracing: [jaeger], metrics: [zipkin] }\n`.replace("defaultProviders: { tracing: [zipkin] }\n", ""),
      "t.yaml": `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: t, namespace: shop }
spec:
  tracing: [{ providers: [{ name: prometheus }] }]
`,
    });
    expect(errors.map(formatConfigError)).toEqual([
      'meshconfig.yaml: defaultProviders.tracing[0]: no extensionProvider named "jaeger" in meshconfig.yaml',
      'meshconfig.yaml: defaultProviders.metrics[0]: provider "zipkin" is not a metrics provider',
      't.yaml: Telemetry shop/t: spec.tracing[0].providers[0].name: provider "prometheus" is not a tracing provider',
    ]);
  });

  it("rejects a custom tag with two sources and a provider with two kinds", () => {
    const { errors } = folder({
      "meshconfig.yaml": "extensionProviders:\n- name: both\n  zipkin: { service: z, port: 9411 }\n  prometheus: {}\n",
      "t.yaml": `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: t, namespace: shop }
spec:
  tracing: [{ customTags: { user: { literal: { value: x }, header: { name: x-user } } } }]
`,
    });
    const messages = errors.map(formatConfigError);
    expect(messages).toContainEqual(expect.stringMatching(/^meshconfig\.yaml: extensionProviders\[0\]: exactly one of prometheus, zipkin or opentelemetry/));
    expect(messages).toContainEqual(expect.stringMatching(/^t\.yaml: Telemetry shop\/t: spec\.tracing\[0\]\.customTags\.user: exactly one of literal, environment or header/));
  });
});
