// Pods on one machine (issue 8 item 1): pods on a mesh bridge reach each other and the host's bridge address by name,
// and nothing else. The network is closed: no route leads out of a pod, and the host forwards nothing from a mesh.
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../../control/mesh/host.js";
import { startUpstream } from "../harness/upstream.js";
import { describePods } from "../harness/e2e.js";
import { type MeshNetwork, PodError, startMeshNetwork, type TestPod } from "../harness/pods.js";

/** A packet counter of the pod's eth0: what it sent onto the bridge, or received from it. */
function packets(pod: TestPod, direction: "tx" | "rx"): number {
  return Number(pod.exec(["cat", `/sys/class/net/eth0/statistics/${direction}_packets`]).stdout.trim());
}

/** TCP segments the pod's network stack received (its namespace's Tcp InSegs). The link's packet counter would also
 * count what the host's bridge may send a pod at any time (ARP probes of a neighbour entry going stale, multicast). */
function tcpSegmentsReceived(pod: TestPod): number {
  const lines = pod.exec(["cat", "/proc/net/snmp"]).stdout.split("\n").filter((line) => line.startsWith("Tcp:"));
  const [names, values] = lines.map((line) => line.trim().split(/\s+/));
  return Number(values[names.indexOf("InSegs")]);
}

/** Packets dropped by the host rules of a mesh (iptables counters). */
function droppedByMeshRules(mesh: MeshNetwork): number {
  return run(["iptables", "-w", "-L", "FORWARD", "-v", "-x", "-n"])
    .split("\n")
    .filter((line) => line.includes(`skiff-mesh:${mesh.name}`))
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0]), 0);
}

describePods("mesh network", () => {
  let mesh: MeshNetwork;
  let client: TestPod;
  let server: TestPod;

  beforeAll(() => {
    mesh = startMeshNetwork();
    client = mesh.addPod("client");
    server = mesh.addPod("server");
  });
  afterAll(() => mesh.stop());

  it("gives each pod an address from the mesh's subnet, and routes only to the mesh's subnets", () => {
    expect(client.address).toMatch(/^198\.18\.\d+\.\d+$/);
    expect(server.address).not.toBe(client.address);
    const routes = client.exec(["ip", "-4", "route"]).stdout;
    expect(routes).not.toMatch(/default/);
    expect(routes.trim().split("\n").map((line) => line.split(" ")[0]).sort()).toEqual([mesh.record.podSubnet, mesh.record.serviceSubnet].sort());
  });

  it("lets pods reach each other by name, and the host at its bridge address", async () => {
    const serverApp = await server.startApp();
    const clientApp = await client.startApp();
    await serverApp.listen(8080);
    const response = await clientApp.request("server", 8080, { path: "/hello" });
    expect(response.status).toBe(200);
    expect(response.headers["x-upstream"]).toBe("server");
    const [received] = await serverApp.received(8080);
    expect(received).toMatchObject({ path: "/hello", remoteAddress: client.address });

    const onHost = await startUpstream({ name: "host", host: mesh.hostAddress });
    try {
      const fromPod = await clientApp.request(mesh.hostAddress, onHost.port);
      expect(fromPod.headers["x-upstream"]).toBe("host");
      expect(onHost.requests[0].remoteAddress).toBe(client.address);
    } finally {
      await onHost.stop();
    }
  });

  it("resolves service names from the pod's hosts file; a service address nothing captures refuses at once", async () => {
    mesh.addService("server-headless", { pod: "server" });
    const vip = mesh.addService("catalog");
    expect(vip.address).toMatch(new RegExp(`^${mesh.record.serviceSubnet.replace(/0\/24$/, "").replaceAll(".", "\\.")}`));
    const clientApp = await client.startApp();
    const serverApp = await server.startApp();
    await serverApp.listen(8081);
    expect((await clientApp.request("server-headless", 8081)).headers["x-upstream"]).toBe("server");
    await expect(clientApp.connect("catalog", 80)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await expect(clientApp.connect("no-such-name", 80)).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("fails a connection to an address outside the range inside the pod: nothing is sent", async () => {
    const app = await client.startApp();
    const sentBefore = packets(client, "tx");
    const error = await app.connect("203.0.113.7", 80).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PodError);
    expect((error as PodError).code).toBe("ENETUNREACH");
    expect(packets(client, "tx")).toBe(sentBefore);
  });

  it("forwards nothing from a mesh to another interface, even when a pod routes through the host and the bridge forwards", async () => {
    // Another mesh of this test is the "other interface": should the rules fail, the packet stays on this machine.
    const other = startMeshNetwork();
    try {
      const target = other.addPod("target");
      const targetApp = await target.startApp();
      await targetApp.listen(8080);
      const app = await client.startApp();
      await expect(app.connect(target.address, 8080)).rejects.toMatchObject({ code: "ENETUNREACH" });

      // A pod that routes through the host anyway, with forwarding switched on for this mesh's bridge alone.
      expect(client.exec(["ip", "route", "add", other.record.podSubnet, "via", mesh.hostAddress]).status).toBe(0);
      const before = { dropped: droppedByMeshRules(mesh) + droppedByMeshRules(other), arrived: tcpSegmentsReceived(target) };
      run(["sysctl", "-qw", `net.ipv4.conf.${mesh.record.bridge}.forwarding=1`]);
      try {
        await expect(app.connect(target.address, 8080, 1500)).rejects.toBeInstanceOf(PodError);
      } finally {
        run(["sysctl", "-qw", `net.ipv4.conf.${mesh.record.bridge}.forwarding=0`]);
        client.exec(["ip", "route", "del", other.record.podSubnet]);
      }
      expect(droppedByMeshRules(mesh) + droppedByMeshRules(other)).toBeGreaterThan(before.dropped);
      // Nothing reached the other mesh's pod.
      expect(tcpSegmentsReceived(target)).toBe(before.arrived);
    } finally {
      await other.stop();
    }
  });

  it("gives every mesh its own bridge and subnets", async () => {
    const other = startMeshNetwork();
    try {
      expect(other.record.bridge).not.toBe(mesh.record.bridge);
      expect(other.record.podSubnet).not.toBe(mesh.record.podSubnet);
      expect(other.record.serviceSubnet).not.toBe(mesh.record.serviceSubnet);
      expect(other.hostAddress).not.toBe(mesh.hostAddress);
    } finally {
      await other.stop();
    }
  });
});
