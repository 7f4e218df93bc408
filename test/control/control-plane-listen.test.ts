// `skiff control-plane --listen / --http-listen`: where each server may listen. Secured xDS (TLS, a workload
// certificate required) may listen on any address, as a pod's IP in a cluster; plain-text xDS and the HTTP server
// (modules, /status, /metrics, /debug: no authentication) only on loopback or a mesh bridge, and the CLI says why.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { status as grpcStatus } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { TypeUrl } from "../../control/resources.js";
import { CHILD_MARKER, testRunId } from "../harness/processes.js";
import { tlsChannel } from "../security/identities.js";
import { AdsClient } from "./ads-client.js";

const CLI = ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts")];

describe("skiff control-plane --listen", () => {
  const dir = mkdtempSync(join(tmpdir(), "skiff-listen-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const refused = (...args: string[]) => spawnSync(process.execPath, [...CLI, "control-plane", "--config", dir, "--data-dir", join(dir, "data"), ...args], { cwd: PROJECT_ROOT, encoding: "utf8", timeout: 60_000 });

  it("refuses plain-text xDS, or the HTTP server, on an address other machines reach", () => {
    const plaintext = refused("--plaintext", "--listen", "10.1.2.3:15010");
    expect(plaintext.status).toBe(1);
    expect(plaintext.stderr).toContain("skiff: cannot listen on 10.1.2.3: xDS with --plaintext answers without authentication");
    expect(plaintext.stderr).toContain("without --plaintext (TLS and workload certificates) it may listen on any address");

    const http = refused("--listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0");
    expect(http.status).toBe(1);
    expect(http.stderr).toContain("skiff: cannot serve HTTP on 0.0.0.0: the HTTP server (modules, /status, /metrics, /debug) answers without authentication");
    // Refused before anything was made: no CA in the data directory.
    expect(() => readFileSync(join(dir, "data", "ca", "root-cert.pem"))).toThrow();
  });

  it("refuses the admission webhook without a cluster to call it or a CA for its certificate", () => {
    const webhook = refused("--plaintext", "--admission-webhook");
    expect(webhook.status).toBe(1);
    expect(webhook.stderr).toContain("--admission-webhook needs --kubernetes (the API server calls it) and the CA for its certificate (not --plaintext)");
  });

  it("serves secured xDS on any address (here 0.0.0.0) and keeps the HTTP server on 127.0.0.1", async () => {
    const child = spawn(process.execPath, [...CLI, "control-plane", "--config", dir, "--data-dir", join(dir, "data"), "--listen", "0.0.0.0:0", "--http-port", "0"], {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, [CHILD_MARKER]: testRunId() },
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    try {
      let started: RegExpExecArray | null = null;
      for (let waited = 0; !started && child.exitCode === null && waited < 60_000; waited += 100) {
        await sleep(100);
        started = /xDS \(ADS\) on 0\.0\.0\.0:(\d+) over TLS.*modules, \/status and \/metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      }
      expect(started, output).not.toBeNull();
      const [xdsPort, httpPort] = [Number(started![1]), Number(started![2])];

      // xDS answers only an authenticated workload: without a certificate, the stream ends before anything is sent.
      const client = new AdsClient(xdsPort, false, tlsChannel(readFileSync(join(dir, "data", "ca", "root-cert.pem"), "utf8")));
      try {
        client.send({ node: { id: "anonymous", metadata: { ROLE: "sidecar", NAMESPACE: "shop" } }, type_url: TypeUrl.Cluster });
        let response: unknown;
        void client.next().then((first) => (response = first));
        for (let waited = 0; response === undefined && client.closed === undefined && waited < 20_000; waited += 25) await sleep(25);
        expect(response).toBeUndefined();
        expect((client.closed as { code?: number } | undefined)?.code).toBe(grpcStatus.UNAUTHENTICATED);
      } finally {
        client.close();
      }
      // The HTTP server is there for the operator on the loopback (kubectl port-forward reaches it in a pod).
      expect((await fetch(`http://127.0.0.1:${httpPort}/status`)).status).toBe(200);
    } finally {
      child.kill("SIGTERM");
      if (child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
    }
  }, 120_000);
});
