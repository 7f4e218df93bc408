// The README's first command ends in `skiff demo`: it must come up with the coolstore mesh of examples/ on its fixed
// ports, answer the curl lines it prints, and stop everything on Ctrl-C (SIGINT). With --observability (README
// "Observability") it also starts Prometheus and Jaeger: the URLs, the two PromQL queries and the trace it prints work,
// the trace of a demo request holds every hop (in the mesh layout the sidecars' spans too, sent to Jaeger at the mesh's
// bridge address), Prometheus scrapes the control plane and every Envoy (each pod's sidecar too), and Ctrl-C leaves
// nothing behind. The demos share fixed ports and the mesh name "demo", so they run one after the other in this file.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { hasNetAdmin } from "../../control/mesh/host.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JaegerSpan, JaegerTrace } from "../../control/backends/jaeger.js";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { CHILD_MARKER, testRunId } from "../harness/processes.js";
import { eventually } from "./mesh.js";

/** Marks every process a demo of this file starts (the pods' agents and Envoys, Prometheus, Jaeger inherit it). */
const DEMO_MARKER = "SKIFF_DEMO_TEST";
const DEMO_PORTS = [8080, 9081, 9082, 9083, 9901, 18000, 18080];
const OBSERVABILITY_PORTS = [9090, 16686, 9411, 4317, 4318];

interface RunningDemo {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** The live processes this demo started (by DEMO_MARKER), itself included. */
  processes: () => Array<{ pid: number; command: string }>;
  kill: () => Promise<void>;
}

/** `skiff demo ARGS` as `npm run demo` runs it; resolves once it printed its last line ("Ctrl-C stops everything."). */
async function startDemo(args: string[]): Promise<RunningDemo> {
  const marker = randomUUID();
  const child = spawn(process.execPath, ["--import", "tsx", "control/cli/main.ts", "demo", ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, [CHILD_MARKER]: testRunId(), [DEMO_MARKER]: marker },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const demo: RunningDemo = {
    child,
    output: () => output,
    exited,
    processes: () => markedProcesses(`${DEMO_MARKER}=${marker}`),
    // Ctrl-C first, so that the demo removes its mesh and backends even when a test failed before its Ctrl-C test ran.
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGINT");
      if (await Promise.race([exited.then(() => true), new Promise((resolve) => setTimeout(resolve, 20_000, false))])) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
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
  if (!ready) throw new Error(`skiff demo ${args.join(" ")} did not come up:\n${output}`);
  return demo;
}

function markedProcesses(entry: string): Array<{ pid: number; command: string }> {
  const found: Array<{ pid: number; command: string }> = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(entry)) continue;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))) continue;
      found.push({ pid: Number(pid), command: readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim() });
    } catch {
      // It ended while we looked.
    }
  }
  return found;
}

/** The network namespaces of the mesh layout's pods (skiff.demo.*) by inode: another run's demo, started after this
 * one stopped, has namespaces of the same names. */
function demoNamespaces(): Set<number> {
  const dir = "/run/netns";
  const names = existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith("skiff.demo.")) : [];
  return new Set(names.flatMap((name) => {
    try {
      return [statSync(`${dir}/${name}`).ino];
    } catch {
      return []; // removed while we looked
    }
  }));
}

async function listening(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect(port, host);
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

describeE2E("skiff demo", () => {
  let demo: RunningDemo;

  beforeAll(async () => {
    demo = await startDemo([]);
  });

  afterAll(async () => {
    await demo?.kill();
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
    expect(demo.output()).not.toMatch(/deprecated option/i);
  });

  it("runs the services in pods with capturing sidecars where it can (Linux, root): webapp calls catalog through them", async () => {
    if (!hasNetAdmin()) {
      expect(demo.output()).toContain("the loopback layout (services on 127.0.0.1, no sidecars): the mesh layout, with pods and sidecars, needs Linux and root");
      return;
    }
    const webapp = /webapp (198\.\d+\.\d+\.\d+)/.exec(demo.output())?.[1];
    expect(webapp, demo.output()).toBeDefined();
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
    expect(demo.output()).toMatch(/xDS \(ADS\) on 198\.\d+\.\d+\.\d+:18000 over TLS, with the CA/);
    const address = (pod: string) => new RegExp(`${pod} (198\\.\\d+\\.\\d+\\.\\d+)`).exec(demo.output())![1]!;
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
    const pods = demoNamespaces();
    expect(pods.size).toBe(hasNetAdmin() ? 3 : 0);
    demo.child.kill("SIGINT");
    expect(await demo.exited).toBe(0);
    for (const port of DEMO_PORTS) expect(await listening(port), `port ${port}`).toBe(false);
    expect(demo.processes()).toEqual([]);
    // The mesh layout's pods (network namespaces skiff.demo.*) are gone with it.
    expect([...demoNamespaces()].filter((ino) => pods.has(ino))).toEqual([]);
  });
});

/** What `--observability` printed: Prometheus's and Jaeger's URLs, the two query commands, the trace command. */
function printedObservability(output: string) {
  return {
    prometheus: /^Prometheus (http:\/\/\S+)/m.exec(output)?.[1],
    jaeger: /^Jaeger (http:\/\/\S+)/m.exec(output)?.[1],
    queries: [...output.matchAll(/^ {2}(curl -s '\S+\/api\/v1\/query' --data-urlencode 'query=.+')$/gm)].map((match) => match[1]!),
    trace: /^ {2}(curl -s \S+\/api\/traces\/[0-9a-f]{32})$/m.exec(output)?.[1],
  };
}

/** A printed command, run as a user pastes it into a shell; its JSON answer. */
function runPrinted<T>(command: string): T {
  return JSON.parse(execFileSync("sh", ["-c", command], { encoding: "utf8" })) as T;
}

type PromAnswer = { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };

async function promQuery(promql: string): Promise<PromAnswer["data"]["result"]> {
  const answer = (await (await fetch(`http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(promql)}`)).json()) as PromAnswer;
  expect(answer.status).toBe("success");
  return answer.data.result;
}

/** Waits for Prometheus's next scrape and Envoy's next span flush (every 5 s, Envoy's Zipkin default). */
const until = (check: () => void | Promise<void>) => eventually(async () => check(), 20_000);

const tag = (span: JaegerSpan, key: string) => span.tags.find((t) => t.key === key)?.value;
const childOf = (span: JaegerSpan) => span.references.filter((ref) => ref.refType === "CHILD_OF").map((ref) => ref.spanID);

/** The hops of one demo request (gateway -> webapp -> catalog) in its trace, each a child of the hop before. */
function expectEveryHop(trace: JaegerTrace | undefined, mesh: boolean): void {
  expect(trace).toBeDefined();
  const spans = trace!.spans;
  const service = (span: JaegerSpan) => trace!.processes[span.processID]?.serviceName;
  const find = (serviceName: string, kind: string, cluster: RegExp) =>
    spans.find((span) => service(span) === serviceName && tag(span, "span.kind") === kind && cluster.test(String(tag(span, "upstream_cluster") ?? "")));
  const describe = JSON.stringify(spans.map((span) => [service(span), tag(span, "span.kind"), tag(span, "upstream_cluster"), span.spanID, childOf(span)]));
  if (mesh) {
    // The gateway calls webapp's pod; webapp's sidecar takes it inbound (server span), webapp calls catalog through
    // its sidecar (client span), and catalog's sidecar takes that inbound: four spans, each the child of the one before.
    const gateway = find("istio-ingressgateway.istio-system", "client", /^outbound\|8080\|\|webapp\.istioinaction\.svc\.cluster\.local$/);
    const webappIn = find("webapp.istioinaction", "server", /^inbound\|9081\|\|$/);
    const webappOut = find("webapp.istioinaction", "client", /^outbound\|3000\|version-v[12]\|catalog\.istioinaction\.svc\.cluster\.local$/);
    const catalogIn = find("catalog.istioinaction", "server", /^inbound\|908[23]\|\|$/);
    for (const hop of [gateway, webappIn, webappOut, catalogIn]) expect(hop, describe).toBeDefined();
    expect(childOf(gateway!), describe).toEqual([]);
    expect(childOf(webappIn!), describe).toEqual([gateway!.spanID]);
    expect(childOf(webappOut!), describe).toEqual([webappIn!.spanID]);
    expect(childOf(catalogIn!), describe).toEqual([webappOut!.spanID]);
  } else {
    // No sidecars: webapp calls catalog through the gateway, so the gateway has both hops, catalog's the child.
    const toWebapp = find("istio-ingressgateway.default", "client", /webapp\.istioinaction\.svc\.cluster\.local$/);
    const toCatalog = find("istio-ingressgateway.default", "client", /catalog\.istioinaction\.svc\.cluster\.local$/);
    expect(toWebapp, describe).toBeDefined();
    expect(toCatalog, describe).toBeDefined();
    expect(childOf(toWebapp!), describe).toEqual([]);
    expect(childOf(toCatalog!), describe).toEqual([toWebapp!.spanID]);
  }
}

async function demoRequest(headers: Record<string, string> = {}): Promise<string> {
  const response = await send(8080, { path: "/api/catalog", headers: { host: "webapp.istioinaction.io", ...headers } });
  expect(response.status).toBe(200);
  const body = JSON.parse(response.body) as { trace: Record<string, string>; catalog: { status: number } };
  expect(body.catalog.status).toBe(200);
  return body.trace["x-b3-traceid"]!;
}

function describeObservability(args: string[], layout: "mesh" | "loopback"): void {
  describe(`skiff demo ${args.join(" ")} (the ${layout} layout)`, () => {
    let demo: RunningDemo;

    beforeAll(async () => {
      demo = await startDemo(args);
    }, 120_000);

    afterAll(async () => {
      await demo?.kill();
    });

    it("prints Prometheus's and Jaeger's URLs, two PromQL queries and a trace, each working as printed", async () => {
      const printed = printedObservability(demo.output());
      expect(printed.prometheus, demo.output()).toBe("http://127.0.0.1:9090");
      expect(printed.jaeger).toBe("http://127.0.0.1:16686");
      expect((await fetch(`${printed.prometheus}/-/ready`)).status).toBe(200);
      expect((await fetch(`${printed.jaeger}/api/services`)).status).toBe(200);
      expect(printed.queries).toHaveLength(2);
      for (const query of printed.queries) expect(runPrinted<PromAnswer>(query).status).toBe("success");
      // The printed trace is of a request the demo sent through every hop.
      expect(printed.trace).toBeDefined();
      await until(() => expectEveryHop(runPrinted<{ data: JaegerTrace[] }>(printed.trace!).data[0], layout === "mesh"));
    });

    it("has the trace of a demo request in Jaeger: gateway -> webapp -> catalog, each hop the child of the one before", async () => {
      const traceId = await demoRequest();
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      await until(async () => {
        const answer = (await (await fetch(`http://127.0.0.1:16686/api/traces/${traceId}`)).json()) as { data?: JaegerTrace[] };
        expectEveryHop(answer.data?.[0], layout === "mesh");
      });
      const services = ((await (await fetch("http://127.0.0.1:16686/api/services")).json()) as { data: string[] }).data;
      expect(services).toEqual(expect.arrayContaining(layout === "mesh" ? ["istio-ingressgateway.istio-system", "webapp.istioinaction", "catalog.istioinaction"] : ["istio-ingressgateway.default"]));
    });

    it("answers both printed PromQL queries with series scraped from the control plane and every Envoy", async () => {
      // Every target is up: the control plane, the gateway and (mesh) each pod's sidecar at <pod>:15000.
      const pods = layout === "mesh" ? ["ingressgateway", "webapp", "catalog-v1", "catalog-v2"] : ["ingressgateway"];
      await until(async () => {
        const up = await promQuery("up");
        expect(up.map((sample) => sample.metric.pod ?? sample.metric.job).sort()).toEqual([...pods, "skiff-control-plane"].sort());
        expect(up.every((sample) => sample.value[1] === "1"), JSON.stringify(up)).toBe(true);
      });
      for (let i = 0; i < 10; i++) {
        await demoRequest();
        expect((await send(8080, { path: "/items", headers: { host: "catalog.istioinaction.io" } })).status).toBe(200);
      }
      const [requests, convergence] = printedObservability(demo.output()).queries;
      await until(() => {
        // Requests to catalog by version: v1 at least (90% of them), counted by the catalog sidecars in the mesh
        // layout (reporter="destination"), by the gateway in the loopback layout.
        const series = runPrinted<PromAnswer>(requests!).data.result;
        const v1 = series.find((sample) => sample.metric.destination_version === "v1");
        expect(v1, JSON.stringify(series)).toBeDefined();
        expect(Number(v1!.value[1])).toBeGreaterThan(0);
      });
      const p99 = runPrinted<PromAnswer>(convergence!).data.result;
      expect(p99).toHaveLength(1);
      expect(Number(p99[0]!.value[1])).toBeGreaterThan(0);
      expect(Number.isFinite(Number(p99[0]!.value[1]))).toBe(true);
      if (layout === "mesh") {
        // The sidecars' own istio_requests_total: catalog's report what they received, webapp's what it sent.
        await until(async () => {
          const destination = await promQuery('sum by (pod) (istio_requests_total{reporter="destination",destination_service_name="catalog"})');
          expect(destination.map((sample) => sample.metric.pod)).toContain("catalog-v1");
          const source = await promQuery('sum by (pod) (istio_requests_total{reporter="source",destination_service_name="catalog"})');
          expect(source.map((sample) => sample.metric.pod).sort()).toEqual(["ingressgateway", "webapp"]);
        });
      }
    });

    if (layout === "mesh") {
      it("lets a pod's sidecar (uid 1337) reach Jaeger's collectors and Prometheus at the bridge address; an app's call there is captured and refused (REGISTRY_ONLY)", () => {
        const host = /xDS \(ADS\) on (198\.\d+\.\d+\.1):18000/.exec(demo.output())![1]!;
        const curl = (uid: number | undefined, args: string[]) => {
          const user = uid === undefined ? [] : ["setpriv", "--reuid", String(uid), "--regid", String(uid), "--clear-groups", "--"];
          try {
            return execFileSync("ip", ["netns", "exec", "skiff.demo.webapp", ...user, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", ...args], { encoding: "utf8" });
          } catch (error) {
            return `curl failed: ${(error as { stdout?: string }).stdout ?? ""}`;
          }
        };
        const json = ["-H", "content-type: application/json"];
        // As the sidecar's uid, not captured: Zipkin, OTLP over HTTP and Prometheus answer on the bridge address.
        expect(curl(1337, [...json, "--data", "[]", `http://${host}:9411/api/v2/spans`])).toBe("202");
        expect(curl(1337, [...json, "--data", "{}", `http://${host}:4318/v1/traces`])).toBe("200");
        expect(curl(1337, [`http://${host}:9090/-/ready`])).toBe("200");
        // As the app (root in the pod): the call is captured by the sidecar, and the host's address is no registry host.
        expect(curl(undefined, [`http://${host}:9090/-/ready`])).not.toBe("200");
      });
    }

    it("stops Prometheus, Jaeger and everything else on Ctrl-C", async () => {
      const pods = demoNamespaces();
      expect(pods.size).toBe(layout === "mesh" ? 3 : 0);
      demo.child.kill("SIGINT");
      expect(await demo.exited).toBe(0);
      for (const port of [...DEMO_PORTS, ...OBSERVABILITY_PORTS]) expect(await listening(port), `port ${port}`).toBe(false);
      expect(demo.processes()).toEqual([]);
      expect([...demoNamespaces()].filter((ino) => pods.has(ino))).toEqual([]);
    });
  });
}

describeE2E("skiff demo --observability", () => {
  // As the README tells users; the mesh layout where the machine allows it (Linux, root), as the demo chooses.
  describeObservability(["--observability"], hasNetAdmin() ? "mesh" : "loopback");
  if (hasNetAdmin()) describeObservability(["--loopback", "--observability"], "loopback");
});
