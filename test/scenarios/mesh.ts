// A mesh for scenario tests: YAML files written into a temp folder, the control plane watching it, and one real Envoy
// started from a `skiff bootstrap` bootstrap that names only the ADS server. Nothing else configures the Envoy.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freeLocalPort } from "../../control/backends/process.js";
import { bootstrap } from "../../control/bootstrap/bootstrap.js";
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from "../../control/control-plane.js";
import type { ProxyIdentity } from "../../control/resources.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { track, untrack } from "../harness/processes.js";
import { startUpstream, type Upstream, type UpstreamOptions } from "../harness/upstream.js";

export interface Mesh {
  dir: string;
  controlPlane: ControlPlane;
  envoy: Envoy;
  /** The control plane's log lines (connections, pushes, ACKs, NACKs, config errors). */
  log: string[];
  /** Replaces (or adds) one config file; the control plane picks it up like any edit. */
  write(file: string, text: string): void;
  /** Another Envoy configured by the same control plane (say, an egress gateway beside a sidecar), stopped with it. */
  startProxy(proxy: ProxyIdentity): Promise<Envoy>;
  stop(): Promise<void>;
}

/** `files` are written into the config folder; `files` may also be a function of the folder, for YAML that names
 * files inside it (certificates). `concurrency` is Envoy's worker count (default 1; filters that share state across
 * workers are tested with 2); `readyTimeoutMs` bounds the wait for Envoy's /ready; `controlPlane` overrides control
 * plane options. */
export async function startMesh(
  files: Record<string, string | Uint8Array> | ((dir: string) => Record<string, string | Uint8Array>),
  proxy: ProxyIdentity,
  options: { concurrency?: number; readyTimeoutMs?: number; controlPlane?: Pick<ControlPlaneOptions, "envoyPath"> } = {},
): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), "skiff-mesh-"));
  const write = (file: string, text: string | Uint8Array) => {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  };
  for (const [file, text] of Object.entries(typeof files === "function" ? files(dir) : files)) write(file, text);
  const logs: string[] = [];
  const controlPlane = await startControlPlane({ configDir: dir, xdsPort: 0, httpPort: 0, log: (line) => logs.push(line), security: { plaintext: true }, ...options.controlPlane });
  // The harness stops what a test forgot; the control plane is in-process, so it is tracked by hand.
  const tracked = { description: `control plane on ${dir}`, stop: () => controlPlane.stop(), logTail: () => logs.slice(-40).join("\n") };
  track(tracked);
  let envoy: Envoy;
  try {
    envoy = await startEnvoy({ bootstrap: bootstrap({ ...proxy, xdsPort: controlPlane.xds.port, adminPort: 0 }), concurrency: options.concurrency, readyTimeoutMs: options.readyTimeoutMs });
  } catch (error) {
    untrack(tracked);
    await controlPlane.stop();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\ncontrol plane log:\n${logs.join("\n")}`);
  }
  const others: Envoy[] = [];
  return {
    dir,
    controlPlane,
    envoy,
    log: logs,
    write,
    startProxy: async (other) => {
      const started = await startEnvoy({ bootstrap: bootstrap({ ...other, xdsPort: controlPlane.xds.port, adminPort: 0 }) });
      others.push(started);
      return started;
    },
    stop: async () => {
      for (const other of others) await other.stop();
      await envoy.stop();
      untrack(tracked);
      await controlPlane.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A port free right now, for a Gateway server or a ServiceEntry port (Envoy binds the number the YAML names). */
export const freePort = freeLocalPort;

/** Waits until `check` passes (Envoy applies pushed config asynchronously). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** A ServiceEntry for `name` in namespace `shop`, one endpoint per version with its port on 127.0.0.1. */
export function serviceEntry(name: string, port: number, endpoints: Record<string, number>): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: ${name}
  namespace: shop
spec:
  hosts: [${name}.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - { number: ${port}, name: http, protocol: HTTP }
  resolution: STATIC
  endpoints:
${Object.entries(endpoints)
  .map(([version, endpointPort]) => `  - { address: 127.0.0.1, ports: { http: ${endpointPort} }, labels: { version: ${version} } }`)
  .join("\n")}
`;
}

/** A DestinationRule with one subset per version label, plus an optional service-level trafficPolicy (YAML). */
export function destinationRule(name: string, versions: string[], trafficPolicy = ""): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: ${name}
  namespace: shop
spec:
  host: ${name}
${trafficPolicy}
  subsets:
${versions.map((v) => `  - name: version-${v}\n    labels: { version: ${v} }`).join("\n")}
`;
}

/** A VirtualService in namespace shop for the mesh (sidecars), named like the service `host` it routes; `http` is its
 * `http:` list as YAML. */
export function meshVirtualService(host: string, http: string): string {
  return `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: { name: ${host}, namespace: shop }
spec:
  hosts: [${host}]
  gateways: [mesh]
  http:
${http}`;
}

/** The seed's 90/10 shift between catalog's subsets (destinationRule's `version-v1`, `version-v2`), as a route for
 * gatewayRoute. */
export const NINETY_TEN = `    - { destination: { host: catalog, subset: version-v1 }, weight: 90 }
    - { destination: { host: catalog, subset: version-v2 }, weight: 10 }
`;

/** A Gateway `gw` in namespace shop serving `host` on `port` (for the ingress gateway), and a VirtualService that
 * routes that host to the service `destination`; `route`, the route's YAML (its lines under `- route:`), replaces
 * the one destination, e.g. a weighted split between subsets. */
export function gatewayRoute(port: number, host: string, destination: string, route = `    - destination: { host: ${destination} }\n`): string {
  return `apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: gw, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: http, protocol: HTTP }
    hosts: ["${host}"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: { name: ${destination}, namespace: shop }
spec:
  hosts: ["${host}"]
  gateways: [gw]
  http:
  - route:
${route}`;
}

/** The seed's catalog in two versions: upstreams `catalog-v1` and `catalog-v2`, and `yaml`, their ServiceEntry on
 * `port` with a DestinationRule of subsets `version-v1` and `version-v2`. */
export interface CatalogVersions {
  v1: Upstream;
  v2: Upstream;
  yaml: string;
  stop(): Promise<void>;
}

export async function startCatalogVersions(port: number, v2: Omit<UpstreamOptions, "name"> = {}): Promise<CatalogVersions> {
  const v1Upstream = await startUpstream({ name: "catalog-v1" });
  const v2Upstream = await startUpstream({ ...v2, name: "catalog-v2" }).catch(async (error: Error) => {
    await v1Upstream.stop();
    throw error;
  });
  return {
    v1: v1Upstream,
    v2: v2Upstream,
    yaml: [serviceEntry("catalog", port, { v1: v1Upstream.port, v2: v2Upstream.port }), destinationRule("catalog", ["v1", "v2"])].join("---\n"),
    stop: async () => {
      await v1Upstream.stop();
      await v2Upstream.stop();
    },
  };
}

export const SIDECAR: ProxyIdentity = { nodeId: "webapp-sidecar", role: "sidecar", labels: { app: "webapp" }, namespace: "default", ips: [], interceptionMode: "NONE" };
export const GATEWAY: ProxyIdentity = { nodeId: "ingressgateway", role: "gateway", labels: { istio: "ingressgateway" }, namespace: "default", ips: [] };
