// A filter author's workflow outside this repository, from the packed tarballs: `npm pack` both packages, install
// them into an empty project, then `skiff new filter`, `skiff build`, the scaffolded emulator test with vitest,
// `skiff run` with a request through the local Envoy, and the same filter delivered as a WasmPlugin by the packed
// control plane (which proves the package carries what the control plane needs at run time). Installing needs only
// the npm registry (and mostly its cache, which `npm ci` of this repository filled).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "yaml";
import { afterAll, beforeAll, expect, it } from "vitest";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startEnvoy } from "../harness/envoy.js";
import { CHILD_MARKER, testRunId } from "../harness/processes.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, gatewayRoute, serviceEntry } from "../scenarios/mesh.js";

const MINUTE = 60_000;
const repository = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> };

/** The environment of a command in the user's project: this test run's own variables (vitest's, npm's from
 * `npm test`) would change how npm and vitest behave there. */
function userEnvironment(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|VITEST|NODE_OPTIONS$|TEST$|INIT_CWD$)/.test(name)));
  return { ...env, ENVOY_BIN: locateEnvoy().path, [CHILD_MARKER]: testRunId(), NO_COLOR: "1" };
}

/** Runs a command to its end; returns what it printed (stdout and stderr, or stdout alone). */
function run(command: string, args: string[], cwd: string, timeoutMs: number, only: "stdout" | "all" = "all"): string {
  const result = spawnSync(command, args, { cwd, env: userEnvironment(), encoding: "utf8", timeout: timeoutMs });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}) in ${cwd}:\n${output}`);
  return only === "stdout" ? result.stdout : output;
}

/** Starts a long-running command in its own process group, as a shell runs it, and collects its output. */
function start(command: string, args: string[], cwd: string): { child: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const child = spawn(command, args, { cwd, env: userEnvironment(), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    output: () => output,
    // Ctrl-C in a terminal: SIGINT to the whole group (npx, skiff, Envoy), then wait until every one of them is gone.
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGINT");
      await exited;
      for (let i = 0; i < 300 && groupAlive(child.pid!); i++) await sleep(100);
      expect(groupAlive(child.pid!), `processes of \`${command} ${args.join(" ")}\` still running after Ctrl-C`).toBe(false);
    },
  };
}

function groupAlive(group: number): boolean {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForOutput(process: { output: () => string; child: ChildProcess }, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(process.output());
    if (match) return match;
    if (process.child.exitCode !== null) throw new Error(`exited (${process.child.exitCode}) before printing ${pattern}:\n${process.output()}`);
    if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms:\n${process.output()}`);
    await sleep(100);
  }
}

describeE2E("a filter author's workflow, from the packed tarballs", () => {
  let packs: string;
  let project: string;
  let upstream: Upstream;
  const tarballs: Record<string, { file: string; files: string[] }> = {};

  beforeAll(async () => {
    packs = mkdtempSync(join(tmpdir(), "skiff-packs-"));
    project = mkdtempSync(join(tmpdir(), "skiff-author-"));
    upstream = await startUpstream({ name: "backend" });
  });

  afterAll(async () => {
    await upstream?.stop();
    for (const dir of [packs, project]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("packs both packages with their built JavaScript, declarations and README, and no tests", () => {
    for (const workspace of ["sdk", "control"]) {
      // stdout holds the prepack build's output, then the JSON.
      const stdout = run("npm", ["pack", "--json", "--pack-destination", packs], join(PROJECT_ROOT, workspace), 5 * MINUTE, "stdout");
      const [packed] = JSON.parse(stdout.slice(stdout.search(/^\[/m))) as Array<{
        name: string; filename: string; files: Array<{ path: string }>;
      }>;
      tarballs[packed.name] = { file: join(packs, packed.filename), files: packed.files.map((f) => f.path) };
    }
    const sdk = tarballs["@skiff/proxy-wasm"].files;
    expect(sdk).toEqual(expect.arrayContaining([
      "package.json", "README.md", "asconfig.json", "index.ts", "dispatcher.ts", "assembly/contexts.ts",
      "dist/testing/index.js", "dist/testing/index.d.ts", "dist/tools/compile.js", "transform/exports.js",
    ]));
    const skiff = tarballs.skiff.files;
    expect(skiff).toEqual(expect.arrayContaining(["package.json", "README.md", "bin/skiff.js", "dist/cli/main.js", "dist/index.js", "dist/index.d.ts"]));
    for (const files of [sdk, skiff]) expect(files.filter((path) => /\.test\.|fixtures\//.test(path))).toEqual([]);
    // The control plane ships as JavaScript: TypeScript sources only as declarations.
    expect(skiff.filter((path) => path.endsWith(".ts") && !path.endsWith(".d.ts"))).toEqual([]);
  }, 10 * MINUTE);

  it("installs from the tarballs into an empty project", () => {
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "my-filters", private: true, type: "module" }, null, 2));
    run("npm", [
      "install", "--no-audit", "--no-fund", "--prefer-offline",
      tarballs["@skiff/proxy-wasm"].file, tarballs.skiff.file, `vitest@${repository.devDependencies.vitest}`,
    ], project, 10 * MINUTE);
    expect(run("npx", ["skiff", "--help"], project, MINUTE)).toContain("build");
  }, 10 * MINUTE);

  it("scaffolds a filter with `npx skiff new filter`", () => {
    const output = run("npx", ["skiff", "new", "filter", "my-filter"], project, MINUTE);
    for (const file of ["filters/my-filter/index.ts", "filters/my-filter/my-filter.test.ts", "filters/my-filter/README.md", "asconfig.json"]) {
      expect(output).toContain(`created ${file}`);
      expect(existsSync(join(project, file))).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(project, "asconfig.json"), "utf8"))).toEqual({ extends: "@skiff/proxy-wasm/asconfig.json" });
    expect(() => run("npx", ["skiff", "new", "filter", "my-filter"], project, MINUTE)).toThrow(/already exists/);
    expect(() => run("npx", ["skiff", "new", "filter", "My_Filter"], project, MINUTE)).toThrow(/lower-case letters and digits/);
  }, 2 * MINUTE);

  it("builds every filter, optimised, with `npx skiff build`", () => {
    const output = run("npx", ["skiff", "build"], project, 5 * MINUTE);
    expect(output).toMatch(/built build\/filters\/my-filter\.wasm \(\d+ bytes\)/);
    const module = readFileSync(join(project, "build", "filters", "my-filter.wasm"));
    // Optimised, not a debug build: no name section (function names), and small.
    expect(module.includes(Buffer.from("skiffAbort"))).toBe(false);
    expect(module.length).toBeLessThan(64 * 1024);
  }, 5 * MINUTE);

  it("rebuilds a filter when its source changes with `npx skiff build --watch`", async () => {
    const watching = start("npx", ["skiff", "build", "my-filter", "--watch"], project);
    try {
      await waitForOutput(watching, /watching /, 5 * MINUTE);
      const source = join(project, "filters", "my-filter", "index.ts");
      writeFileSync(source, readFileSync(source, "utf8").replace('greeting: string = "hello"', 'greeting: string = "hello again"'));
      await waitForOutput(watching, /built build\/filters\/my-filter\.wasm[^]*built build\/filters\/my-filter\.wasm/, 5 * MINUTE);
    } finally {
      await watching.stop();
    }
  }, 10 * MINUTE);

  it("passes the scaffolded emulator test with vitest", () => {
    const output = run("npx", ["vitest", "run"], project, 5 * MINUTE);
    expect(output).toMatch(/Tests\s+2 passed/);
  }, 5 * MINUTE);

  it("runs the filter in a local Envoy with `npx skiff run` and answers through it", async () => {
    const running = start("npx", [
      "skiff", "run", "my-filter", "--upstream", `127.0.0.1:${upstream.port}`, "--port", "0", "--admin-port", "0", "--config", '{"greeting":"from-the-package"}',
    ], project);
    try {
      const [, port] = await waitForOutput(running, /curl -si http:\/\/127\.0\.0\.1:(\d+)\//, 3 * MINUTE);
      const response = await send(Number(port), { path: "/through-envoy" });
      expect(response.status).toBe(200);
      expect(response.headers["x-my-filter"]).toBe("from-the-package");
      expect(upstream.requests.at(-1)?.path).toBe("/through-envoy");
    } finally {
      await running.stop();
    }
  }, 5 * MINUTE);

  it("delivers the filter as a WasmPlugin through the packed control plane", async () => {
    const config = join(project, "mesh");
    const gatewayPort = await freePort();
    const [xdsPort, httpPort] = [await freePort(), await freePort()];
    const files: Record<string, string> = {
      "gateway.yaml": gatewayRoute(gatewayPort, "shop.example.com", "backend"),
      "backend.yaml": serviceEntry("backend", 8000, { v1: upstream.port }),
      "my-filter.yaml": `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: my-filter, namespace: shop }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  url: file://../build/filters/my-filter.wasm
  pluginConfig: { greeting: by-the-control-plane }
`,
    };
    mkdirSync(config);
    for (const [file, text] of Object.entries(files)) writeFileSync(join(config, file), text);
    expect(run("npx", ["skiff", "validate", "mesh"], project, MINUTE)).toMatch(/resources valid, 0 errors/);

    // --plaintext: a local control plane for one Envoy on this machine (no workload certificates).
    const controlPlane = start("npx", ["skiff", "control-plane", "--config", "mesh", "--plaintext", "--port", String(xdsPort), "--http-port", String(httpPort)], project);
    try {
      await waitForOutput(controlPlane, /xDS \(ADS\) on 127\.0\.0\.1:\d+/, 2 * MINUTE);
      const bootstrap = run("npx", ["skiff", "bootstrap", "--node", "gw", "--role", "gateway", "--label", "istio=ingressgateway", "--xds-port", String(xdsPort), "--admin-port", "0"], project, MINUTE);
      const envoy = await startEnvoy({ bootstrap: parse(bootstrap) as Record<string, unknown> });
      try {
        await eventually(async () => {
          const response = await send(gatewayPort, { headers: { host: "shop.example.com" } });
          expect(response.headers["x-my-filter"]).toBe("by-the-control-plane");
        }, MINUTE);
        // The package carries the istio-stats module too: the gateway reports Istio's standard metrics.
        await eventually(async () => {
          const stats = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/stats/prometheus`)).text();
          expect(stats).toMatch(/istio_requests_total\{[^}]*response_code="200"[^}]*\} [1-9]/);
        }, MINUTE);
      } finally {
        await envoy.stop();
      }
    } finally {
      await controlPlane.stop();
    }
  }, 5 * MINUTE);
});
