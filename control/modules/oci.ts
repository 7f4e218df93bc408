// Pulls a Wasm module from an OCI registry (`oci://host[:port]/repository[:tag][@sha256:digest]`), as istio-agent does
// (istio/istio pkg/wasm/imagefetcher.go, cache.go), by the OCI distribution API (opencontainers/distribution-spec):
// the manifest, then the layer that holds the module. The image layouts Istio accepts:
// - Docker manifest (`application/vnd.docker.distribution.manifest.v2+json`), last layer a gzipped tar
//   (`application/vnd.docker.image.rootfs.diff.tar.gzip`) holding `plugin.wasm` (the "compat" variant of the Wasm
//   image spec, what `docker build` of `FROM scratch; COPY plugin.wasm .` gives);
// - OCI manifest whose last layer is `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm` (compat);
// - OCI manifest with a `application/vnd.module.wasm.content.layer.v1+wasm` layer: the module itself (the "oci"
//   variant); also accepted: an `application/wasm` layer (the CNCF Wasm OCI artifact).
// Every blob is checked against its digest. The image's digest (the sha256 of its manifest) is what a WasmPlugin's
// `sha256` pins, as in Istio; the sha256 of the module itself is accepted too. Credentials come from a docker config
// JSON (an imagePullSecret's `.dockerconfigjson`) and are never put in an error message or log line.
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";

const MEDIA = {
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  ociLayer: "application/vnd.oci.image.layer.v1.tar+gzip",
  wasmLayers: ["application/vnd.module.wasm.content.layer.v1+wasm", "application/wasm"],
};
const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

export interface ImageReference {
  /** host[:port] */
  registry: string;
  repository: string;
  tag?: string;
  /** "sha256:<hex>" when the reference pins one. */
  digest?: string;
}

export interface PulledModule {
  bytes: Uint8Array;
  /** sha256 of the module bytes. */
  sha256: string;
  /** sha256 of the image manifest (the image digest). */
  imageDigest: string;
}

export interface PullOptions {
  /** A docker config JSON ({"auths": {"<registry>": {"auth": base64(user:password)} | {username, password}}}). */
  dockerConfig?: string;
  /** A pinned sha256 (hex): the image digest or the module's. */
  sha256?: string;
  /** Plain HTTP instead of HTTPS (a registry on 127.0.0.1 falls back to it by itself, as Istio does). */
  insecure?: boolean;
  timeoutMs?: number;
}

export class ModulePullError extends Error {
  constructor(
    message: string,
    /** The WasmPlugin field the problem is about: "spec.url" or "spec.sha256". */
    readonly field: "spec.url" | "spec.sha256" = "spec.url",
  ) {
    super(message);
    this.name = "ModulePullError";
  }
}

/** Parses `oci://registry/repo[:tag][@sha256:hex]` (the `oci://` prefix is optional); throws on a malformed one. */
export function parseImageReference(url: string): ImageReference {
  const rest = url.replace(/^oci:\/\//, "");
  const slash = rest.indexOf("/");
  if (slash <= 0) throw new ModulePullError(`${url}: expected oci://<registry>/<repository>[:tag][@sha256:<digest>]`);
  const registry = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  let digest: string | undefined;
  const at = path.indexOf("@");
  if (at >= 0) {
    digest = path.slice(at + 1);
    path = path.slice(0, at);
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new ModulePullError(`${url}: the digest must be sha256:<64 lowercase hex digits>`);
  }
  const colon = path.lastIndexOf(":");
  const tag = colon >= 0 ? path.slice(colon + 1) : undefined;
  const repository = colon >= 0 ? path.slice(0, colon) : path;
  if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(repository)) {
    throw new ModulePullError(`${url}: "${repository}" is not a valid repository name`);
  }
  if (tag !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) throw new ModulePullError(`${url}: "${tag}" is not a valid tag`);
  return { registry, repository, tag: tag ?? (digest ? undefined : "latest"), digest };
}

/** Pulls the module an OCI image holds, verifying every digest and the pin; throws ModulePullError. */
export async function pullModule(url: string, options: PullOptions = {}): Promise<PulledModule> {
  const reference = parseImageReference(url);
  const client = new RegistryClient(reference, options);
  const accept = [MEDIA.ociManifest, MEDIA.dockerManifest, MEDIA.ociIndex, MEDIA.dockerList].join(", ");
  let { body: manifestBytes, contentType } = await client.get(`manifests/${reference.digest ?? reference.tag}`, accept);
  let manifest = parseJson(manifestBytes, url) as Manifest;
  let mediaType = manifest.mediaType ?? contentType;
  if (reference.digest && digestOf(manifestBytes) !== reference.digest) {
    throw new ModulePullError(`${url}: the registry answered a manifest whose digest is ${digestOf(manifestBytes)}`);
  }
  if (mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList) {
    // A multi-platform image: a module runs anywhere, so take the linux/amd64 entry, or the only one.
    const entries = manifest.manifests ?? [];
    const entry = entries.find((m) => m.platform?.os === "linux" && m.platform.architecture === "amd64") ?? (entries.length === 1 ? entries[0] : undefined);
    if (!entry) throw new ModulePullError(`${url}: an image index without a linux/amd64 image`);
    manifestBytes = (await client.get(`manifests/${entry.digest}`, accept)).body;
    if (digestOf(manifestBytes) !== entry.digest) throw new ModulePullError(`${url}: manifest ${entry.digest} does not match its digest`);
    manifest = parseJson(manifestBytes, url) as Manifest;
    mediaType = manifest.mediaType ?? entry.mediaType;
  }
  const imageDigest = digestOf(manifestBytes).slice("sha256:".length);
  const pinned = options.sha256 ?? reference.digest?.slice("sha256:".length);
  const layer = moduleLayer(url, mediaType, manifest.layers ?? []);
  const blob = await client.blob(layer);
  const module = MEDIA.wasmLayers.includes(layer.mediaType) ? blob : pluginWasmFromTarGz(blob, url);
  if (!Buffer.from(module.subarray(0, 4)).equals(WASM_MAGIC)) throw new ModulePullError(`${url}: the image holds no Wasm module (no \\0asm header)`);
  const sha256 = createHash("sha256").update(module).digest("hex");
  if (pinned && pinned !== imageDigest && pinned !== sha256) {
    throw new ModulePullError(`${url}: sha256 ${pinned} matches neither the image digest ${imageDigest} nor the module's sha256 ${sha256}`, "spec.sha256");
  }
  return { bytes: module, sha256, imageDigest };
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}
interface Manifest {
  mediaType?: string;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

function moduleLayer(url: string, mediaType: string, layers: Descriptor[]): Descriptor {
  const wasm = layers.find((layer) => MEDIA.wasmLayers.includes(layer.mediaType));
  if (wasm) return wasm;
  const last = layers.at(-1);
  const expected = mediaType === MEDIA.dockerManifest ? MEDIA.dockerLayer : MEDIA.ociLayer;
  if (last && (last.mediaType === expected || last.mediaType === MEDIA.dockerLayer || last.mediaType === MEDIA.ociLayer)) return last;
  throw new ModulePullError(
    `${url}: not a Wasm image: expected a ${MEDIA.wasmLayers[0]} layer, or a last layer ${expected} holding plugin.wasm; found ${layers.map((l) => l.mediaType).join(", ") || "no layers"}`,
  );
}

/** `plugin.wasm` from a gzipped tar (ustar, with pax and GNU long names), anywhere in the archive as Istio looks. */
function pluginWasmFromTarGz(gz: Uint8Array, url: string): Uint8Array {
  let tar: Buffer;
  try {
    tar = gunzipSync(gz);
  } catch (error) {
    throw new ModulePullError(`${url}: the image layer is not gzip: ${(error as Error).message}`);
  }
  let longName: string | undefined;
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, length: number) => header.subarray(start, start + length).toString("utf8").replace(/\0.*$/s, "");
    const size = parseInt(field(124, 12).trim() || "0", 8);
    const type = String.fromCharCode(header[156] || 0x30);
    const content = tar.subarray(at + 512, at + 512 + size);
    const prefix = field(345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    if (type === "x") longName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(content.toString("utf8"))?.[1];
    else if (type === "L") longName = content.toString("utf8").replace(/\0.*$/s, "");
    else if ((type === "0" || type === "\0") && name.split("/").pop() === "plugin.wasm") return new Uint8Array(content);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new ModulePullError(`${url}: plugin.wasm is not in the image layer`);
}

/** The distribution API on one registry: anonymous first, then Basic or Bearer as the registry's challenge asks. */
class RegistryClient {
  private authorization?: string;
  private scheme: "https" | "http";

  constructor(
    private readonly reference: ImageReference,
    private readonly options: PullOptions,
  ) {
    this.scheme = options.insecure ? "http" : "https";
  }

  async get(path: string, accept: string): Promise<{ body: Uint8Array; contentType: string }> {
    const response = await this.request(`/v2/${this.reference.repository}/${path}`, accept);
    return { body: new Uint8Array(await response.arrayBuffer()), contentType: (response.headers.get("content-type") ?? "").split(";")[0] };
  }

  async blob(layer: Descriptor): Promise<Uint8Array> {
    const { body } = await this.get(`blobs/${layer.digest}`, "*/*");
    if (digestOf(body) !== layer.digest) throw new ModulePullError(`${this.url()}: layer ${layer.digest} does not match its digest`);
    return body;
  }

  private url(): string {
    const { registry, repository, tag, digest } = this.reference;
    return `oci://${registry}/${repository}${tag ? `:${tag}` : ""}${digest ? `@${digest}` : ""}`;
  }

  private async request(path: string, accept: string): Promise<Response> {
    let response = await this.send(path, accept);
    if (response.status === 401 && !this.authorization) {
      this.authorization = await this.authorize(response.headers.get("www-authenticate") ?? "");
      response = await this.send(path, accept);
    }
    if (response.ok) return response;
    const reason = response.status === 401 || response.status === 403
      ? `the registry refused access (${response.status}): ${this.credentials() ? "the pull credentials were not accepted" : "no pull credentials for this registry (imagePullSecret)"}`
      : response.status === 404
        ? "not found (404)"
        : `HTTP ${response.status}`;
    throw new ModulePullError(`${this.url()}: ${reason}`);
  }

  private async send(path: string, accept: string): Promise<Response> {
    const headers: Record<string, string> = { accept, ...(this.authorization ? { authorization: this.authorization } : {}) };
    const timeout = AbortSignal.timeout(this.options.timeoutMs ?? 30_000);
    try {
      return await fetch(`${this.scheme}://${this.reference.registry}${path}`, { headers, signal: timeout, redirect: "follow" });
    } catch (error) {
      // A registry on loopback without TLS: retry over plain HTTP, as Istio's fetcher does for "server gave HTTP response".
      if (this.scheme === "https" && /^(127\.|localhost(:|$)|\[::1\])/.test(this.reference.registry)) {
        this.scheme = "http";
        return this.send(path, accept);
      }
      throw new ModulePullError(`${this.url()}: cannot reach the registry: ${cause(error)}`);
    }
  }

  /** An Authorization header for the registry's challenge, from the docker config's credentials for it. */
  private async authorize(challenge: string): Promise<string | undefined> {
    const credentials = this.credentials();
    const [kind, ...rest] = challenge.split(" ");
    if (/^basic$/i.test(kind)) return credentials ? `Basic ${credentials}` : undefined;
    if (!/^bearer$/i.test(kind)) return undefined;
    const params = Object.fromEntries([...rest.join(" ").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!params.realm) return undefined;
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    tokenUrl.searchParams.set("scope", params.scope ?? `repository:${this.reference.repository}:pull`);
    let response: Response;
    try {
      response = await fetch(tokenUrl, { headers: credentials ? { authorization: `Basic ${credentials}` } : {}, signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000) });
    } catch (error) {
      throw new ModulePullError(`${this.url()}: cannot reach the registry's token service: ${cause(error)}`);
    }
    if (!response.ok) throw new ModulePullError(`${this.url()}: the registry's token service refused the ${credentials ? "pull credentials" : "anonymous request"} (${response.status})`);
    const token = (await response.json()) as { token?: string; access_token?: string };
    return `Bearer ${token.token ?? token.access_token}`;
  }

  /** base64(user:password) for this registry from the docker config, if it has an entry. */
  private credentials(): string | undefined {
    if (!this.options.dockerConfig) return undefined;
    let config: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
    try {
      config = JSON.parse(this.options.dockerConfig);
    } catch {
      throw new ModulePullError(`${this.url()}: the pull secret is not a docker config JSON`);
    }
    const registry = this.reference.registry;
    const entry = Object.entries(config.auths ?? {}).find(([key]) => key.replace(/^https?:\/\//, "").replace(/\/.*$/, "") === registry)?.[1];
    if (!entry) return undefined;
    return entry.auth ?? (entry.username !== undefined ? Buffer.from(`${entry.username}:${entry.password ?? ""}`).toString("base64") : undefined);
  }
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function parseJson(bytes: Uint8Array, url: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new ModulePullError(`${url}: the registry's manifest is not JSON`);
  }
}

function cause(error: unknown): string {
  const reason = (error as { cause?: { code?: string; message?: string } }).cause;
  return reason?.code ?? reason?.message ?? (error as Error).message;
}
