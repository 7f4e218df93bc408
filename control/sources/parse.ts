// One YAML file -> validated resources, or errors naming file, resource and field. A file is all or nothing: if any
// document in it is invalid, none of its resources are taken (the watcher then keeps the file's last good version).
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import type { z } from "zod";
import { installationResource } from "./installation.js";
import type { ConfigError, InstallationResource, ModuleSource, Resource } from "./model.js";
import { parseImageReference } from "../modules/oci.js";
import { ResourceEncodingError } from "../protos/encode.js";
import { decodeMessage } from "../protos/merge.js";
import { type ClientTls, type DestinationRuleSpec, type envoyFilterSpec, type GatewayServer, type gatewaySpec, type Kind, KINDS, meshConfigSchema, PATCH_MESSAGE, resourceEnvelope, SKIFF_ANNOTATION_PREFIX, SKIFF_ANNOTATIONS } from "./schema/index.js";

type GatewaySpec = z.infer<typeof gatewaySpec>;
type EnvoyFilterSpec = z.infer<typeof envoyFilterSpec>;

/** The file holding Istio MeshConfig fields (istiod reads the same from its `mesh` file). */
export const MESH_CONFIG_FILE = "meshconfig.yaml";

export interface ParsedFile {
  resources: Resource<unknown>[];
  installation?: InstallationResource[];
  meshConfig?: z.infer<typeof meshConfigSchema>;
  errors: ConfigError[];
}

/** The namespace of resources whose metadata names none, unless the reader is given another (kubectl's default). */
export const DEFAULT_NAMESPACE = "default";

export function parseFile(dir: string, file: string, text: string, defaultNamespace = DEFAULT_NAMESPACE): ParsedFile {
  const documents = parseAllDocuments(text);
  const syntaxErrors = (Array.isArray(documents) ? documents : []).flatMap((doc) => doc.errors);
  if (!Array.isArray(documents) || syntaxErrors.length > 0) {
    const first = syntaxErrors[0];
    return { resources: [], errors: [{ file, message: `not valid YAML: ${first?.message ?? "empty stream"}` }] };
  }
  let values: unknown[];
  try {
    values = documents.map((doc) => doc.toJS());
  } catch (error) {
    // Well-formed YAML that does not become data, e.g. aliases expanding without bound (the yaml library's guard).
    return { resources: [], errors: [{ file, message: `not valid YAML: ${(error as Error).message}` }] };
  }
  if (file === MESH_CONFIG_FILE) {
    const result = meshConfigSchema.safeParse(values[0] ?? {});
    if (!result.success) return { resources: [], errors: zodErrors(file, undefined, result.error.issues) };
    return { resources: [], meshConfig: result.data, errors: [] };
  }

  const errors: ConfigError[] = [];
  const resources: Resource<unknown>[] = [];
  const installation: InstallationResource[] = [];
  values.forEach((value, index) => {
    if (value === null || value === undefined) return;
    const parsed = parseObject(value, { dir, file, document: `document ${index + 1}`, defaultNamespace });
    errors.push(...parsed.errors);
    if (parsed.resource) resources.push(parsed.resource);
    if (parsed.installation) installation.push(parsed.installation);
  });
  return errors.length > 0 ? { resources: [], errors } : { resources, installation, errors };
}

/** The docker config JSON of an imagePullSecret: credentials/<name>/.dockerconfigjson in the config folder, the file
 * a mounted kubernetes.io/dockerconfigjson Secret has. */
export function pullSecretFile(dir: string, name: string): string {
  return resolve(dir, "credentials", name, ".dockerconfigjson");
}

/** The `skiff.dev/` annotations of a resource, checked against what its kind takes (schema/annotations.ts). */
function skiffAnnotations(kind: string, all: Record<string, string> = {}): { annotations?: Record<string, string> } | { problems: Array<{ field: string; message: string }> } {
  const known = SKIFF_ANNOTATIONS[kind] ?? {};
  const annotations: Record<string, string> = {};
  const problems: Array<{ field: string; message: string }> = [];
  for (const [key, value] of Object.entries(all)) {
    if (!key.startsWith(SKIFF_ANNOTATION_PREFIX)) continue;
    const field = `metadata.annotations["${key}"]`;
    const schema = known[key];
    if (!schema) {
      problems.push({ field, message: `not a Skiff annotation of ${kind}${Object.keys(known).length ? ` (it takes ${Object.keys(known).join(", ")})` : ""}` });
      continue;
    }
    const result = schema.safeParse(value);
    if (result.success) annotations[key] = result.data;
    else problems.push({ field, message: result.error.issues[0]?.message ?? "invalid" });
  }
  if (problems.length > 0) return { problems };
  return Object.keys(annotations).length > 0 ? { annotations } : {};
}

interface WasmModuleSpec {
  url: string;
  sha256?: string;
  imagePullSecret?: string;
}

/** The module a WasmPlugin or a Wasm TrafficExtension names: a file, read to pin its sha256 (and check the one
 * given), or an OCI image, whose reference and pull secret are checked (the control plane pulls it, not the reader).
 * Fields are relative to the module's fields. */
function readModule(dir: string, { url, sha256, imagePullSecret }: WasmModuleSpec): ModuleSource | { field: string; problem: string } {
  if (url.startsWith("oci://")) {
    let digest: string | undefined;
    try {
      digest = parseImageReference(url).digest?.slice("sha256:".length);
    } catch (error) {
      return { field: "url", problem: (error as Error).message };
    }
    if (sha256 && digest && sha256 !== digest) return { field: "sha256", problem: `the url pins sha256:${digest}, which differs` };
    const pullSecret = imagePullSecret ? pullSecretFile(dir, imagePullSecret) : undefined;
    if (pullSecret && !existsSync(pullSecret)) return { field: "imagePullSecret", problem: `file ${pullSecret} does not exist` };
    return { image: url, sha256, pullSecret };
  }
  if (imagePullSecret) return { field: "imagePullSecret", problem: "only oci:// modules are pulled with credentials" };
  const problem = checkModuleUrl(dir, url);
  if (problem) return { field: "url", problem };
  const path = wasmModulePath(dir, url);
  let actual: string;
  try {
    actual = createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch (error) {
    // A folder, or a file that cannot be read: reported like a missing module, never thrown at the watcher.
    return { field: "url", problem: `cannot read module ${path}: ${(error as Error).message}` };
  }
  if (sha256 && actual !== sha256) return { field: "sha256", problem: `the module's sha256 is ${actual}` };
  return { path, sha256: actual };
}

/** Where an object comes from, and how to read what it leaves implicit. */
export interface ObjectOrigin {
  /** The folder that relative paths (WasmPlugin urls, certificate files) are taken against. */
  dir: string;
  /** The unit it belongs to (a file of the folder, an object of the API server), for ConfigError.file. */
  file: string;
  /** How to name the object when its envelope is unreadable. */
  document: string;
  /** The namespace of an object whose metadata names none. */
  defaultNamespace: string;
  /** What a Gateway's `credentialName` names: files in the folder (`credentials/<name>/`, checked here), or a
   * Kubernetes Secret (looked up by the Kubernetes source). */
  credentials?: "files" | "secrets";
}

/** One Istio object (a YAML document, or an object from the Kubernetes API) -> a validated resource, an installation
 * resource, or errors naming the resource and field. */
export function parseObject(value: unknown, origin: ObjectOrigin): { resource?: Resource<unknown>; installation?: InstallationResource; errors: ConfigError[] } {
  const { dir, file } = origin;
  const envelope = resourceEnvelope.safeParse(value);
  if (!envelope.success) return { errors: zodErrors(file, origin.document, envelope.error.issues) };
  const { apiVersion, kind, spec } = envelope.data;
  const metadata = { ...envelope.data.metadata, namespace: envelope.data.metadata.namespace ?? origin.defaultNamespace };
  const resource = `${kind} ${metadata.namespace}/${metadata.name}`;
  const fail = (problems: Array<{ field?: string; message: string }>) => ({ errors: problems.map(({ field, message }) => ({ file, resource, field, message })) });
  const known = (KINDS as Record<string, (typeof KINDS)[Kind]>)[kind];
  const installs = known ? undefined : installationResource(file, { apiVersion, kind, metadata, spec });
  if (installs) return { installation: installs, errors: [] };
  if (!known) return fail([{ field: "kind", message: `unsupported kind; Skiff reads ${Object.keys(KINDS).join(", ")}` }]);
  const [group, version] = apiVersion.split("/");
  if (group !== known.group || !(known.versions as readonly string[]).includes(version ?? "")) {
    return fail([{ field: "apiVersion", message: `expected ${known.versions.map((v) => `${known.group}/${v}`).join(", ")}` }]);
  }
  const parsed = known.spec.safeParse(spec);
  if (!parsed.success) return { errors: zodErrors(file, resource, parsed.error.issues, ["spec"]) };
  if (kind === "Gateway") {
    const problems = checkGatewayTls(dir, parsed.data as GatewaySpec, origin.credentials ?? "files");
    if (problems.length > 0) return fail(problems);
  }
  if (kind === "DestinationRule") {
    const problems = checkDestinationRuleTls(dir, parsed.data as DestinationRuleSpec, origin.credentials ?? "files");
    if (problems.length > 0) return fail(problems);
  }
  if (kind === "EnvoyFilter" || kind === "TrafficExtension") {
    const problems =
      kind === "EnvoyFilter"
        ? checkEnvoyFilter(parsed.data as EnvoyFilterSpec, metadata.namespace)
        : checkTargetRefs(kind, (parsed.data as { targetRefs?: Array<{ namespace?: string }> }).targetRefs, metadata.namespace);
    if (problems.length > 0) return fail(problems);
  }
  const annotations = skiffAnnotations(kind, envelope.data.metadata.annotations);
  if ("problems" in annotations) return fail(annotations.problems);
  const base = { kind: kind as Kind, name: metadata.name, namespace: metadata.namespace, file, spec: parsed.data, ...annotations };
  const wasm = kind === "WasmPlugin" ? { spec: parsed.data as WasmModuleSpec, field: "spec" } : kind === "TrafficExtension" ? { spec: (parsed.data as { wasm?: WasmModuleSpec }).wasm, field: "spec.wasm" } : undefined;
  if (wasm?.spec) {
    const module = readModule(dir, wasm.spec);
    if ("problem" in module) return fail([{ field: `${wasm.field}.${module.field}`, message: module.problem }]);
    // The module's identity is part of the mesh, so rebuilding a module changes the mesh like editing YAML does.
    return { resource: { ...base, module }, errors: [] };
  }
  return { resource: base, errors: [] };
}

/** Where a WasmPlugin's module lives: `file:///abs/path`, `file://relative/path` or a plain path; relative paths
 * are taken against the config folder. */
export function wasmModulePath(dir: string, url: string): string {
  const path = url.startsWith("file://") ? decodeURIComponent(url.slice("file://".length)) : url;
  return isAbsolute(path) ? path : resolve(dir, path);
}

/** Client certificates are verified against a CA in these modes (Istio's ServerTLSSettings). */
const CLIENT_VERIFYING = ["MUTUAL", "OPTIONAL_MUTUAL"];

export interface CredentialFiles {
  certificate: string;
  privateKey: string;
  /** For MUTUAL and OPTIONAL_MUTUAL: the CA that client certificates must chain to. */
  caCertificates?: string;
}

/** The files of an HTTPS server's certificate: `serverCertificate` / `privateKey` / `caCertificates` paths, or for
 * `credentialName: NAME` the files of a Kubernetes TLS secret laid out as `credentials/NAME/{tls.crt,tls.key,ca.crt}`;
 * relative paths are taken against the config folder. */
export function credentialFiles(dir: string, tls: NonNullable<GatewayServer["tls"]>): CredentialFiles {
  const at = (path: string) => (isAbsolute(path) ? path : resolve(dir, path));
  if (tls.credentialName) {
    const folder = resolve(dir, "credentials", tls.credentialName);
    return {
      certificate: join(folder, "tls.crt"),
      privateKey: join(folder, "tls.key"),
      ...(CLIENT_VERIFYING.includes(tls.mode ?? "") ? { caCertificates: join(folder, "ca.crt") } : {}),
    };
  }
  return {
    certificate: at(tls.serverCertificate ?? ""),
    privateKey: at(tls.privateKey ?? ""),
    ...(CLIENT_VERIFYING.includes(tls.mode ?? "") ? { caCertificates: at(tls.caCertificates ?? "") } : {}),
  };
}

/** The files of a DestinationRule's client TLS (SIMPLE, MUTUAL): `clientCertificate` / `privateKey` /
 * `caCertificates`, or for `credentialName: NAME` those of `credentials/NAME/{tls.crt,tls.key,ca.crt}`; relative paths
 * against the config folder. Only what the settings name. */
export function clientTlsFiles(dir: string, tls: ClientTls): { certificate?: string; privateKey?: string; caCertificates?: string } {
  const at = (path: string | undefined) => (path === undefined ? undefined : isAbsolute(path) ? path : resolve(dir, path));
  if (tls.credentialName) {
    const folder = resolve(dir, "credentials", tls.credentialName);
    return {
      ...(tls.mode === "MUTUAL" ? { certificate: join(folder, "tls.crt"), privateKey: join(folder, "tls.key") } : {}),
      ...(tls.insecureSkipVerify ? {} : { caCertificates: join(folder, "ca.crt") }),
    };
  }
  return {
    ...(tls.mode === "MUTUAL" ? { certificate: at(tls.clientCertificate), privateKey: at(tls.privateKey) } : {}),
    ...(tls.insecureSkipVerify ? {} : { caCertificates: at(tls.caCertificates) }),
  };
}

/** Every file a DestinationRule's SIMPLE or MUTUAL settings name must exist (Envoy would refuse the cluster). */
function checkDestinationRuleTls(dir: string, spec: DestinationRuleSpec, credentials: "files" | "secrets"): Array<{ field: string; message: string }> {
  type Policy = DestinationRuleSpec["trafficPolicy"];
  const levels: Array<[string, Policy]> = [
    ["spec.trafficPolicy", spec.trafficPolicy],
    ...(spec.subsets ?? []).map((subset, index): [string, Policy] => [`spec.subsets[${index}].trafficPolicy`, subset.trafficPolicy]),
  ];
  // Each level's own tls and each of its ports' (a port's settings replace the level's tls for that port).
  const settings: Array<[string, ClientTls | undefined]> = levels.flatMap(([at, policy]): Array<[string, ClientTls | undefined]> => [
    [at, policy?.tls],
    ...(policy?.portLevelSettings ?? []).map((port, index): [string, ClientTls | undefined] => [`${at}.portLevelSettings[${index}]`, port.tls]),
  ]);
  const problems: Array<{ field: string; message: string }> = [];
  for (const [at, tls] of settings) {
    if (tls?.mode !== "SIMPLE" && tls?.mode !== "MUTUAL") continue;
    // From Kubernetes a credentialName names a Secret in the proxy's namespace, not files (kubernetes/credentials.ts).
    if (tls.credentialName && credentials === "secrets") continue;
    const fields = { certificate: "clientCertificate", privateKey: "privateKey", caCertificates: "caCertificates" } as const;
    for (const [name, path] of Object.entries(clientTlsFiles(dir, tls)) as Array<[keyof typeof fields, string | undefined]>) {
      if (path && !existsSync(path)) problems.push({ field: `${at}.tls.${tls.credentialName ? "credentialName" : fields[name]}`, message: `file ${path} does not exist` });
    }
  }
  return problems;
}

function checkGatewayTls(dir: string, spec: GatewaySpec, credentials: "files" | "secrets"): Array<{ field: string; message: string }> {
  const problems: Array<{ field: string; message: string }> = [];
  spec.servers.forEach((server, index) => {
    const field = `spec.servers[${index}].tls`;
    const tls = server.tls;
    const protocol = server.port.protocol;
    if (protocol === "TCP") {
      // Istio's validateServer: "server cannot have TLS settings for non HTTPS/TLS ports".
      if (tls) problems.push({ field, message: "a TCP server takes no TLS settings (Istio refuses them too); use protocol TLS to terminate or pass through TLS" });
      return;
    }
    if (protocol !== "HTTPS" && protocol !== "TLS") {
      // Istio's validateServer: "server cannot have TLS settings for plain text HTTP ports", httpsRedirect aside.
      const key = tls && (["mode", "credentialName", "serverCertificate", "privateKey", "caCertificates"] as const).find((k) => tls[k] !== undefined && !(k === "mode" && tls.mode === "PASSTHROUGH"));
      if (key) {
        problems.push({
          field: `${field}.${key}`,
          message: "a plain HTTP server takes no TLS settings but httpsRedirect (Istio refuses them too); use protocol HTTPS to terminate TLS",
        });
      }
      return;
    }
    if (tls?.mode === "PASSTHROUGH") {
      // SNI routing to backends that terminate TLS themselves (VirtualService `tls` routes): no certificate here.
      const key = (["credentialName", "serverCertificate", "privateKey", "caCertificates"] as const).find((k) => tls[k] !== undefined);
      if (key) problems.push({ field: `${field}.${key}`, message: "PASSTHROUGH does not terminate TLS, so it takes no certificate" });
      return;
    }
    if (!tls || !["SIMPLE", ...CLIENT_VERIFYING].includes(tls.mode ?? "")) {
      problems.push({
        field: `${field}.mode`,
        message: `a${protocol === "TLS" ? " TLS" : "n HTTPS"} server needs tls.mode PASSTHROUGH, SIMPLE, MUTUAL or OPTIONAL_MUTUAL (ISTIO_MUTUAL is not implemented)`,
      });
      return;
    }
    if (!tls.credentialName && !(tls.serverCertificate && tls.privateKey)) {
      problems.push({ field, message: "needs credentialName, or serverCertificate and privateKey" });
      return;
    }
    if (tls.mode === "SIMPLE" && tls.caCertificates) {
      problems.push({
        field: `${field}.caCertificates`,
        message: "SIMPLE TLS verifies no client certificate, so caCertificates would do nothing (Istio ignores it); use mode MUTUAL or OPTIONAL_MUTUAL to verify clients against it",
      });
      return;
    }
    if (tls.mode !== "SIMPLE" && !tls.credentialName && !tls.caCertificates) {
      problems.push({ field: `${field}.caCertificates`, message: `${tls.mode} needs the CA that client certificates chain to` });
      return;
    }
    // A Kubernetes Secret is looked up when a gateway needs it; certificate files named by path are read by Envoy on
    // the gateway's machine, which in a cluster is not the control plane's.
    if (credentials === "secrets") return;
    for (const [name, path] of Object.entries(credentialFiles(dir, tls))) {
      if (!existsSync(path)) problems.push({ field: tls.credentialName ? `${field}.credentialName` : `${field}.${name}`, message: `file ${path} does not exist` });
    }
  });
  return problems;
}

/** Every patch value must decode as the Envoy message its applyTo patches (either field spelling), or Envoy would
 * never get the patched resource; a targetRef can only name a Gateway in the EnvoyFilter's own namespace. */
function checkEnvoyFilter(spec: EnvoyFilterSpec, namespace: string): Array<{ field: string; message: string }> {
  const problems = spec.configPatches.flatMap((patch, index) => {
    if (patch.patch.value === undefined || patch.applyTo === "BOOTSTRAP") return [];
    try {
      decodeMessage(PATCH_MESSAGE[patch.applyTo], patch.patch.value);
      return [];
    } catch (error) {
      const field = `spec.configPatches[${index}].patch.value`;
      if (!(error instanceof ResourceEncodingError)) return [{ field, message: (error as Error).message }];
      return [{ field: error.field ? `${field}.${error.field}` : field, message: `${error.detail} (the value is an Envoy ${PATCH_MESSAGE[patch.applyTo]})` }];
    }
  });
  problems.push(...checkTargetRefs("EnvoyFilter", spec.targetRefs, namespace));
  return problems;
}

/** A targetRef names a Gateway of the policy's own namespace: Istio's CRDs refuse any other ("cross namespace
 * referencing is not currently supported"), and istiod would match nothing with one. */
function checkTargetRefs(kind: string, targetRefs: Array<{ namespace?: string }> | undefined, namespace: string): Array<{ field: string; message: string }> {
  return (targetRefs ?? []).flatMap((ref, index) =>
    ref.namespace !== undefined && ref.namespace !== namespace
      ? [{ field: `spec.targetRefs[${index}].namespace`, message: `a targetRef can only name a Gateway in the ${kind}'s namespace ${namespace} (Istio matches nothing otherwise)` }]
      : [],
  );
}

function checkModuleUrl(dir: string, url: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith("file://")) {
    return "only oci:// images, file paths and file:// URLs are supported (the control plane serves the module to the proxies itself)";
  }
  const path = wasmModulePath(dir, url);
  return existsSync(path) ? undefined : `module file ${path} does not exist`;
}

function zodErrors(file: string, resource: string | undefined, issues: z.core.$ZodIssue[], prefix: PropertyKey[] = []): ConfigError[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({
        file,
        resource,
        field: fieldPath([...path, key]),
        message: "unknown field, or one Skiff does not implement",
      }));
    }
    return [{ file, resource, field: path.length > 0 ? fieldPath(path) : undefined, message: issue.message }];
  });
}

function fieldPath(path: PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), "");
}
