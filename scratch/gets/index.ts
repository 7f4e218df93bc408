// istio-stats: Istio's standard metrics (istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes, and the TCP ones) with Istio's labels, from a proxy-wasm filter, plus
// the peer metadata exchange between sidecars that gives the labels of the other side. Istio does this job with its
// own stats and metadata_exchange filters (istio/proxy extensions/stats, extensions/metadata_exchange); this filter
// follows their labels and exchange format. See README.md for how the names reach /stats/prometheus.
import {
  ConfigReader, Counter, DataAction, EncodedHeader, HeaderNames, HeadersAction, Histogram, HttpContext, LogLevel, NetworkAction, PeerType, PropertyPath, RootContext,
  TcpContext, getProperty, getPropertyString, getPropertyU64, log, monotonicNanos, registerRootContext,
} from "@skiff/proxy-wasm";
import { base64Encode, decodePeerHeader, encodeExchange, encodeStruct, Peer, peerFromEndpointMetadata, UNKNOWN, UNKNOWN_PEER } from "./peer";
import { exchangeFrame, FrameReader } from "./tcp-exchange";
export * from "@skiff/proxy-wasm/dispatcher";

const PEER_ID_HEADER = "x-envoy-peer-metadata-id";
const PEER_HEADER = "x-envoy-peer-metadata";
/** Istio's tag format: `name=.=value;.;` per label, then the metric name; the bootstrap's stats_tags regexes
 * (`(name=\.=(.*?);\.;)`) turn each into a tag, leaving `istio_requests_total` as the name. */
const VALUE_SEPARATOR = "=.=";
const FIELD_SEPARATOR = ";.;";
/** Peers, services and metric sets are cached; past these sizes a cache starts over (a bound, not an LRU). */
const MAX_PEERS = 1000;
const MAX_SERVICES = 1000;
const MAX_METRIC_SETS = 10000;

// The headers each side reads, each set with one host call for the whole map (HeaderMap.getEach).
const SOURCE_REQUEST = new HeaderNames([":authority", "content-type"]);
const DESTINATION_REQUEST = new HeaderNames([":authority", "content-type", PEER_HEADER, PEER_ID_HEADER]);
const SOURCE_RESPONSE = new HeaderNames([":status", "grpc-status", PEER_HEADER, PEER_ID_HEADER]);
const DESTINATION_RESPONSE = new HeaderNames([":status", "grpc-status"]);

const RESPONSE_FLAGS = ["LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR", "UDO"];

const CLUSTER_NAME = new PropertyPath(["xds", "cluster_name"]);
const UPSTREAM_HOST_METADATA = new PropertyPath(["xds", "upstream_host_metadata"]);
const RESPONSE_FLAGS_PROPERTY = new PropertyPath(["response", "flags"]);
const REQUEST_SIZE = new PropertyPath(["request", "total_size"]);
const RESPONSE_SIZE = new PropertyPath(["response", "total_size"]);
const CONNECTION_MTLS = new PropertyPath(["connection", "mtls"]);
const DOWNSTREAM_PEER_SAN = new PropertyPath(["connection", "uri_san_peer_certificate"]);
const DOWNSTREAM_LOCAL_SAN = new PropertyPath(["connection", "uri_san_local_certificate"]);
const UPSTREAM_PEER_SAN = new PropertyPath(["upstream", "uri_san_peer_certificate"]);
const UPSTREAM_LOCAL_SAN = new PropertyPath(["upstream", "uri_san_local_certificate"]);

/** Envoy's legacy response flag bits (StreamInfo::CoreResponseFlag order) as Istio prints them: "UH,UF", or "-". */
export function responseFlags(bits: u64): string {
  if (bits == 0) return "-";
  let out = "";
  for (let i = 0; i < RESPONSE_FLAGS.length; i++) {
    if ((bits & (<u64>1 << <u64>i)) == 0) continue;
    if (out.length > 0) out += ",";
    out += RESPONSE_FLAGS[i];
  }
  return out.length > 0 ? out : "-";
}

/** The metrics the filter records, in `drop` order (bit i of `Dropped` is METRICS[i]). */
const METRICS = [
  "istio_requests_total", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes",
  "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total", "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
];

/** How the configuration shapes each metric (Istio's stats config `metrics[]`, from Telemetry overrides): a dropped
 * metric is never defined, so it is absent from /stats/prometheus; a metric's removed labels are left out of its name
 * (label sets that differ only in them share one metric). Decided once per label set, when its metrics are defined. */
class MetricShapes {
  /** Bit i: METRICS[i] is dropped. */
  dropped: u32 = 0;
  /** Per METRICS[i], the labels it goes without. */
  removed: string[][] = [[], [], [], [], [], [], [], []];

  name(index: i32, tags: string): string | null {
    if ((this.dropped & (<u32>1 << <u32>index)) != 0) return null;
    return withoutLabels(tags, this.removed[index]) + METRICS[index];
  }
}

/** `tags` (`name=.=value;.;...`) without the labels `names`. */
function withoutLabels(tags: string, names: string[]): string {
  let out = tags;
  for (let i = 0; i < names.length; i++) {
    const key = names[i] + VALUE_SEPARATOR;
    let at = out.startsWith(key) ? 0 : out.indexOf(FIELD_SEPARATOR + key);
    if (at < 0) continue;
    if (at > 0) at += FIELD_SEPARATOR.length;
    const end = out.indexOf(FIELD_SEPARATOR, at + key.length);
    out = out.slice(0, at) + (end < 0 ? "" : out.slice(end + FIELD_SEPARATOR.length));
  }
  return out;
}

function counter(shapes: MetricShapes, index: i32, tags: string): Counter | null {
  const name = shapes.name(index, tags);
  return name === null ? null : new Counter(name);
}

function histogram(shapes: MetricShapes, index: i32, tags: string): Histogram | null {
  const name = shapes.name(index, tags);
  return name === null ? null : new Histogram(name);
}

/** Label values as small numbers, one table per label, for the metric cache's key (HTTP_KEY). A one-entry memo
 * answers the common case, the same value as the last request's, without hashing. Cleared with the metric cache, so
 * it holds at most as many values as the cache has metric sets. */
class ValueIds {
  ids: Map<string, u32> = new Map();
  last: string | null = null;
  lastId: u32 = 0;

  id(value: string): u32 {
    const last = this.last;
    if (last !== null && last == value) return this.lastId;
    let id: u32;
    if (this.ids.has(value)) {
      id = this.ids.get(value);
    } else {
      id = <u32>this.ids.size + 1;
      this.ids.set(value, id);
    }
    this.last = value;
    this.lastId = id;
    return id;
  }

  clear(): void {
    this.ids.clear();
    this.last = null;
  }
}

/** Every peer gets a number on first use, unique in the VM (roots share UNKNOWN_PEER). */
let peerKeys: u32 = 0;

function peerKey(peer: Peer): u32 {
  if (peer.key == 0) peer.key = ++peerKeys;
  return peer.key;
}

/** The HTTP metric cache's key: what decides a request's labels, as numbers (peers, service, principals, protocol,
 * security policy, response code, gRPC status, response flags), read as a 40-byte string for the Map. Finding a
 * request's metric set this way hashes 40 bytes instead of building and hashing the ~1,500 bytes of its ~25 labels;
 * the labels are built only for a label set not seen before. */
const HTTP_KEY_FIELDS = 10;
const HTTP_KEY = new StaticArray<u32>(HTTP_KEY_FIELDS);

function httpKeyString(): string {
  return String.UTF16.decodeUnsafe(changetype<usize>(HTTP_KEY), HTTP_KEY_FIELDS * 4);
}

/** The metrics of one label set, defined on first use. */
class HttpMetrics {
  requests: Counter | null;
  duration: Histogram | null;
  requestBytes: Histogram | null;
  responseBytes: Histogram | null;
  constructor(tags: string, shapes: MetricShapes) {
    this.requests = counter(shapes, 0, tags);
    this.duration = histogram(shapes, 1, tags);
    this.requestBytes = histogram(shapes, 2, tags);
    this.responseBytes = histogram(shapes, 3, tags);
  }
}

class TcpMetrics {
  opened: Counter | null;
  closed: Counter | null;
  sent: Counter | null;
  received: Counter | null;
  constructor(tags: string, shapes: MetricShapes) {
    this.opened = counter(shapes, 4, tags);
    this.closed = counter(shapes, 5, tags);
    this.sent = counter(shapes, 6, tags);
    this.received = counter(shapes, 7, tags);
  }
}

/** A peer's labels in the order `tags` joins them: as source (before and after source_principal), as destination
 * (before and after destination_principal, and its canonical service and cluster after the service labels). */
function peerLabels(peer: Peer): string[] {
  let labels = peer.labels;
  if (labels === null) {
    labels = [
      tag("source_workload", peer.workload) + tag("source_workload_namespace", peer.namespace),
      tag("source_app", peer.app) + tag("source_version", peer.version) + tag("source_canonical_service", peer.app) +
        tag("source_canonical_revision", peer.version) + tag("source_cluster", peer.cluster),
      tag("destination_workload", peer.workload) + tag("destination_workload_namespace", peer.namespace),
      tag("destination_app", peer.app) + tag("destination_version", peer.version),
      tag("destination_canonical_service", peer.app) + tag("destination_canonical_revision", peer.version) +
        tag("destination_cluster", peer.cluster),
    ];
    peer.labels = labels;
  }
  return labels;
}

function tag(name: string, value: string): string {
  return name + VALUE_SEPARATOR + (value.length > 0 ? value : UNKNOWN) + FIELD_SEPARATOR;
}

/** The host of Istio's cluster name `outbound|port|subset|host`; "" for any other cluster. */
function clusterService(cluster: string): string {
  if (!cluster.startsWith("outbound|")) return "";
  const parts = cluster.split("|");
  return parts.length == 4 ? parts[3] : "";
}

/** The Host header without its port (an IPv6 literal keeps its brackets); unknown when empty. */
function hostService(authority: string): string {
  const colon = authority.lastIndexOf(":");
  return authority.length == 0 ? UNKNOWN : colon > 0 && authority.indexOf("]") < colon ? authority.slice(0, colon) : authority;
}

/** Bytes as a Map key: their 16-bit units, after one unit holding the byte count's parity (so that bytes ending in
 * a zero and the same bytes without it differ). */
function bytesKey(bytes: ArrayBuffer): string {
  const size = bytes.byteLength;
  const units = 1 + ((size + 1) >> 1);
  const buffer = new StaticArray<u16>(units);
  const base = changetype<usize>(buffer);
  store<u16>(base, <u16>(size & 1));
  memory.copy(base + 2, changetype<usize>(bytes), <usize>size);
  return String.UTF16.decodeUnsafe(base, <usize>units * 2);
}

/** What one request or connection says about itself, besides the two peers. */
class Observation {
  service: string = UNKNOWN;
  protocol: string = "http";
  responseCode: string = "0";
  grpcStatus: string = "";
  flags: string = "-";
  sourcePrincipal: string = UNKNOWN;
  destinationPrincipal: string = UNKNOWN;
  securityPolicy: string = UNKNOWN;
}

class IstioStatsRoot extends RootContext {
  outbound: bool = true;
  exchange: bool = true;
  shapes: MetricShapes = new MetricShapes();
  /** `reporter`: fixed by the configuration. */
  reporterTag: string = "";
  local: Peer = UNKNOWN_PEER;
  /** The exchange headers this side sends, encoded once (written on every request or response). */
  localIdHeader: EncodedHeader = new EncodedHeader(PEER_ID_HEADER, "");
  localMetadataHeader: EncodedHeader = new EncodedHeader(PEER_HEADER, "");
  /** This side's TCP metadata exchange frame (tcp-exchange.ts). */
  localFrame: ArrayBuffer = new ArrayBuffer(0);
  /** False: the filter only takes part in the TCP metadata exchange and records nothing (a workload whose metrics
   * are off still has to take its peers' frames off the stream, as Istio's separate exchange filter does). */
  metrics: bool = true;
  configured: bool = false;
  peers: Map<string, Peer> = new Map();
  /** Upstream peers by their endpoint metadata's bytes (as a string key), decoded once per distinct metadata. */
  upstreamPeers: Map<string, Peer> = new Map();
  /** The service of a cluster name ("" for a cluster that is not Istio's), and of a Host header. */
  clusterServices: Map<string, string> = new Map();
  hostServices: Map<string, string> = new Map();
  httpMetrics: Map<string, HttpMetrics> = new Map();
  services: ValueIds = new ValueIds();
  principals: ValueIds = new ValueIds();
  codes: ValueIds = new ValueIds();
  grpcStatuses: ValueIds = new ValueIds();
  tcpMetrics: Map<string, TcpMetrics> = new Map();

  onConfigure(size: usize): bool {
    const config = ConfigReader.parse(size > 0 ? this.pluginConfiguration() : "");
    const reporter = config.oneOf("reporter", ["source", "destination"], "source");
    const workload = config.string("workload", UNKNOWN);
    const namespace = config.string("namespace", UNKNOWN);
    const app = config.string("app", UNKNOWN);
    const version = config.string("version", UNKNOWN);
    const cluster = config.string("cluster", "Kubernetes");
    const exchange = config.bool("exchange", true);
    const shapes = new MetricShapes();
    const drop = config.stringArray("drop");
    for (let i = 0; i < drop.length; i++) {
      const index = METRICS.indexOf(drop[i]);
      if (index < 0) config.problem("drop[" + i.toString() + "]", "expected one of " + METRICS.join(", "));
      else shapes.dropped |= <u32>1 << <u32>index;
    }
    const removals = config.objects("tagsToRemove");
    for (let i = 0; i < removals.length; i++) {
      const index = METRICS.indexOf(removals[i].string("metric", ""));
      if (index < 0) removals[i].problem("metric", "expected one of " + METRICS.join(", "));
      else shapes.removed[index] = removals[i].stringArray("tags");
      removals[i].rejectUnknownFields();
    }
    const metrics = config.bool("metrics", true);
    config.rejectUnknownFields();
    if (!config.ok) {
      log(LogLevel.Error, "istio-stats: configuration rejected: " + config.error);
      return false;
    }
    this.outbound = reporter == "source";
    this.reporterTag = tag("reporter", reporter);
    this.exchange = exchange;
    this.shapes = shapes;
    this.metrics = metrics;
    this.local = new Peer(workload, namespace, app, version, cluster);
    const id = workload + "." + namespace;
    const node = encodeStruct(
      ["CLUSTER_ID", "NAME", "NAMESPACE", "WORKLOAD_NAME"], [cluster, workload, namespace, workload],
      "LABELS", ["app", "service.istio.io/canonical-name", "service.istio.io/canonical-revision", "version"], [app, app, version, version],
    );
    this.localIdHeader = new EncodedHeader(PEER_ID_HEADER, id);
    this.localMetadataHeader = new EncodedHeader(PEER_HEADER, base64Encode(node));
    this.localFrame = exchangeFrame(encodeExchange(node, id));
    this.configured = true;
    return true;
  }

  /** The peer a metadata header pair names (decoded once per peer id); null without (valid) headers. */
  peer(id: string | null, header: string | null): Peer | null {
    if (header === null) return null;
    const key = id !== null ? id : header;
    if (this.peers.has(key)) return this.peers.get(key);
    const peer = decodePeerHeader(header);
    if (peer === null) return null;
    if (this.peers.size >= MAX_PEERS) this.peers.clear();
    this.peers.set(key, peer);
    return peer;
  }

  /** The labels common to HTTP and TCP metrics, in Istio's order. */
  tags(source: Peer, destination: Peer, seen: Observation): string {
    const service = seen.service;
    const dot = service.indexOf(".");
    const serviceName = dot > 0 ? service.slice(0, dot) : service;
    const rest = dot > 0 ? service.slice(dot + 1) : "";
    const serviceNamespace = rest.endsWith(".svc.cluster.local") ? rest.slice(0, rest.indexOf(".")) : UNKNOWN;
    const from = peerLabels(source);
    const to = peerLabels(destination);
    return this.reporterTag +
      from[0] + tag("source_principal", seen.sourcePrincipal) + from[1] +
      to[2] + tag("destination_principal", seen.destinationPrincipal) + to[3] +
      tag("destination_service", service) +
      tag("destination_service_name", serviceName) +
      tag("destination_service_namespace", serviceNamespace) +
      to[4] +
      tag("request_protocol", seen.protocol) +
      tag("connection_security_policy", seen.securityPolicy);
  }

  /** The metric set of a request's labels: found by HTTP_KEY, defined (its labels built) the first time. */
  http(source: Peer, destination: Peer, seen: Observation, flags: u64): HttpMetrics {
    if (this.httpMetrics.size >= MAX_METRIC_SETS) {
      this.httpMetrics.clear();
      this.services.clear();
      this.principals.clear();
      this.codes.clear();
      this.grpcStatuses.clear();
    }
    unchecked((HTTP_KEY[0] = peerKey(source)));
    unchecked((HTTP_KEY[1] = peerKey(destination)));
    unchecked((HTTP_KEY[2] = this.services.id(seen.service)));
    unchecked((HTTP_KEY[3] = this.principals.id(seen.sourcePrincipal)));
    unchecked((HTTP_KEY[4] = this.principals.id(seen.destinationPrincipal)));
    unchecked((HTTP_KEY[5] = (seen.protocol == "grpc" ? 1 : 0) | (seen.securityPolicy == "mutual_tls" ? 2 : seen.securityPolicy == "none" ? 4 : 0)));
    unchecked((HTTP_KEY[6] = this.codes.id(seen.responseCode)));
    unchecked((HTTP_KEY[7] = this.grpcStatuses.id(seen.grpcStatus)));
    unchecked((HTTP_KEY[8] = <u32>flags));
    unchecked((HTTP_KEY[9] = <u32>(flags >> 32)));
    const key = httpKeyString();
    if (this.httpMetrics.has(key)) return this.httpMetrics.get(key);
    const tags = this.tags(source, destination, seen) +
      tag("response_code", seen.responseCode) +
      // Istio's grpc_response_status is empty for plain HTTP.
      "grpc_response_status" + VALUE_SEPARATOR + seen.grpcStatus + FIELD_SEPARATOR +
      tag("response_flags", responseFlags(flags));
    const metrics = new HttpMetrics(tags, this.shapes);
    this.httpMetrics.set(key, metrics);
    return metrics;
  }

  tcp(tags: string): TcpMetrics {
    if (this.tcpMetrics.has(tags)) return this.tcpMetrics.get(tags);
    if (this.tcpMetrics.size >= MAX_METRIC_SETS) this.tcpMetrics.clear();
    const metrics = new TcpMetrics(tags, this.shapes);
    this.tcpMetrics.set(tags, metrics);
    return metrics;
  }

  /** The upstream's peer from istiod-style endpoint metadata, when the response brought none; decoded once per
   * distinct metadata (the bytes are the cache's key, so a changed endpoint is decoded again). */
  upstreamPeer(): Peer {
    const bytes = getProperty(UPSTREAM_HOST_METADATA);
    if (bytes === null) return UNKNOWN_PEER;
    const key = bytesKey(bytes);
    if (this.upstreamPeers.has(key)) return this.upstreamPeers.get(key);
    const decoded = peerFromEndpointMetadata(Uint8Array.wrap(bytes));
    const peer = decoded !== null ? decoded : UNKNOWN_PEER;
    if (this.upstreamPeers.size >= MAX_PEERS) this.upstreamPeers.clear();
    this.upstreamPeers.set(key, peer);
    return peer;
  }

  /** The service from the cluster name (`outbound|port|subset|host`, Istio's), else the Host without its port; both
   * worked out once per name. */
  observeService(seen: Observation, authority: string): void {
    const cluster = getPropertyString(CLUSTER_NAME);
    if (cluster !== null) {
      let service: string;
      if (this.clusterServices.has(cluster)) {
        service = this.clusterServices.get(cluster);
      } else {
        service = clusterService(cluster);
        if (this.clusterServices.size >= MAX_SERVICES) this.clusterServices.clear();
        this.clusterServices.set(cluster, service);
      }
      if (service.length > 0) {
        seen.service = service;
        return;
      }
    }
    if (this.hostServices.has(authority)) {
      seen.service = this.hostServices.get(authority);
      return;
    }
    const service = hostService(authority);
    if (this.hostServices.size >= MAX_SERVICES) this.hostServices.clear();
    this.hostServices.set(authority, service);
    seen.service = service;
  }

  /** Principals and connection_security_policy as Istio reports them: from the peer certificates' URI SANs; the
   * policy only by the destination ("mutual_tls" or "none"), "unknown" by the source. */
  observeSecurity(seen: Observation): void {
    if (this.outbound) {
      const peer = getPropertyString(UPSTREAM_PEER_SAN);
      if (peer !== null && peer.length > 0) {
        seen.destinationPrincipal = peer;
        const local = getPropertyString(UPSTREAM_LOCAL_SAN);
        if (local !== null && local.length > 0) seen.sourcePrincipal = local;
      }
      return;
    }
    if (connectionIsMutualTls()) {
      seen.securityPolicy = "mutual_tls";
      const peer = getPropertyString(DOWNSTREAM_PEER_SAN);
      if (peer !== null && peer.length > 0) seen.sourcePrincipal = peer;
      const local = getPropertyString(DOWNSTREAM_LOCAL_SAN);
      if (local !== null && local.length > 0) seen.destinationPrincipal = local;
    } else {
      seen.securityPolicy = "none";
    }
  }

  createHttpContext(id: u32): HttpContext | null {
    return this.configured ? new IstioStatsHttp(id, this) : null;
  }

  createTcpContext(id: u32): TcpContext | null {
    return this.configured ? new IstioStatsTcp(id, this) : null;
  }
}

class IstioStatsHttp extends HttpContext {
  constructor(id: u32, readonly plugin: IstioStatsRoot) { super(id); }
  start: u64 = 0;
  authority: string = "";
  grpc: bool = false;
  /** The other side, when it told us (metadata exchange headers). */
  peer: Peer | null = null;
  /** The destination sends its metadata back only to a source that sent its own. */
  answerPeer: bool = false;
  responseCode: string = "0";
  grpcStatus: string = "";

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    this.start = monotonicNanos();
    const headers = this.request.headers;
    const authority = headers.get(":authority");
    if (authority !== null) this.authority = authority;
    const contentType = headers.get("content-type");
    this.grpc = contentType !== null && contentType.startsWith("application/grpc");
    if (root.outbound) {
      if (root.exchange) {
        headers.setEncoded(root.localIdHeader);
        headers.setEncoded(root.localMetadataHeader);
      }
    } else {
      const header = headers.get(PEER_HEADER);
      if (header !== null) {
        this.peer = root.peer(headers.get(PEER_ID_HEADER), header);
        this.answerPeer = root.exchange;
        headers.remove(PEER_HEADER);
        headers.remove(PEER_ID_HEADER);
      }
    }
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const root = this.plugin;
    const headers = this.response.headers;
    const status = headers.get(":status");
    if (status !== null) this.responseCode = status;
    if (root.outbound) {
      const header = headers.get(PEER_HEADER);
      if (header !== null) {
        this.peer = root.peer(headers.get(PEER_ID_HEADER), header);
        headers.remove(PEER_HEADER);
        headers.remove(PEER_ID_HEADER);
      }
    } else if (this.answerPeer) {
      headers.setEncoded(root.localIdHeader);
      headers.setEncoded(root.localMetadataHeader);
    }
    return HeadersAction.Continue;
  }

  onResponseTrailers(numTrailers: u32): DataAction {
    if (this.grpc) {
      const grpcStatus = this.response.trailers.get("grpc-status");
      if (grpcStatus !== null) this.grpcStatus = grpcStatus;
    }
    return DataAction.Continue;
  }

  onLog(): void {
    const root = this.plugin;
    if (!root.metrics) return;
    const seen = new Observation();
    root.observeService(seen, this.authority);
    root.observeSecurity(seen);
    seen.protocol = this.grpc ? "grpc" : "http";
    seen.responseCode = this.responseCode;
    seen.grpcStatus = this.grpcStatus;
    const told = this.peer;
    const other: Peer = told !== null ? told : root.outbound ? root.upstreamPeer() : UNKNOWN_PEER;
    const source = root.outbound ? root.local : other;
    const destination = root.outbound ? other : root.local;
    const metrics = root.http(source, destination, seen, getPropertyU64(RESPONSE_FLAGS_PROPERTY));
    const requests = metrics.requests;
    if (requests !== null) requests.increment();
    const duration = metrics.duration;
    if (duration !== null) duration.record((monotonicNanos() - this.start) / 1_000_000);
    const requestBytes = metrics.requestBytes;
    if (requestBytes !== null) requestBytes.record(getPropertyU64(REQUEST_SIZE));
    const responseBytes = metrics.responseBytes;
    if (responseBytes !== null) responseBytes.record(getPropertyU64(RESPONSE_SIZE));
  }
}

/** TCP: bytes each way and the connection, recorded when it closes (Istio also reports long connections
 * periodically; a connection is counted opened and closed at its end here), and Istio's TCP metadata exchange
 * (tcp-exchange.ts) for the peer's labels:
 * - the source (reporter=source) puts its frame in front of the first bytes it sends over mesh mTLS, and reads the
 *   destination's frame off the start of what comes back;
 * - the destination reads the source's frame off the start of a mutual TLS connection, and answers with its own in
 *   front of the first bytes it sends back, only to a source that sent one before those bytes.
 * Without a frame the source names the destination from the endpoint's metadata. See README.md for how this differs
 * from Istio's ALPN-gated filter. */
class IstioStatsTcp extends TcpContext {
  constructor(id: u32, readonly plugin: IstioStatsRoot) { super(id); }
  sent: u64 = 0;
  received: u64 = 0;
  /** The other side, from its frame or (at the source) the endpoint's metadata. */
  peer: Peer | null = null;
  /** Whether the first bytes each way have gone by. */
  downstreamStarted: bool = false;
  upstreamStarted: bool = false;
  /** Reads the peer's frame: what the upstream sends (source), or what the client sends (destination). */
  frame: FrameReader | null = null;
  /** The destination answers with its frame in front of the first bytes it sends back. */
  answer: bool = false;
  recorded: bool = false;

  onDownstreamData(dataSize: usize, endOfStream: bool): NetworkAction {
    const root = this.plugin;
    let passed = <u64>dataSize;
    if (!this.downstreamStarted && dataSize > 0) {
      this.downstreamStarted = true;
      if (root.exchange) {
        if (root.outbound) {
          if (this.upstreamIsMeshMtls()) {
            this.downstreamData.prepend(root.localFrame);
            // The destination answers only before its own first bytes; once they came, there is nothing to read.
            if (!this.upstreamStarted) this.frame = new FrameReader();
          }
        } else if (connectionIsMutualTls()) {
          this.frame = new FrameReader();
        }
      }
    }
    if (!root.outbound) {
      const frame = this.frame;
      if (frame !== null && !frame.done) {
        passed = this.takeFrame(frame, this.downstreamData.bytes(), endOfStream, true);
        // Answer only a source that sent a frame before the destination's own first bytes.
        if (frame.found && !this.upstreamStarted) this.answer = true;
      }
    }
    this.received += passed;
    return NetworkAction.Continue;
  }

  onUpstreamData(dataSize: usize, endOfStream: bool): NetworkAction {
    const root = this.plugin;
    let passed = <u64>dataSize;
    if (root.outbound) {
      const frame = this.frame;
      if (frame !== null && !frame.done) passed = this.takeFrame(frame, this.upstreamData.bytes(), endOfStream, false);
      if (this.peer === null) this.peer = root.upstreamPeer();
    } else if (this.answer && dataSize > 0) {
      this.answer = false;
      this.upstreamData.prepend(root.localFrame);
    }
    if (dataSize > 0) this.upstreamStarted = true;
    this.sent += passed;
    return NetworkAction.Continue;
  }

  /** Feeds one chunk to the frame reader, replacing the buffer with what passes on; the number of bytes passed. */
  takeFrame(frame: FrameReader, chunk: ArrayBuffer, endOfStream: bool, downstream: bool): u64 {
    const out = frame.take(Uint8Array.wrap(chunk), endOfStream);
    if (frame.done && frame.peer !== null) this.peer = frame.peer;
    if (out === null) return <u64>chunk.byteLength;
    if (downstream) this.downstreamData.replace(out);
    else this.upstreamData.replace(out);
    return <u64>out.byteLength;
  }

  /** The source speaks first only over mesh mTLS (ISTIO_MUTUAL: both certificates SPIFFE IDs, this one the
   * workload's own), the one transport socket the control plane offers the istio-peer-exchange ALPN on; Envoy does
   * not tell a Wasm filter which ALPN was negotiated (README.md). */
  upstreamIsMeshMtls(): bool {
    const peer = getPropertyString(UPSTREAM_PEER_SAN);
    if (peer === null || !peer.startsWith("spiffe://")) return false;
    const local = getPropertyString(UPSTREAM_LOCAL_SAN);
    return local !== null && local.startsWith("spiffe://");
  }

  onDownstreamConnectionClose(peer: PeerType): void { this.record(); }
  onUpstreamConnectionClose(peer: PeerType): void { this.record(); }

  record(): void {
    if (this.recorded) return;
    this.recorded = true;
    const root = this.plugin;
    if (!root.metrics) return;
    const seen = new Observation();
    seen.protocol = "tcp";
    root.observeService(seen, "");
    root.observeSecurity(seen);
    const known = this.peer;
    const other: Peer = known !== null ? known : root.outbound ? root.upstreamPeer() : UNKNOWN_PEER;
    const tags = root.tags(root.outbound ? root.local : other, root.outbound ? other : root.local, seen);
    const metrics = root.tcp(tags);
    const opened = metrics.opened;
    if (opened !== null) opened.increment();
    const closed = metrics.closed;
    if (closed !== null) closed.increment();
    const sent = metrics.sent;
    if (sent !== null) sent.increment(<i64>this.sent);
    const received = metrics.received;
    if (received !== null) received.increment(<i64>this.received);
  }
}

function connectionIsMutualTls(): bool {
  const mtls = getProperty(CONNECTION_MTLS);
  return mtls !== null && mtls.byteLength > 0 && load<u8>(changetype<usize>(mtls)) != 0;
}

registerRootContext((id: u32): RootContext => new IstioStatsRoot(id));
