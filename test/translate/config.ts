// A config folder written by a test: YAML files into a temp folder, read as `skiff validate` and the control plane
// read it, and translated for any proxy. For tests of Istio's semantics that a golden file would bury.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { formatConfigError, loadConfigDir } from "../../control/sources/index.js";
import { meshWarnings } from "../../control/translate/warnings.js";
import { translate, translationNotes } from "../../control/translate/index.js";
import { type ProxyIdentity, type ProxyResources, type TranslationContext, TypeUrl } from "../../control/resources.js";
import { testContext } from "./cases.js";

const folders: string[] = [];

/** Removes every folder `configFolder` made (call from afterAll). */
export function removeConfigFolders(): void {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
}

export function configFolder(files: Record<string, string>, options: { namespace?: string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "skiff-config-"));
  folders.push(dir);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  const loaded = loadConfigDir(dir, options);
  return {
    dir,
    ...loaded,
    /** Errors as `skiff validate` prints them. */
    messages: loaded.errors.map(formatConfigError),
    /** Warnings as `skiff validate` prints them. */
    warnings: () => meshWarnings(loaded.mesh).map(formatConfigError),
    /** `context`: what differs from a secured control plane's (e.g. `{ workloadCertificates: false }`: --plaintext). */
    translate: (proxy: ProxyIdentity, context: Partial<TranslationContext> = {}) => byName(translate(loaded.mesh, { ...testContext(dir, proxy), ...context })),
    /** What the control plane logs and proxy-status shows about this proxy's translation. */
    notes: (proxy: ProxyIdentity, context: Pick<TranslationContext, "workloadCertificates"> = {}) => translationNotes(loaded.mesh, proxy, context),
  };
}

type Body = Record<string, any>; // Envoy JSON, read by tests field by field.

/** Resources by type and name, for reading one resource's body in a test. */
export function byName(resources: ProxyResources) {
  const get = (type: TypeUrl) => new Map(resources[type].map((r) => [r.name, r.body as Body]));
  return {
    resources,
    clusters: get(TypeUrl.Cluster),
    endpoints: get(TypeUrl.ClusterLoadAssignment),
    listeners: get(TypeUrl.Listener),
    routes: get(TypeUrl.RouteConfiguration),
    secrets: get(TypeUrl.Secret),
  };
}

export const gatewayProxy = (labels: Record<string, string> = { istio: "ingressgateway" }, namespace = "istio-system"): ProxyIdentity => ({
  nodeId: "gateway",
  role: "gateway",
  labels,
  namespace,
  ips: [],
});

export const sidecarProxy = (labels: Record<string, string> = { app: "webapp" }, namespace = "default"): ProxyIdentity => ({
  nodeId: "sidecar",
  role: "sidecar",
  labels,
  namespace,
  ips: [],
});
