// Issue 9 item 5: the outlier-detector filter delivered by the control plane, configured by YAML only. A
// TrafficExtension puts the filter on the sidecar's outbound listener for the service; the DestinationRule's
// `skiff.dev/override-host` annotation gives the service's cluster Envoy's override-host load-balancing policy,
// which reads the header the filter sets (control/translate/override-host.ts). Two endpoints, one always answering
// 500. Without the annotation the filter ejects the broken host but its header steers nothing; once the annotation
// is added (a live edit), no request reaches the ejected host.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

const OUTLIER_DETECTOR = readFileSync(join(PROJECT_ROOT, "build", "filters", "outlier-detector.wasm"));
const HOST = "backend.shop.svc.cluster.local";
const CONSECUTIVE_5XX = 3;

const destinationRule = (annotation: boolean) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: shop
${annotation ? "  annotations: { skiff.dev/override-host: x-skiff-outlier-host }\n" : ""}spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
`;

describeE2E("scenario: the outlier-detector filter steering by the override-host policy", () => {
  let healthy: Upstream;
  let broken: Upstream;
  let mesh: Mesh;
  let port: number;
  let cluster: string;

  beforeAll(async () => {
    healthy = await startUpstream({ name: "healthy" });
    broken = await startUpstream({ name: "broken", script: () => ({ status: 500 }) });
    port = await freePort();
    cluster = `outbound|${port}||${HOST}`;
    mesh = await startMesh(
      {
        "backend.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: backend, namespace: shop }
spec:
  hosts: [${HOST}]
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  endpoints:
  - { address: 127.0.0.1, ports: { http: ${healthy.port} } }
  - { address: 127.0.0.1, ports: { http: ${broken.port} } }
`,
        "backend-dr.yaml": destinationRule(false),
        // On the webapp sidecar's outbound listener for the backend's port only (one filter instance per cluster:
        // maxEjectionPercent counts the hosts it has seen).
        "outlier-detector.yaml": `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata: { name: outlier-detector, namespace: default }
spec:
  selector: { matchLabels: { app: webapp } }
  match: [{ mode: CLIENT, ports: [{ number: ${port} }] }]
  wasm:
    url: modules/outlier-detector.wasm
    failStrategy: FAIL_OPEN
    pluginConfig:
      consecutive5xxErrors: ${CONSECUTIVE_5XX}
      interval: 100ms
      baseEjectionTime: 600s
      maxEjectionPercent: 50
      hostHeader: x-skiff-outlier-host
`,
        "modules/outlier-detector.wasm": OUTLIER_DETECTOR,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await healthy?.stop();
    await broken?.stop();
  });

  const requests = (count: number) => sendMany(port, { count, request: () => ({ headers: { host: "backend.shop.svc.cluster.local" } }) });

  it("without the annotation the filter ejects the broken host, but the cluster ignores its header", async () => {
    const cds = await mesh.envoy.admin("/config_dump?resource=dynamic_active_clusters");
    expect(cds).toContain(cluster);
    expect(cds).not.toContain("envoy.load_balancing_policies.override_host");
    // Round robin: the broken host's third 500 ejects it.
    const first = await requests(4 * CONSECUTIVE_5XX);
    expect(first.byUpstream.broken).toBeGreaterThanOrEqual(CONSECUTIVE_5XX);
    await eventually(async () => expect(await mesh.envoy.stat("wasmcustom.outlier_detector.ejections")).toBe(1));
    // The filter now names only the healthy host in its header, but round robin still sends every other request to
    // the broken one.
    const after = await requests(20);
    expect(await mesh.envoy.stat("wasmcustom.outlier_detector.steered")).toBeGreaterThanOrEqual(20);
    expect(after.byUpstream.broken).toBeGreaterThanOrEqual(8);
    expect(after.byStatus[500]).toBe(after.byUpstream.broken);
  });

  it("with skiff.dev/override-host on the DestinationRule, no request reaches the ejected host", async () => {
    mesh.write("backend-dr.yaml", destinationRule(true));
    await eventually(async () => expect(await mesh.envoy.admin("/config_dump?resource=dynamic_active_clusters")).toContain("envoy.load_balancing_policies.override_host"));
    const brokenBefore = broken.requests.length;
    const after = await requests(40);
    expect(after.byStatus).toEqual({ 200: 40 });
    expect(after.byUpstream).toEqual({ healthy: 40 });
    expect(broken.requests.length).toBe(brokenBefore);
    // Still one ejection: the filter kept its state across the cluster update; only the cluster's policy changed.
    expect(await mesh.envoy.stat("wasmcustom.outlier_detector.ejections")).toBe(1);
  });
});
