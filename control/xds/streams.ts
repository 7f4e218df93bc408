// One ADS stream of one proxy: per type, its subscription, what was sent (version, nonce), what the proxy acked or
// rejected. Responses go out in PUSH_ORDER, listeners and routes only after the clusters, endpoints, extension
// configs and secrets they may name were answered, so Envoy holds a cluster (warmed, with its endpoints) before any
// route that names it; a rejected version is never resent.
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { EncodedResource, Snapshot, SnapshotCache } from "../snapshots/cache.js";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Node } from "./messages.js";
import { PUSH_ORDER, type ProxyIdentity, TypeUrl } from "../resources.js";
import type { PushThrottle } from "./throttle.js";
import { edsNames, edsNamesOf, knownType, sameSubscription, type Selection, SelectionMemo, type Subscription, subscriptionOf, toSend, WILDCARD_TYPES } from "./subscriptions.js";

export type SyncStatus = "SYNCED" | "NOT SENT" | "STALE" | "ERROR";

export interface TypeStatus {
  status: SyncStatus;
  sentVersion?: string;
  ackedVersion?: string;
  /** The error_detail of the last NACK, while the proxy has not accepted a later version. */
  error?: string;
  /** When that NACK arrived (ISO 8601). */
  nackedAt?: string;
  /** When the proxy last ACKed this type (ISO 8601). */
  lastAckAt?: string;
}

export interface StreamStatus {
  nodeId: string;
  role: ProxyIdentity["role"];
  /** The workload labels the proxy sent (node.metadata.LABELS), which selectors match (`skiff analyze` reads them). */
  labels: Record<string, string>;
  protocol: "sotw" | "delta";
  snapshotVersion?: number;
  /** The snapshot's content hash: equal in every replica that serves the same configuration. */
  contentVersion?: string;
  types: Partial<Record<string, TypeStatus>>;
  /** What the control plane noticed about this proxy's configuration (e.g. that nothing selects it). */
  notes?: string[];
}

interface Sent {
  version: string;
  nonce: string;
  resources: Map<string, EncodedResource>;
}

interface TypeState {
  /** Replaced, never modified, when the proxy changes it. */
  subscription: Subscription;
  /** What the subscription selects from the current snapshot, with its version. */
  view: SelectionMemo;
  /** Answer the next pass even if nothing changed (a new subscription on this stream, e.g. after a reconnect). */
  mustRespond: boolean;
  sent?: Sent;
  awaitingNonce?: string;
  acked?: Sent;
  ackedAt?: number;
  nacked?: { nonce: string; version: string; error: string; at: number };
  // Delta only: what the proxy holds (name -> version), versions it rejected, missing names it was told about.
  known: Map<string, string>;
  rejected: Map<string, string>;
  toldMissing: Set<string>;
}

/** What the xDS server reports as it works, for metrics (control/metrics/). */
export interface XdsObserver {
  connected(proxy: ProxyIdentity, protocol: AdsStream["protocol"]): void;
  disconnected(proxy: ProxyIdentity, protocol: AdsStream["protocol"]): void;
  /** A response was written; `seconds` is the time to select, version and write it. */
  pushed(typeUrl: TypeUrl, seconds: number): void;
  acked(nodeId: string, typeUrl: TypeUrl): void;
  nacked(nodeId: string, typeUrl: TypeUrl, error: string): void;
  /** Every type the proxy subscribes to is ACKed at the current snapshot; `seconds` since the change began. */
  converged(proxy: ProxyIdentity, seconds: number): void;
}

export interface StreamContext {
  cache: SnapshotCache;
  log(line: string): void;
  observer?: Partial<XdsObserver>;
  /** Bounds the responses being written at once, across streams; without it, each goes out at once. */
  throttle?: PushThrottle;
  /** The key of a proxy's snapshot in the cache (see XdsServerOptions.snapshotKey). */
  snapshotKey(identity: ProxyIdentity): string;
  /** Decides, on the first request, which identity the stream is served as (throws StreamRefused to refuse it). */
  authorize?(claimed: ProxyIdentity): ProxyIdentity;
  /** Called once per stream with the proxy's identity, before anything is sent. */
  connected(stream: AdsStream): void;
  closed(stream: AdsStream): void;
}

/** A stream the server will not serve, with the gRPC status to end it with. */
export class StreamRefused extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = "StreamRefused";
  }
}

function identityOf(node: Node | undefined): ProxyIdentity {
  if (!node?.id) throw new Error("the first discovery request carries no node.id");
  const metadata = node.metadata ?? {};
  const role = metadata.ROLE === "gateway" ? "gateway" : "sidecar";
  const labels: Record<string, string> = {};
  if (metadata.LABELS && typeof metadata.LABELS === "object") {
    for (const [key, value] of Object.entries(metadata.LABELS)) labels[key] = String(value);
  }
  const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);
  const ips = (text(metadata.INSTANCE_IPS) ?? "").split(",").map((ip) => ip.trim()).filter(Boolean);
  const { region, zone, sub_zone: subZone } = node.locality ?? {};
  const locality = region || zone || subZone ? { ...(region ? { region } : {}), ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) } : undefined;
  return {
    nodeId: node.id,
    role,
    labels,
    namespace: text(metadata.NAMESPACE) ?? "default",
    ...(text(metadata.SERVICE_ACCOUNT) ? { serviceAccount: text(metadata.SERVICE_ACCOUNT) } : {}),
    ips,
    ...(locality ? { locality } : {}),
    ...(metadata.INTERCEPTION_MODE === "NONE" || metadata.INTERCEPTION_MODE === "REDIRECT" ? { interceptionMode: metadata.INTERCEPTION_MODE } : {}),
  };
}

const shortName = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf(".") + 1);

type Outcome = "sent" | "unchanged" | "deferred";

export abstract class AdsStream {
  identity?: ProxyIdentity;
  /** Where this stream's snapshot lives in the cache, set with the identity. */
  snapshotKey?: string;
  protected readonly types = new Map<TypeUrl, TypeState>();
  protected closed = false;
  private nonces = 0;
  /** The snapshot version this stream last looked at, and since when (epoch ms) the proxy has had a change it has
   * not fully ACKed yet: the start of the convergence measurement. */
  private seenSnapshot?: number;
  private convergingSince?: number;
  /** The throttle slots of this stream's responses still being written, freed when the stream closes. */
  private readonly writing = new Set<() => void>();

  constructor(
    protected readonly context: StreamContext,
    readonly protocol: "sotw" | "delta",
  ) {}

  get nodeId(): string {
    return this.identity?.nodeId ?? "(unknown)";
  }

  /** A new snapshot for this proxy (or an answer arrived): send what is due. Clusters, endpoints, extension
   * configs and secrets go out as soon as their own previous response was answered (Envoy holds its CDS ack until
   * the new clusters' endpoints arrive); listeners and routes only once all of those are answered and in sync. */
  pump(): void {
    if (this.closed || this.snapshotKey === undefined) return;
    const snapshot = this.context.cache.get(this.snapshotKey);
    if (!snapshot) return;
    if (snapshot.version !== this.seenSnapshot) {
      this.seenSnapshot = snapshot.version;
      // Several changes before the proxy caught up: it converges when it has all of them, measured from the first.
      this.convergingSince ??= snapshot.changedAt;
    }
    this.sendDue(snapshot);
    this.checkConverged(snapshot);
  }

  private sendDue(snapshot: Snapshot): void {
    const referencesPending = this.referencesPending(snapshot);
    let referencedSettled = true;
    for (const typeUrl of PUSH_ORDER) {
      const referencing = typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.RouteConfiguration;
      if (referencing && (!referencedSettled || !this.endpointsSubscribed())) return;
      const state = this.types.get(typeUrl);
      if (!state) continue;
      // A response that waits for a throttle slot is pending like one awaiting its answer.
      if (state.awaitingNonce || this.timedRespond(typeUrl, state, snapshot, referencesPending) !== "unchanged") {
        if (!referencing) referencedSettled = false;
      }
    }
  }

  private timedRespond(typeUrl: TypeUrl, state: TypeState, snapshot: Snapshot, referencesPending: boolean): Outcome {
    const start = process.hrtime.bigint();
    const before = state.sent?.resources;
    const view = state.view.of(snapshot, typeUrl, state.subscription);
    const outcome = this.respond(typeUrl, state, toSend(view, typeUrl, state.subscription, state.sent?.resources, referencesPending), snapshot);
    if (outcome !== "sent") return outcome;
    this.context.observer?.pushed?.(typeUrl, Number(process.hrtime.bigint() - start) / 1e9);
    if (typeUrl === TypeUrl.Cluster && before) this.rewarmEndpoints(before, state.sent!.resources);
    return outcome;
  }

  /** A throttle slot for one response, with the function to call once gRPC has written it; undefined when none is
   * free (the throttle pumps this stream again later). */
  protected writeSlot(): (() => void) | undefined {
    const free = this.context.throttle ? this.context.throttle.acquire(this) : () => {};
    if (!free) return undefined;
    const written = () => {
      this.writing.delete(written);
      free();
    };
    this.writing.add(written);
    return written;
  }

  /** Envoy re-creates an EDS cluster whose definition changed and keeps it warming (the old one serving) until it
   * receives that cluster's endpoints again, even when they did not change; with `initial_fetch_timeout: 0s` it
   * would wait forever. So the endpoints of changed EDS clusters go out again right after the clusters, as istiod
   * pushes EDS with every CDS push (envoyproxy/go-control-plane#245, java-control-plane#131, xDS protocol "Resource
   * warming"). */
  private rewarmEndpoints(before: Map<string, EncodedResource>, after: Map<string, EncodedResource>): void {
    const endpoints = this.types.get(TypeUrl.ClusterLoadAssignment);
    if (!endpoints) return;
    const changed = [...after.values()].filter((cluster) => before.has(cluster.name) && before.get(cluster.name)!.version !== cluster.version);
    const names = edsNames(changed);
    if (names.length === 0) return;
    endpoints.mustRespond = true;
    for (const name of names) endpoints.known.delete(name);
  }

  /** Converged: every subscribed type answered, ACKed and current with this snapshot (istiod's "a proxy receiving
   * all required configuration"). A NACKed type keeps the measurement open until a later snapshot is accepted. */
  private checkConverged(snapshot: Snapshot): void {
    if (this.convergingSince === undefined || this.types.size === 0) return;
    for (const [typeUrl, state] of this.types) {
      if (!state.sent || state.awaitingNonce) return;
      if (state.nacked && state.nacked.nonce === state.sent.nonce) return;
      if (state.view.of(snapshot, typeUrl, state.subscription).version !== state.sent.version) return;
    }
    this.context.observer?.converged?.(this.identity!, (Date.now() - this.convergingSince) / 1000);
    this.convergingSince = undefined;
  }

  status(): StreamStatus {
    const snapshot = this.snapshotKey === undefined ? undefined : this.context.cache.get(this.snapshotKey);
    const types: StreamStatus["types"] = {};
    for (const [typeUrl, state] of this.types) {
      const row: TypeStatus = { status: "NOT SENT", sentVersion: state.sent?.version, ackedVersion: state.acked?.version };
      if (state.sent) {
        const wanted = snapshot ? state.view.of(snapshot, typeUrl, state.subscription).version : state.sent.version;
        if (state.nacked && state.nacked.nonce === state.sent.nonce) row.status = "ERROR";
        else row.status = state.awaitingNonce || wanted !== state.sent.version ? "STALE" : "SYNCED";
      }
      if (state.nacked) {
        row.error = state.nacked.error;
        row.nackedAt = new Date(state.nacked.at).toISOString();
      }
      if (state.ackedAt !== undefined) row.lastAckAt = new Date(state.ackedAt).toISOString();
      types[shortName(typeUrl)] = row;
    }
    return {
      nodeId: this.nodeId,
      role: this.identity?.role ?? "sidecar",
      labels: this.identity?.labels ?? {},
      protocol: this.protocol,
      snapshotVersion: snapshot?.version,
      contentVersion: snapshot?.contentVersion,
      types,
      ...(snapshot?.notes.length ? { notes: snapshot.notes } : {}),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // gRPC does not call back for what a cancelled stream did not write.
    for (const written of this.writing) written();
    this.context.throttle?.forget(this);
    this.context.closed(this);
  }

  /** Identifies the proxy on its first request; the request's type, unless this server does not serve it. */
  protected servedType(request: { node?: Node; type_url?: string }): TypeUrl | undefined {
    if (!this.identity) {
      const claimed = identityOf(request.node);
      this.identity = this.context.authorize ? this.context.authorize(claimed) : claimed;
      this.snapshotKey = this.context.snapshotKey(this.identity);
      this.context.log(`${this.nodeId}: connected (${this.protocol}, role ${this.identity.role})`);
      this.context.connected(this);
    }
    const typeUrl = request.type_url ?? "";
    if (knownType(typeUrl)) return typeUrl;
    this.context.log(`${this.nodeId}: ignoring a request for unserved type ${typeUrl}`);
    return undefined;
  }

  protected newState(typeUrl: TypeUrl): TypeState {
    const state: TypeState = {
      subscription: subscriptionOf(false, []),
      view: new SelectionMemo(),
      mustRespond: true,
      known: new Map(),
      rejected: new Map(),
      toldMissing: new Set(),
    };
    this.types.set(typeUrl, state);
    return state;
  }

  protected nextNonce(): string {
    return String(++this.nonces);
  }

  protected recordAnswer(typeUrl: TypeUrl, state: TypeState, nonce: string, error: { code?: number; message?: string } | undefined): void {
    const sent = state.sent!;
    state.awaitingNonce = undefined;
    if (error) {
      state.nacked = { nonce, version: sent.version, error: error.message ?? `code ${error.code}`, at: Date.now() };
      this.context.log(`${this.nodeId}: NACK ${shortName(typeUrl)} version ${sent.version} (nonce ${nonce}): ${state.nacked.error}`);
      this.context.observer?.nacked?.(this.nodeId, typeUrl, state.nacked.error);
    } else {
      state.acked = sent;
      state.ackedAt = Date.now();
      state.nacked = undefined;
      this.context.log(`${this.nodeId}: ACK ${shortName(typeUrl)} version ${sent.version} (nonce ${nonce})`);
      this.context.observer?.acked?.(this.nodeId, typeUrl);
    }
  }

  protected logPush(typeUrl: TypeUrl, sent: Sent, snapshot: Snapshot, detail: string): void {
    this.context.log(`${this.nodeId}: push ${shortName(typeUrl)} version ${sent.version} (snapshot ${snapshot.version}, nonce ${sent.nonce}): ${detail}`);
  }

  /** Sends `resources` of `typeUrl` if the proxy needs them: "sent", "unchanged" (nothing to send), or "deferred"
   * (something to send, no throttle slot free: nothing changed in the stream's state). */
  protected abstract respond(typeUrl: TypeUrl, state: TypeState, selection: Selection, snapshot: Snapshot): Outcome;

  /** Listeners or routes still have a change to receive, or the proxy rejected theirs and still runs older ones:
   * keep removed clusters and the like until then. */
  private referencesPending(snapshot: Snapshot): boolean {
    return [TypeUrl.Listener, TypeUrl.RouteConfiguration].some((typeUrl) => {
      const state = this.types.get(typeUrl);
      if (!state) return false;
      if (state.awaitingNonce !== undefined || (state.nacked && state.nacked.nonce === state.sent?.nonce)) return true;
      return state.view.of(snapshot, typeUrl, state.subscription).version !== state.sent?.version;
    });
  }

  /** Envoy subscribes to the endpoints of accepted EDS clusters before it acks them; a listener or route goes out
   * only once those subscriptions exist, so that no route points at a cluster still warming. */
  private endpointsSubscribed(): boolean {
    const clusters = this.types.get(TypeUrl.Cluster)?.acked?.resources;
    const endpoints = this.types.get(TypeUrl.ClusterLoadAssignment);
    if (!clusters || !endpoints) return true;
    return edsNamesOf(clusters).every((name) => endpoints.subscription.wildcard || endpoints.subscription.names.has(name));
  }
}

/** State of the world: every response carries all selected resources of its type. */
export class SotwStream extends AdsStream {
  constructor(
    context: StreamContext,
    private readonly call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
  ) {
    super(context, "sotw");
  }

  onRequest(request: DiscoveryRequest): void {
    const typeUrl = this.servedType(request);
    if (!typeUrl) return;
    const state = this.types.get(typeUrl) ?? this.newState(typeUrl);
    // A nonce is checked only once this stream has sent this type something: a client that reconnects may still
    // carry the last nonce of its previous stream, and its request is then the first one here.
    if (request.response_nonce && state.sent) {
      // A request answering an older response than the last one sent is stale: the proxy answers that one next.
      if (request.response_nonce !== state.sent.nonce) return;
      // Otherwise it answers the last response, or (already answered) changes the subscription.
      if (request.response_nonce === state.awaitingNonce) this.recordAnswer(typeUrl, state, request.response_nonce, request.error_detail);
    } else {
      state.mustRespond = true;
    }
    // Every request repeats the subscription; most repeat it unchanged.
    const names = request.resource_names ?? [];
    const wildcard = names.includes("*") || (names.length === 0 && WILDCARD_TYPES.has(typeUrl));
    if (!sameSubscription(state.subscription, wildcard, names)) state.subscription = subscriptionOf(wildcard, names);
    this.pump();
  }

  protected respond(typeUrl: TypeUrl, state: TypeState, { resources, version }: Selection, snapshot: Snapshot): Outcome {
    if (!state.mustRespond && state.sent?.version === version) return "unchanged";
    // Listeners and clusters go whole (what a response leaves out is removed). For endpoints, routes, extension
    // configs and secrets a response may carry only what changed, and leaving a resource out removes nothing
    // (the xDS protocol; also Istio's incremental EDS): with thousands of endpoints, one changed endpoint set is
    // sent, not all of them.
    const whole = state.mustRespond || !state.sent || WILDCARD_TYPES.has(typeUrl);
    const carried = whole ? [...resources.values()] : [...resources.values()].filter((resource) => state.sent!.resources.get(resource.name)?.version !== resource.version);
    // An empty listener or cluster set is an answer too (a gateway that no Gateway selects has no listeners): left
    // unanswered, Envoy would wait out its initial fetch timeout (15 s) before it serves or reports ready.
    if (carried.length === 0 && !WILDCARD_TYPES.has(typeUrl)) {
      // Only removals, which these types do not express (the proxy drops them with the cluster or listener).
      state.sent = { ...state.sent!, version, resources };
      return "unchanged";
    }
    const written = this.writeSlot();
    if (!written) return "deferred";
    const sent: Sent = { version, nonce: this.nextNonce(), resources };
    state.sent = sent;
    state.awaitingNonce = sent.nonce;
    state.mustRespond = false;
    this.call.write({ versionInfo: version, typeUrl, nonce: sent.nonce, resources: carried }, written);
    this.logPush(typeUrl, sent, snapshot, `${carried.length} of ${resources.size} resource(s)`);
    return "sent";
  }
}

/** Incremental: responses carry changed resources and the names of removed ones. */
export class DeltaStream extends AdsStream {
  private pending = new Map<string, { changed: EncodedResource[]; removed: string[] }>();

  constructor(
    context: StreamContext,
    private readonly call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
  ) {
    super(context, "delta");
  }

  onRequest(request: DeltaDiscoveryRequest): void {
    const typeUrl = this.servedType(request);
    if (!typeUrl) return;
    let state = this.types.get(typeUrl);
    const subscribe = request.resource_names_subscribe ?? [];
    if (!state) {
      state = this.newState(typeUrl);
      state.known = new Map(Object.entries(request.initial_resource_versions ?? {}));
      state.subscription = subscriptionOf(WILDCARD_TYPES.has(typeUrl) && subscribe.length === 0, []);
    }
    if (request.response_nonce && request.response_nonce === state.awaitingNonce) {
      const pending = this.pending.get(request.response_nonce);
      this.pending.delete(request.response_nonce);
      this.recordAnswer(typeUrl, state, request.response_nonce, request.error_detail);
      for (const resource of pending?.changed ?? []) {
        if (request.error_detail) state.rejected.set(resource.name, resource.version);
        else state.known.set(resource.name, resource.version);
      }
      for (const name of pending?.removed ?? []) state.known.delete(name);
    }
    // Subscription changes count even on a request with a stale nonce: in delta they are not repeated.
    const unsubscribe = request.resource_names_unsubscribe ?? [];
    if (subscribe.length > 0 || unsubscribe.length > 0) {
      let wildcard = state.subscription.wildcard;
      const names = new Set(state.subscription.names);
      for (const name of subscribe) {
        if (name === "*") wildcard = true;
        else names.add(name);
      }
      for (const name of unsubscribe) {
        if (name === "*") wildcard = false;
        else {
          names.delete(name);
          state.known.delete(name);
          state.toldMissing.delete(name);
        }
      }
      state.subscription = subscriptionOf(wildcard, names);
    }
    this.pump();
  }

  protected respond(typeUrl: TypeUrl, state: TypeState, { resources, version }: Selection, snapshot: Snapshot): Outcome {
    const changed = [...resources.values()].filter(
      (resource) => state.known.get(resource.name) !== resource.version && state.rejected.get(resource.name) !== resource.version,
    );
    // Tell the proxy once about names it asked for that do not exist, so it does not wait for them.
    const missing = [...state.subscription.names].filter((name) => !resources.has(name) && !state.known.has(name) && !state.toldMissing.has(name));
    const removed = [...[...state.known.keys()].filter((name) => !resources.has(name)), ...missing];
    if (!changed.length && !removed.length && !state.mustRespond) {
      // The proxy already holds these (e.g. it announced them in initial_resource_versions after a reconnect).
      state.sent = { version, nonce: state.sent?.nonce ?? "", resources };
      return "unchanged";
    }
    const written = this.writeSlot();
    if (!written) return "deferred";
    for (const name of missing) state.toldMissing.add(name);
    const sent: Sent = { version, nonce: this.nextNonce(), resources };
    state.sent = sent;
    state.awaitingNonce = sent.nonce;
    state.mustRespond = false;
    this.pending.set(sent.nonce, { changed, removed });
    this.call.write(
      // Content, not a counter: every replica tells a proxy the same version for the same configuration.
      { systemVersionInfo: snapshot.contentVersion, typeUrl, nonce: sent.nonce, resources: changed, removedResources: removed },
      written,
    );
    this.logPush(typeUrl, sent, snapshot, `${changed.length} changed, ${removed.length} removed`);
    return "sent";
  }
}
