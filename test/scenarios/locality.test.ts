// Locality load balancing in a real Envoy (issue 8 item 4, issue 13 case 11): a sidecar in r1/z1 in front of a
// service with endpoints in r1/z1, r1/z2 and r2/z1. Failover moves traffic zone by zone as outlier detection ejects
// the nearer endpoints; `distribute` splits traffic between localities by weight; retryRemoteLocalities retries in
// another locality where retries without it stay on the failing local endpoint.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

const HOST = "catalog.shop.svc.cluster.local";

describeE2E("scenario: locality load balancing", () => {
  let local: Upstream;
  let zone2: Upstream;
  let remote: Upstream;
  let mesh: Mesh;
  let port: number;

  const entry = () => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${HOST}]
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  endpoints:
  - { address: 127.0.0.1, ports: { http: ${local.port} }, locality: r1/z1 }
  - { address: 127.0.0.1, ports: { http: ${zone2.port} }, locality: r1/z2 }
  - { address: 127.0.0.1, ports: { http: ${remote.port} }, locality: r2/z1 }
`;
  const rule = (trafficPolicy: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: ${HOST}
  trafficPolicy: ${trafficPolicy}
`;
  const route = (retries: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [${HOST}]
  http:
  - route: [{ destination: { host: ${HOST} } }]
    retries: ${retries}
`;
  const send = (count: number) => sendMany(port, { count, request: () => ({ headers: { host: HOST } }) });
  const healthy = () => ({});

  beforeAll(async () => {
    local = await startUpstream({ name: "local" });
    zone2 = await startUpstream({ name: "zone2" });
    remote = await startUpstream({ name: "remote" });
    port = await freePort();
    mesh = await startMesh({ "se.yaml": entry(), "dr.yaml": rule("{ outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 } }") }, {
      ...SIDECAR,
      locality: { region: "r1", zone: "z1" },
    });
  });

  afterAll(async () => {
    await mesh?.stop();
    for (const upstream of [local, zone2, remote]) await upstream?.stop();
  });

  describe("failover (outlier detection on: Istio's default locality load balancing)", () => {
    it("serves from the proxy's own zone while it is healthy", async () => {
      await eventually(async () => expect((await send(20)).byUpstream).toEqual({ local: 20 }));
    });

    it("moves to the same region's other zone when the local endpoint is ejected, then to the other region", async () => {
      // The first 500 ejects an endpoint (consecutive5xxErrors: 1), which empties its priority; Envoy's load balancers
      // see the ejection shortly after (on the workers), so the move is awaited, then every request lands there.
      local.setScript(() => ({ status: 500 }));
      await eventually(async () => expect((await send(5)).byUpstream).toEqual({ zone2: 5 }));
      expect(await send(20)).toMatchObject({ byUpstream: { zone2: 20 }, byStatus: { 200: 20 } });
      zone2.setScript(() => ({ status: 500 }));
      await eventually(async () => expect((await send(5)).byUpstream).toEqual({ remote: 5 }));
      expect(await send(20)).toMatchObject({ byUpstream: { remote: 20 }, byStatus: { 200: 20 } });
      expect(await mesh.envoy.stat(`cluster.outbound|${port}||${HOST}.outlier_detection.ejections_enforced_consecutive_5xx`)).toBe(2);
    });
  });

  describe("distribute", () => {
    it("splits the r1/z1 proxy's traffic 80/20 between r1/z1 and r2, and sends none to r1/z2", async () => {
      local.setScript(healthy);
      zone2.setScript(healthy);
      // A new rule without outlier detection: new clusters, nothing ejected.
      mesh.write("dr.yaml", rule(`{ loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { distribute: [{ from: "r1/z1/*", to: { "r1/z1/*": 80, "r2/*": 20 } }] } } }`));
      // Until the new clusters are in use the old ones (local and zone2 ejected) send everything to remote.
      await eventually(async () => {
        const tally = await send(20);
        expect(tally.byUpstream.local ?? 0).toBeGreaterThan(0);
        expect(tally.byUpstream.zone2 ?? 0).toBe(0);
      });
      const tally = await send(200);
      expect(tally.byStatus).toEqual({ 200: 200 });
      expect(tally.byUpstream.zone2 ?? 0).toBe(0);
      // Envoy picks localities by weight (its EDF scheduler), so the split is close to 160/40.
      expect(tally.byUpstream.remote).toBeGreaterThanOrEqual(25);
      expect(tally.byUpstream.remote).toBeLessThanOrEqual(60);
      expect(tally.byUpstream.local).toBe(200 - tally.byUpstream.remote!);
    });
  });

  describe("issue 13 case 11: retryRemoteLocalities", () => {
    it("retries a failing local endpoint in another locality; without it retries stay local", async () => {
      // Outlier detection that ejects nothing (consecutive5xxErrors: 0) still gives each locality its priority.
      mesh.write("dr.yaml", rule("{ outlierDetection: { consecutive5xxErrors: 0 } }"));
      local.setScript(() => ({ status: 503 }));
      mesh.write("vs.yaml", route("{ attempts: 2, retryOn: 5xx }"));
      await eventually(async () => expect((await send(5)).byStatus).toEqual({ 503: 5 }));
      const before = { zone2: zone2.requests.length, remote: remote.requests.length };
      expect(await send(10)).toMatchObject({ byStatus: { 503: 10 } });
      expect({ zone2: zone2.requests.length, remote: remote.requests.length }).toEqual(before);

      mesh.write("vs.yaml", route("{ attempts: 2, retryOn: 5xx, retryRemoteLocalities: true }"));
      // The third attempt goes to the next priority (r1/z2): previous_priorities with update_frequency 2.
      await eventually(async () => expect((await send(5)).byStatus).toEqual({ 200: 5 }));
      expect(await send(10)).toMatchObject({ byStatus: { 200: 10 }, byUpstream: { zone2: 10 } });

      // With one retry there is no third attempt: the retry stays local (what the validation warning says).
      mesh.write("vs.yaml", route("{ attempts: 1, retryOn: 5xx, retryRemoteLocalities: true }"));
      await eventually(async () => expect((await send(5)).byStatus).toEqual({ 503: 5 }));
    });
  });
});
