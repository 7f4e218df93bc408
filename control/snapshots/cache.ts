// Per-proxy snapshots: everything one proxy should have, encoded once, with a version per resource. Like
// go-control-plane's snapshot cache, a snapshot is replaced whole; the xDS server works out what changed per type.
import { createHash } from "node:crypto";
import { encodeResource, ResourceEncodingError } from "../protos/encode.js";
import { type ProxyResources, TypeUrl } from "../resources.js";

export interface EncodedResource {
  name: string;
  /** Content hash of the encoded bytes: equal versions mean equal resources. */
  version: string;
  bytes: Uint8Array;
  /** The proto3 JSON it was encoded from (translation's object, not a copy): the xDS server reads cluster bodies to
   * know which clusters take their endpoints by EDS. */
  body: Record<string, unknown>;
}

export interface Snapshot {
  /** Counts the snapshots set for this proxy in this control plane: 1, 2, ... (for its logs only). */
  version: number;
  /** A hash of every resource's type, name and content version: equal resources give an equal value in every
   * control plane replica and across restarts. What a proxy is told (delta's system_version_info) and shown as. */
  contentVersion: string;
  resources: Map<TypeUrl, Map<string, EncodedResource>>;
  /** When the change that produced this snapshot began (epoch ms): the first file event of the config burst, or the
   * proxy's connection. The xDS server measures convergence (istiod's pilot_proxy_convergence_time) from here. */
  changedAt: number;
  /** What the control plane noticed while making it, shown by the status view (e.g. "no Gateway selects ..."). */
  notes: string[];
}

/** A snapshot that could not be encoded; the proxy keeps its previous one. Lists every bad resource. */
export class SnapshotError extends Error {
  constructor(
    readonly nodeId: string,
    readonly errors: ResourceEncodingError[],
  ) {
    super(`snapshot for ${nodeId} rejected, the previous one stays:\n  ${errors.map((error) => error.message).join("\n  ")}`);
    this.name = "SnapshotError";
  }
}

type Listener = (nodeId: string, snapshot: Snapshot) => void;

/** Identical resources are shared by many proxies; encode each once (bounded, cleared when it grows too large). */
const MAX_MEMO = 100_000;

export class SnapshotCache {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly listeners = new Set<Listener>();
  private memo = new Map<string, EncodedResource>();
  /** Proxies alike are given the very same ProxyResources object: encode it once for all of them. */
  private encodedSets = new WeakMap<ProxyResources, Map<TypeUrl, Map<string, EncodedResource>>>();
  /** And hash it once: a content version per encoded set, whichever proxies hold it. */
  private contentVersions = new WeakMap<Snapshot["resources"], string>();

  /** Encodes and stores a proxy's resources, then tells the listeners; throws SnapshotError and keeps the old one
   * when a resource does not encode. Returns the stored snapshot (the same one when nothing changed). `resources` is
   * taken as immutable: the same object given again (for another proxy) is not encoded again. */
  set(nodeId: string, resources: ProxyResources, options: { changedAt?: number; notes?: string[] } = {}): Snapshot {
    const { changedAt = Date.now(), notes = [] } = options;
    const byType = this.encodedSets.get(resources) ?? this.encodeAll(nodeId, resources);
    this.encodedSets.set(resources, byType);
    const previous = this.snapshots.get(nodeId);
    if (previous && (previous.resources === byType || sameResources(previous.resources, byType)) && previous.notes.join("\n") === notes.join("\n")) return previous;
    const snapshot: Snapshot = { version: (previous?.version ?? 0) + 1, contentVersion: this.contentVersion(byType), resources: byType, changedAt, notes };
    this.snapshots.set(nodeId, snapshot);
    for (const listener of this.listeners) listener(nodeId, snapshot);
    return snapshot;
  }

  private encodeAll(nodeId: string, resources: ProxyResources): Map<TypeUrl, Map<string, EncodedResource>> {
    const errors: ResourceEncodingError[] = [];
    const byType = new Map<TypeUrl, Map<string, EncodedResource>>();
    for (const typeUrl of Object.values(TypeUrl)) {
      const encoded = new Map<string, EncodedResource>();
      for (const resource of resources[typeUrl] ?? []) {
        try {
          encoded.set(resource.name, this.encode(typeUrl, resource.name, resource.body));
        } catch (error) {
          if (error instanceof ResourceEncodingError) errors.push(error);
          else throw error;
        }
      }
      byType.set(typeUrl, encoded);
    }
    if (errors.length) throw new SnapshotError(nodeId, errors);
    return byType;
  }

  get(nodeId: string): Snapshot | undefined {
    return this.snapshots.get(nodeId);
  }

  delete(nodeId: string): void {
    this.snapshots.delete(nodeId);
  }

  /** Calls `listener` after each new snapshot; returns the function that stops it. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private contentVersion(resources: Snapshot["resources"]): string {
    let version = this.contentVersions.get(resources);
    if (version === undefined) this.contentVersions.set(resources, (version = contentVersion(resources)));
    return version;
  }

  private encode(typeUrl: TypeUrl, name: string, body: Record<string, unknown>): EncodedResource {
    const key = `${typeUrl}\0${name}\0${JSON.stringify(body)}`;
    const known = this.memo.get(key);
    if (known) return known;
    const bytes = encodeResource(typeUrl, { name, body });
    const encoded = { name, version: createHash("sha256").update(bytes).digest("hex").slice(0, 16), bytes, body };
    if (this.memo.size >= MAX_MEMO) this.memo = new Map();
    this.memo.set(key, encoded);
    return encoded;
  }
}

function contentVersion(resources: Snapshot["resources"]): string {
  const hash = createHash("sha256");
  for (const [typeUrl, byName] of resources) {
    for (const name of [...byName.keys()].sort()) hash.update(`${typeUrl}\0${name}\0${byName.get(name)!.version}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}

function sameResources(a: Snapshot["resources"], b: Snapshot["resources"]): boolean {
  for (const [typeUrl, resources] of b) {
    const other = a.get(typeUrl);
    if (!other || other.size !== resources.size) return false;
    for (const [name, resource] of resources) if (other.get(name)?.version !== resource.version) return false;
  }
  return true;
}
