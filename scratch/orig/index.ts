// istio-stats: Istio's standard metrics (istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes, and the TCP ones) with Istio's labels, from a proxy-wasm filter, plus
// the peer metadata exchange between sidecars that gives the labels of the other side. Istio does this job with its
// own stats and metadata_exchange filters (istio/proxy extensions/stats, extensions/metadata_exchange); this filter
// follows their labels and exchange format. See README.md for how the names reach /stats/prometheus.
import {
  ConfigReader, Counter, DataAction, HeadersAction, Histogram, HttpContext, LogLevel, NetworkAction, PeerType, PropertyPath, RootContext,
  TcpContext, getProperty, getPropertyString, getPropertyU64, log, monotonicNanos, registerRootContext,
} from "@skiff/proxy-wasm";
import { base64Encode, decodePeerHeader, encodeStruct, Peer, peerFromEndpointMetadata, UNKNOWN, UNKNOWN_PEER } from "./peer";
export * from "@skiff/proxy-wasm/dispatcher";

const PEER_ID_HEADER = "x-envoy-peer-metadata-id";
const PEER_HEADER = "x-envoy-peer-metadata";
/** Istio's tag format: `name=.=value;.;` per label, then the metric name; the bootstrap's stats_tags regexes
 * (`(name=\.=(.*?);\.;)`) turn each into a tag, leaving `istio_requests_total` as the name. */
const VALUE_SEPARATOR = "=.=";
const FIELD_SEPARATOR = ";.;";
/** Peers and metric sets are cached; past these sizes the cache starts over (a bound, not an LRU). */
const MAX_PEERS = 1000;
const MAX_METRIC_SETS = 10000;

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

/** The metrics of one label set, defined on first use. */
class HttpMetrics {
  requests: Counter;
  duration: Histogram;
  requestBytes: Histogram;
  responseBytes: Histogram;
  constructor(tags: string) {
    this.requests = new Counter(tags + "istio_requests_total");
    this.duration = new Histogram(tags + "istio_request_duration_milliseconds");
    this.requestBytes = new Histogram(tags + "istio_request_bytes");
    this.responseBytes = new Histogram(tags + "istio_response_bytes");
  }
}

class TcpMetrics {
  opened: Counter;
  closed: Counter;
  sent: Counter;
  received: Counter;
  constructor(tags: string) {
    this.opened = new Counter(tags + "istio_tcp_connections_opened_total");
    this.closed = new Counter(tags + "istio_tcp_connections_closed_total");
    this.sent = new Counter(tags + "istio_tcp_sent_bytes_total");
    this.received = new Counter(tags + "istio_tcp_received_bytes_total");
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
  /** `reporter`: fixed by the configuration. */
  reporterTag: string = "";
  local: Peer = UNKNOWN_PEER;
  localId: string = "";
  localHeader: string = "";
  configured: bool = false;
  peers: Map<string, Peer> = new Map();
  httpMetrics: Map<string, HttpMetrics> = new Map();
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
    config.rejectUnknownFields();
    if (!config.ok) {
      log(LogLevel.Error, "istio-stats: configuration rejected: " + config.error);
      return false;
    }
    this.outbound = reporter == "source";
    this.reporterTag = tag("reporter", reporter);
    this.exchange = exchange;
    this.local = new Peer(workload, namespace, app, version, cluster);
    this.localId = workload + "." + namespace;
    this.localHeader = base64Encode(
      encodeStruct(
        ["CLUSTER_ID", "NAME", "NAMESPACE", "WORKLOAD_NAME"], [cluster, workload, namespace, workload],
        "LABELS", ["app", "service.istio.io/canonical-name", "service.istio.io/canonical-revision", "version"], [app, app, version, version],
      ),
    );
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

  http(tags: string): HttpMetrics {
    if (this.httpMetrics.has(tags)) return this.httpMetrics.get(tags);
    if (this.httpMetrics.size >= MAX_METRIC_SETS) this.httpMetrics.clear();
    const metrics = new HttpMetrics(tags);
    this.httpMetrics.set(tags, metrics);
    return metrics;
  }

  tcp(tags: string): TcpMetrics {
    if (this.tcpMetrics.has(tags)) return this.tcpMetrics.get(tags);
    if (this.tcpMetrics.size >= MAX_METRIC_SETS) this.tcpMetrics.clear();
    const metrics = new TcpMetrics(tags);
    this.tcpMetrics.set(tags, metrics);
    return metrics;
  }

  /** The upstream's peer from istiod-style endpoint metadata, when the response brought none. */
  upstreamPeer(): Peer {
    const bytes = getProperty(UPSTREAM_HOST_METADATA);
    if (bytes === null) return UNKNOWN_PEER;
    const peer = peerFromEndpointMetadata(Uint8Array.wrap(bytes));
    return peer !== null ? peer : UNKNOWN_PEER;
  }

  /** The service from the cluster name (`outbound|port|subset|host`, Istio's), else the Host without its port. */
  observeService(seen: Observation, authority: string): void {
    const cluster = getPropertyString(CLUSTER_NAME);
    if (cluster !== null && cluster.startsWith("outbound|")) {
      const parts = cluster.split("|");
      if (parts.length == 4 && parts[3].length > 0) {
        seen.service = parts[3];
        return;
      }
    }
    const colon = authority.lastIndexOf(":");
    seen.service = authority.length == 0 ? UNKNOWN : colon > 0 && authority.indexOf("]") < colon ? authority.slice(0, colon) : authority;
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
    const mtls = getProperty(CONNECTION_MTLS);
    if (mtls !== null && mtls.byteLength > 0 && load<u8>(changetype<usize>(mtls)) != 0) {
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
        headers.set(PEER_ID_HEADER, root.localId);
        headers.set(PEER_HEADER, root.localHeader);
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
    if (this.grpc) {
      // A trailers-only gRPC answer carries grpc-status in the headers.
      const grpcStatus = headers.get("grpc-status");
      if (grpcStatus !== null) this.grpcStatus = grpcStatus;
    }
    if (root.outbound) {
      const header = headers.get(PEER_HEADER);
      if (header !== null) {
        this.peer = root.peer(headers.get(PEER_ID_HEADER), header);
        headers.remove(PEER_HEADER);
        headers.remove(PEER_ID_HEADER);
      }
    } else if (this.answerPeer) {
      headers.set(PEER_ID_HEADER, root.localId);
      headers.set(PEER_HEADER, root.localHeader);
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
    const seen = new Observation();
    root.observeService(seen, this.authority);
    root.observeSecurity(seen);
    seen.protocol = this.grpc ? "grpc" : "http";
    const told = this.peer;
    const other: Peer = told !== null ? told : root.outbound ? root.upstreamPeer() : UNKNOWN_PEER;
    const source = root.outbound ? root.local : other;
    const destination = root.outbound ? other : root.local;
    const tags = root.tags(source, destination, seen) +
      tag("response_code", this.responseCode) +
      // Istio's grpc_response_status is empty for plain HTTP.
      "grpc_response_status" + VALUE_SEPARATOR + this.grpcStatus + FIELD_SEPARATOR +
      tag("response_flags", responseFlags(getPropertyU64(RESPONSE_FLAGS_PROPERTY)));
    const metrics = root.http(tags);
    metrics.requests.increment();
    metrics.duration.record((monotonicNanos() - this.start) / 1_000_000);
    metrics.requestBytes.record(getPropertyU64(REQUEST_SIZE));
    metrics.responseBytes.record(getPropertyU64(RESPONSE_SIZE));
  }
}

/** TCP: bytes each way and the connection, recorded when it closes (Istio also reports long connections
 * periodically; a connection is counted opened and closed at its end here). The peer comes from the upstream
 * endpoint's metadata; Istio's ALPN-based TCP metadata exchange needs mTLS between the sidecars (see README.md). */
class IstioStatsTcp extends TcpContext {
  constructor(id: u32, readonly plugin: IstioStatsRoot) { super(id); }
  sent: u64 = 0;
  received: u64 = 0;
  upstream: Peer | null = null;
  recorded: bool = false;

  onDownstreamData(dataSize: usize, endOfStream: bool): NetworkAction {
    this.received += <u64>dataSize;
    return NetworkAction.Continue;
  }

  onUpstreamData(dataSize: usize, endOfStream: bool): NetworkAction {
    this.sent += <u64>dataSize;
    const root = this.plugin;
    if (this.upstream === null && root.outbound) this.upstream = root.upstreamPeer();
    return NetworkAction.Continue;
  }

  onDownstreamConnectionClose(peer: PeerType): void { this.record(); }
  onUpstreamConnectionClose(peer: PeerType): void { this.record(); }

  record(): void {
    if (this.recorded) return;
    this.recorded = true;
    const root = this.plugin;
    const seen = new Observation();
    seen.protocol = "tcp";
    root.observeService(seen, "");
    const known = this.upstream;
    const other: Peer = known !== null ? known : root.outbound ? root.upstreamPeer() : UNKNOWN_PEER;
    const tags = root.tags(root.outbound ? root.local : other, root.outbound ? other : root.local, seen);
    const metrics = root.tcp(tags);
    metrics.opened.increment();
    metrics.closed.increment();
    metrics.sent.increment(<i64>this.sent);
    metrics.received.increment(<i64>this.received);
  }
}

registerRootContext((id: u32): RootContext => new IstioStatsRoot(id));
