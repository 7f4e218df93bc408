// istio-init's capture rules with real sidecar Envoys (issue 8 item 1): an app's outbound TCP is redirected to its
// sidecar's 15001, inbound TCP to the receiving pod's sidecar on 15006, which delivers it from 127.0.0.6; the sidecar's
// own traffic (uid 1337), loopback and excluded ports are left alone. The sidecars here run the harness's hand-written
// passthrough config (original_dst listeners that stamp a header), to test the capture rules themselves.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { INBOUND_PASSTHROUGH_SOURCE, PROXY_UID } from "../../control/mesh/capture.js";
import { passthroughSidecarBootstrap } from "../harness/passthrough-sidecar.js";
import type { Envoy } from "../harness/envoy.js";
import { describePods } from "../harness/e2e.js";
import { type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";

describePods("traffic capture", () => {
  let mesh: MeshNetwork;
  let client: TestPod;
  let server: TestPod;
  let clientSidecar: Envoy;
  let serverSidecar: Envoy;
  let clientApp: PodApp;
  let serverApp: PodApp;

  beforeAll(async () => {
    mesh = startMeshNetwork();
    client = mesh.addPod("client", { capture: { excludeOutboundPorts: [9090] } });
    server = mesh.addPod("server", { capture: { excludeInboundPorts: [9091] } });
    [clientSidecar, serverSidecar] = await Promise.all([
      client.startSidecar({ bootstrap: passthroughSidecarBootstrap("client") }),
      server.startSidecar({ bootstrap: passthroughSidecarBootstrap("server") }),
    ]);
    [clientApp, serverApp] = await Promise.all([client.startApp(), server.startApp()]);
    for (const port of [8080, 9090, 9091]) await serverApp.listen(port);
  });
  afterAll(() => mesh.stop());

  /** The request the server app received last on `port`. */
  const lastReceived = async (port: number) => (await serverApp.received(port)).at(-1)!;

  it("installs Istio's chains and rules, in Istio's order", () => {
    const rules = client
      .exec(["iptables-save", "-t", "nat"])
      .stdout.split("\n")
      .filter((line) => line.startsWith("-A"));
    // As iptables-save prints them (it adds `-m tcp`, and orders the chains by name after the built-in ones); the
    // rule order within each chain is what istio-iptables installs for `-d 15090,15021,15020 -o 9090`, plus 15000.
    expect(rules).toEqual([
      "-A PREROUTING -p tcp -j ISTIO_INBOUND",
      "-A OUTPUT -j ISTIO_OUTPUT",
      "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
      "-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020,15000 -j RETURN",
      "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
      "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
      "-A ISTIO_OUTPUT -p tcp -m tcp --dport 9090 -j RETURN",
      "-A ISTIO_OUTPUT -p udp -m udp --dport 9090 -j RETURN",
      "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
      "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
      "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
      "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
      "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
      "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ]);
  });

  it("redirects the app's outbound call to its sidecar's 15001, and the server pod's inbound to its sidecar's 15006", async () => {
    const response = await clientApp.request("server", 8080, { path: "/captured" });
    expect(response.status).toBe(200);
    const received = await lastReceived(8080);
    expect(received.path).toBe("/captured");
    expect(received.headers["x-outbound-sidecar"]).toBe("client");
    expect(received.headers["x-inbound-sidecar"]).toBe("server");
    // Delivered by the server's sidecar, from the inbound passthrough address.
    expect(received.remoteAddress).toBe(INBOUND_PASSTHROUGH_SOURCE);
    expect(await clientSidecar.stat("listener.0.0.0.0_15001.downstream_cx_total")).toBeGreaterThan(0);
    expect(await serverSidecar.stat("listener.0.0.0.0_15006.downstream_cx_total")).toBeGreaterThan(0);
    expect(await clientSidecar.stat("listener.0.0.0.0_15006.downstream_cx_total")).toBe(0);
  });

  it("leaves the sidecar's own traffic (uid 1337) uncaptured on the way out; the receiving pod still captures it", async () => {
    const asProxy = await client.startApp({ uid: PROXY_UID });
    await asProxy.request("server", 8080, { path: "/as-proxy" });
    const received = await lastReceived(8080);
    expect(received.path).toBe("/as-proxy");
    expect(received.headers["x-outbound-sidecar"]).toBeUndefined();
    expect(received.headers["x-inbound-sidecar"]).toBe("server");
  });

  it("leaves excluded outbound and inbound ports alone", async () => {
    await clientApp.request("server", 9090, { path: "/outbound-excluded" });
    const outboundExcluded = await lastReceived(9090);
    expect(outboundExcluded.headers["x-outbound-sidecar"]).toBeUndefined();
    expect(outboundExcluded.headers["x-inbound-sidecar"]).toBe("server");

    await clientApp.request("server", 9091, { path: "/inbound-excluded" });
    const inboundExcluded = await lastReceived(9091);
    expect(inboundExcluded.headers["x-outbound-sidecar"]).toBe("client");
    expect(inboundExcluded.headers["x-inbound-sidecar"]).toBeUndefined();
    expect(inboundExcluded.remoteAddress).toBe(client.address);
  });

  it("leaves loopback alone: the app calling itself on 127.0.0.1 or on its own address", async () => {
    await clientApp.listen(7070);
    for (const host of ["127.0.0.1", client.address]) {
      await clientApp.request(host, 7070, { path: `/self/${host}` });
      const received = (await clientApp.received(7070)).at(-1)!;
      expect(received.path).toBe(`/self/${host}`);
      expect(received.headers["x-outbound-sidecar"]).toBeUndefined();
      expect(received.headers["x-inbound-sidecar"]).toBeUndefined();
    }
  });

  it("runs the sidecar as uid and gid 1337, with no supplementary groups", () => {
    const status = readFileSync(`/proc/${clientSidecar.pid}/status`, "utf8");
    expect(status).toMatch(/^Uid:\s+1337\s+1337\s+1337\s+1337$/m);
    expect(status).toMatch(/^Gid:\s+1337\s+1337\s+1337\s+1337$/m);
    expect(status).toMatch(/^Groups:\s*$/m);
  });

  it("keeps the sidecar's admin port reachable from the host on the pod's address (excluded from capture)", async () => {
    expect(serverSidecar.adminUrl).toBe(`http://${server.address}:15000`);
    expect(await serverSidecar.admin("/ready")).toContain("LIVE");
  });
});
