// TCP and TLS between pods (issue 8 items 3 and 7), configured only by the control plane: a client pod's calls are
// captured by its sidecar (istio-init's rules) and routed by VirtualServices bound to the mesh. A `tcp` route splits
// connections 80/20 between two server pods (a server-first protocol: the server speaks first, so nothing but the
// connection itself can be routed); a `tls` route passes TLS by SNI, unterminated, to a server pod that terminates it
// (the client sees that server's certificate), and a name no route matches gets no connection to anyone.
import { afterAll, beforeAll, expect, it } from "vitest";
import { selfSignedCertificate } from "../harness/certificates.js";
import { type Envoy, waitFor } from "../harness/envoy.js";
import { describePods } from "../harness/e2e.js";
import { type MeshNetwork, type PodApp, PodError, startMeshNetwork } from "../harness/pods.js";

const GREETER = "greeter.shop.svc.cluster.local";
const GREETER_PORT = 9000;
const SECURE = "secure.shop.svc.cluster.local";
const TLS_PORT = 443;

describePods("TCP and TLS between pods through the client's sidecar", () => {
  let mesh: MeshNetwork;
  let sidecar: Envoy;
  let client: PodApp;
  const certificate = selfSignedCertificate(SECURE);

  beforeAll(async () => {
    mesh = startMeshNetwork();
    const greeters = { a: mesh.addPod("greeter-a"), b: mesh.addPod("greeter-b") };
    for (const [name, pod] of Object.entries(greeters)) await (await pod.startApp()).greet(GREETER_PORT, name);
    const secure = mesh.addPod("secure");
    await (await secure.startApp()).greet(TLS_PORT, "secure", certificate);
    // Service addresses (VIPs) every pod resolves; only the client's sidecar answers them, by the listener on each.
    const greeterVip = mesh.addService(GREETER).address;
    const secureVip = mesh.addService(SECURE).address;
    const controlPlane = await mesh.startControlPlane({
      "greeter.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter, namespace: shop }
spec:
  hosts: [${GREETER}]
  addresses: [${greeterVip}]
  location: MESH_INTERNAL
  ports: [{ number: ${GREETER_PORT}, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints:
  - { address: ${greeters.a.address}, labels: { version: a } }
  - { address: ${greeters.b.address}, labels: { version: b } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: greeter, namespace: shop }
spec:
  host: ${GREETER}
  subsets:
  - { name: a, labels: { version: a } }
  - { name: b, labels: { version: b } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter, namespace: shop }
spec:
  hosts: [${GREETER}]
  tcp:
  - route:
    - { destination: { host: ${GREETER}, subset: a }, weight: 80 }
    - { destination: { host: ${GREETER}, subset: b }, weight: 20 }
`,
      "secure.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: secure, namespace: shop }
spec:
  hosts: [${SECURE}]
  addresses: [${secureVip}]
  location: MESH_INTERNAL
  ports: [{ number: ${TLS_PORT}, name: tls, protocol: TLS }]
  resolution: STATIC
  endpoints: [{ address: ${secure.address} }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: secure, namespace: shop }
spec:
  hosts: [${SECURE}]
  tls:
  - match: [{ sniHosts: [${SECURE}] }]
    route: [{ destination: { host: ${SECURE}, port: { number: ${TLS_PORT} } } }]
`,
    });
    const pod = mesh.addPod("client", { capture: true, namespace: "shop", labels: { app: "client" } });
    sidecar = await pod.startSidecar({ bootstrap: pod.sidecarBootstrap(controlPlane) });
    await waitFor(async () => {
      const listeners = await sidecar.admin("/listeners");
      return listeners.includes(`${greeterVip}:${GREETER_PORT}`) && listeners.includes(`${secureVip}:${TLS_PORT}`);
    }, "the client sidecar's listeners on both service addresses");
    client = await pod.startApp();
  });
  afterAll(() => mesh?.stop());

  it("splits TCP connections 80/20 between the two server pods by the tcp route's weights", async () => {
    const connections = 300;
    const said: string[] = [];
    for (let batch = 0; batch < connections / 10; batch++) {
      said.push(...(await Promise.all(Array.from({ length: 10 }, () => client.greeting(GREETER, GREETER_PORT)))).map((g) => g.said));
    }
    const toA = said.filter((name) => name === "a").length;
    expect(toA + said.filter((name) => name === "b").length).toBe(connections);
    // 80% of 300 = 240; the binomial standard deviation is ~7: within 4 of them.
    expect(toA).toBeGreaterThanOrEqual(212);
    expect(toA).toBeLessThanOrEqual(268);
    // Through the sidecar, by the subsets' clusters (a direct connection to the address would have been refused).
    const total = async (subset: string) => (await sidecar.stat(`cluster.outbound|${GREETER_PORT}|${subset}|${GREETER}.upstream_cx_total`)) ?? 0;
    expect((await total("a")) + (await total("b"))).toBe(connections);
  });

  it("passes TLS through by SNI to the pod that terminates it: the client sees that pod's certificate", async () => {
    const greeting = await client.greeting(SECURE, TLS_PORT, { servername: SECURE, ca: certificate.cert });
    expect(greeting).toEqual({ said: "secure", certificateFor: SECURE });
    expect(await sidecar.stat(`cluster.outbound|${TLS_PORT}||${SECURE}.upstream_cx_total`)).toBe(1);
  });

  it("gives a TLS connection with a name no route matches to no one", async () => {
    const refused = client.greeting(SECURE, TLS_PORT, { servername: "other.shop.svc.cluster.local", ca: certificate.cert });
    await expect(refused).rejects.toBeInstanceOf(PodError);
    expect(await sidecar.stat(`cluster.outbound|${TLS_PORT}||${SECURE}.upstream_cx_total`)).toBe(1);
  });
});
