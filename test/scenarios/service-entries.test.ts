// ServiceEntries as Istio reads them, through a real sidecar (issue 13 cases 1 and 9): a DNS entry without
// endpoints resolves its host itself; two entries for one host are one service with the endpoints of both; an entry
// with a workloadSelector sends to the WorkloadEntries it selects (workloads outside the mesh's pods, e.g. VMs).
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

describeE2E("scenario: ServiceEntries (DNS hosts, merged entries, WorkloadEntries)", () => {
  const upstreams: Upstream[] = [];
  let mesh: Mesh;
  const ports = { dns: 0, merged: 0, workloads: 0 };

  beforeAll(async () => {
    const [local, first, second, vm] = await Promise.all(["localhost", "catalog-a", "catalog-b", "vm-1"].map((name) => startUpstream({ name })));
    upstreams.push(local!, first!, second!, vm!);
    ports.dns = await freePort();
    ports.merged = await freePort();
    ports.workloads = await freePort();
    mesh = await startMesh(
      {
        // No endpoints: Envoy resolves the host (localhost, from /etc/hosts) and connects to the targetPort.
        "dns.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: local-dns, namespace: shop }
spec:
  hosts: [localhost]
  ports: [{ number: ${ports.dns}, name: http, targetPort: ${local!.port} }]
  resolution: DNS
`,
        "catalog.yaml": [first!, second!]
          .map(
            (upstream, index) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog-${index}, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  ports: [{ number: ${ports.merged}, name: http }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${upstream.port} } }]
`,
          )
          .join("---\n"),
        "vm.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: legacy, namespace: shop }
spec:
  hosts: [legacy.shop.svc.cluster.local]
  ports: [{ number: ${ports.workloads}, name: http }]
  resolution: STATIC
  workloadSelector: { labels: { app: legacy } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: vm-1, namespace: shop }
spec:
  address: 127.0.0.1
  labels: { app: legacy }
  ports: { http: ${vm!.port} }
`,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await Promise.all(upstreams.map((upstream) => upstream.stop()));
  });

  it("a DNS entry without endpoints reaches its host by name (case 1)", async () => {
    const tally = await sendMany(ports.dns, { count: 5, request: () => ({ headers: { host: "localhost" } }) });
    expect(tally.byStatus).toEqual({ 200: 5 });
    expect(tally.byUpstream).toEqual({ localhost: 5 });
  });

  it("two entries for one host share the traffic between the endpoints of both (case 9)", async () => {
    const tally = await sendMany(ports.merged, { count: 100, concurrency: 4, request: () => ({ headers: { host: "catalog.shop.svc.cluster.local" } }) });
    expect(tally.byStatus).toEqual({ 200: 100 });
    expect(tally.byUpstream["catalog-a"]).toBeGreaterThan(10);
    expect(tally.byUpstream["catalog-b"]).toBeGreaterThan(10);
  });

  it("a workloadSelector sends to the WorkloadEntries it selects", async () => {
    const tally = await sendMany(ports.workloads, { count: 5, request: () => ({ headers: { host: "legacy.shop.svc.cluster.local" } }) });
    expect(tally.byUpstream).toEqual({ "vm-1": 5 });
  });
});
