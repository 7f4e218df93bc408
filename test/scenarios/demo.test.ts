// The README's first command ends in `skiff demo`: it must come up with the coolstore mesh of examples/ on its fixed
// ports, answer the curl lines it prints, and stop everything on Ctrl-C (SIGINT).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { connect } from "node:net";
import { hasNetAdmin } from "../../control/mesh/host.js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { CHILD_MARKER, testRunId } from "../harness/processes.js";

describeE2E("skiff demo", () => {
  let demo: ChildProcess;
  let output = "";
  let exited: Promise<number | null>;

  beforeAll(async () => {
    demo = spawn(process.execPath, ["--import", "tsx", "control/cli/main.ts", "demo"], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, [CHILD_MARKER]: testRunId() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    demo.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    demo.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    exited = new Promise((resolve) => demo.once("exit", resolve));
    const ready = await Promise.race([
      new Promise<boolean>((resolve) => {
        const check = setInterval(() => {
          if (output.includes("Ctrl-C stops everything.")) {
            clearInterval(check);
            resolve(true);
          }
        }, 100);
        void exited.then(() => clearInterval(check));
      }),
      exited.then(() => false),
    ]);
    if (!ready) throw new Error(`skiff demo did not come up:\n${output}`);
  });

  afterAll(async () => {
    if (demo.exitCode === null && demo.signalCode === null) {
      demo.kill("SIGKILL");
      await exited;
    }
  });

  it("serves the printed curl lines", async () => {
    const webapp = await send(8080, { path: "/api/catalog", headers: { host: "webapp.istioinaction.io", "x-istio-cohort": "internal" } });
    expect(webapp.status).toBe(200);
    const body = JSON.parse(webapp.body) as { catalog: { status: number; body: { version: string } } };
    expect(body.catalog).toMatchObject({ status: 200, body: { version: "v2" } });
    const missing = await send(8080, { headers: { host: "nobody.istioinaction.io" } });
    expect(missing.status).toBe(404);
    const expired = await send(8080, { path: "/items", headers: { host: "catalog.istioinaction.io", "x-skiff-timeout-ms": "0" } });
    expect(expired.status).toBe(504);
    expect(expired.headers["x-skiff-deadline"]).toBe("expired");
    // The WasmPlugins' failStrategy reaches Envoy as failure_policy, not the deprecated fail_open, so Envoy (at warn
    // level) has nothing to complain about.
    expect(output).not.toMatch(/deprecated option/i);
  });

  it("runs the services in pods with capturing sidecars where it can (Linux, root): webapp calls catalog through them", async () => {
    if (!hasNetAdmin()) {
      expect(output).toContain("the loopback layout (services on 127.0.0.1, no sidecars): the mesh layout, with pods and sidecars, needs Linux and root");
      return;
    }
    const webapp = /webapp (198\.\d+\.\d+\.\d+)/.exec(output)?.[1];
    expect(webapp, output).toBeDefined();
    const routed = async () => {
      const filter = encodeURIComponent("^cluster\\.outbound\\|3000\\|version-v[12]\\|catalog\\.istioinaction\\.svc\\.cluster\\.local\\.upstream_rq_200$");
      const stats = await (await fetch(`http://${webapp}:15000/stats?filter=${filter}`)).text();
      return [...stats.matchAll(/: (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
    };
    const before = await routed();
    for (let i = 0; i < 10; i++) {
      const response = await send(8080, { path: "/api/catalog", headers: { host: "webapp.istioinaction.io" } });
      expect(JSON.parse(response.body).catalog.status).toBe(200);
    }
    // Every catalog call left webapp's pod through its sidecar, by the mesh VirtualService's subsets.
    expect((await routed()) - before).toBe(10);
  });

  it("is secured in the mesh layout: mutual TLS between the pods, catalog serves only the identities its policy allows", async () => {
    if (!hasNetAdmin()) return;
    expect(output).toMatch(/xDS \(ADS\) on 198\.\d+\.\d+\.\d+:18000 over TLS, with the CA/);
    const address = (pod: string) => new RegExp(`${pod} (198\\.\\d+\\.\\d+\\.\\d+)`).exec(output)![1]!;
    const stat = async (pod: string, pattern: string) => {
      const stats = await (await fetch(`http://${address(pod)}:15000/stats?filter=${encodeURIComponent(pattern)}`)).text();
      return [...stats.matchAll(/: (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
    };
    const catalogs = async (pattern: string) => (await stat("catalog-v1", pattern)) + (await stat("catalog-v2", pattern));
    const allowedBefore = await catalogs("^http\\.inbound_.*\\.rbac\\.allowed$");
    for (let i = 0; i < 5; i++) {
      const response = await send(8080, { path: "/api/catalog", headers: { host: "webapp.istioinaction.io" } });
      expect(JSON.parse(response.body).catalog.status).toBe(200);
    }
    // webapp's sidecar reached catalog by TLS (auto-mTLS: the endpoints have a sidecar), the catalog sidecars accepted
    // TLS handshakes on their inbound listener (STRICT: there is no plain-text chain), and their RBAC filter allowed
    // the calls by the peer certificate's principal (webapp's).
    expect(await stat("webapp", "^cluster\\.outbound\\|3000\\|version-v[12]\\|catalog\\.istioinaction\\.svc\\.cluster\\.local\\.ssl\\.handshake$")).toBeGreaterThan(0);
    expect(await catalogs("^listener\\.0\\.0\\.0\\.0_15006\\.ssl\\.handshake$")).toBeGreaterThan(0);
    expect((await catalogs("^http\\.inbound_.*\\.rbac\\.allowed$")) - allowedBefore).toBeGreaterThanOrEqual(5);
    // A mesh identity the AuthorizationPolicy does not name (catalog-v1's own, calling catalog through its sidecar by
    // mTLS) is refused by catalog's sidecar with 403.
    const deniedBefore = await catalogs("^http\\.inbound_.*\\.rbac\\.denied$");
    const refused = execFileSync("ip", ["netns", "exec", "skiff.demo.catalog-v1", "curl", "-s", "-m", "10", "-w", " %{http_code}", "http://catalog.istioinaction.svc.cluster.local:3000/items"], { encoding: "utf8" });
    expect(refused).toBe("RBAC: access denied 403");
    expect((await catalogs("^http\\.inbound_.*\\.rbac\\.denied$")) - deniedBefore).toBe(1);
    // Plain text from outside the mesh (this host, straight to a catalog pod's port) is refused under STRICT.
    await expect(fetch(`http://${address("catalog-v1")}:9082/items`, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow();
  });

  it("stops the control plane, Envoy and the services on Ctrl-C", async () => {
    demo.kill("SIGINT");
    expect(await exited).toBe(0);
    for (const port of [8080, 9081, 9082, 9083, 9901, 18000, 18080]) {
      const open = await new Promise<boolean>((resolve) => {
        const socket = connect(port, "127.0.0.1");
        socket.once("connect", () => (socket.destroy(), resolve(true)));
        socket.once("error", () => resolve(false));
      });
      expect(open, `port ${port}`).toBe(false);
    }
    // The mesh layout's pods (network namespaces skiff.demo.*) are gone with it.
    expect(execFileSync("ip", ["netns", "list"], { encoding: "utf8" })).not.toContain("skiff.demo.");
  });
});
