// The guest side of the ABI: every proxy_on_* export, routed to the context object it is for. A filter's entry
// file re-exports this module (`export * from "<sdk>/dispatcher"`) and calls registerRootContext once.
import * as host from "./hostcalls";
import { Body, Context, HeaderMap, HttpCallResponse, HttpContext, RootContext, TcpContext, calloutOwners, factories } from "./contexts";
import { BufferType, GrpcStatus, MapType, PeerType } from "./types";
import "./runtime";

const GRPC_INITIAL_METADATA = new HeaderMap(MapType.GrpcInitialMetadata);
const GRPC_TRAILING_METADATA = new HeaderMap(MapType.GrpcTrailingMetadata);
const GRPC_MESSAGE = new Body(BufferType.GrpcReceiveBuffer);
const PLUGIN_ROOT_ID = new host.PropertyPath(["plugin_root_id"]);

const roots = new Map<u32, RootContext>();
const httpStreams = new Map<u32, HttpContext>();
const tcpStreams = new Map<u32, TcpContext>();

function newRoot(contextId: u32): RootContext {
  if (factories.size == 1) {
    const only = factories.values()[0];
    return only(contextId);
  }
  const rootId = host.getPropertyString(PLUGIN_ROOT_ID);
  const key = rootId !== null && factories.has(rootId) ? rootId : "";
  if (!factories.has(key)) abort("no root context registered for root_id '" + (rootId !== null ? rootId : "") + "'");
  const factory = factories.get(key);
  return factory(contextId);
}

// The HTTP stream the host called last: most callbacks in a row are for the same stream.
let lastHttpId: u32 = 0;
let lastHttp: HttpContext | null = null;

function http(contextId: u32): HttpContext {
  if (contextId == lastHttpId && lastHttp !== null) return lastHttp!;
  const stream = httpStreams.get(contextId);
  lastHttpId = contextId;
  lastHttp = stream;
  return stream;
}

function anyContext(contextId: u32): Context | null {
  if (httpStreams.has(contextId)) return httpStreams.get(contextId);
  if (tcpStreams.has(contextId)) return tcpStreams.get(contextId);
  if (roots.has(contextId)) return roots.get(contextId);
  return null;
}

// ---------------------------------------------------------------------------------------------- integration

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

// ---------------------------------------------------------------------------------------------- lifecycle

export function proxy_on_context_create(contextId: u32, parentId: u32): void {
  if (parentId == 0) {
    roots.set(contextId, newRoot(contextId));
    return;
  }
  const root = roots.get(parentId);
  const httpStream = root.createHttpContext(contextId);
  if (httpStream !== null) {
    httpStreams.set(contextId, httpStream);
    return;
  }
  const tcpStream = root.createTcpContext(contextId);
  if (tcpStream !== null) tcpStreams.set(contextId, tcpStream);
}

export function proxy_on_done(contextId: u32): bool {
  const context = anyContext(contextId);
  return context === null ? true : context.onDone();
}

export function proxy_on_log(contextId: u32): void {
  const context = anyContext(contextId);
  if (context !== null) context.onLog();
}

export function proxy_on_delete(contextId: u32): void {
  const context = anyContext(contextId);
  if (context === null) return;
  context.onDelete();
  if (contextId == lastHttpId) {
    lastHttpId = 0;
    lastHttp = null;
  }
  if (!httpStreams.delete(contextId) && !tcpStreams.delete(contextId)) roots.delete(contextId);
}

// ---------------------------------------------------------------------------------------------- configuration, timers

export function proxy_on_vm_start(rootId: u32, vmConfigurationSize: usize): bool {
  return roots.get(rootId).onVmStart(vmConfigurationSize);
}

export function proxy_on_configure(rootId: u32, configurationSize: usize): bool {
  return roots.get(rootId).onConfigure(configurationSize);
}

export function proxy_on_tick(rootId: u32): void {
  roots.get(rootId).onTick();
}

export function proxy_on_queue_ready(rootId: u32, queueId: u32): void {
  roots.get(rootId).onQueueReady(queueId);
}

export function proxy_on_foreign_function(rootId: u32, functionId: u32, argumentsSize: usize): void {
  roots.get(rootId).onForeignFunction(functionId, argumentsSize);
}

// ---------------------------------------------------------------------------------------------- HTTP

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  return http(contextId).onRequestHeaders(numHeaders, endOfStream);
}

export function proxy_on_request_body(contextId: u32, bodySize: usize, endOfStream: bool): u32 {
  return http(contextId).onRequestBody(bodySize, endOfStream);
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  return http(contextId).onRequestTrailers(numTrailers);
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  return http(contextId).onResponseHeaders(numHeaders, endOfStream);
}

export function proxy_on_response_body(contextId: u32, bodySize: usize, endOfStream: bool): u32 {
  return http(contextId).onResponseBody(bodySize, endOfStream);
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  return http(contextId).onResponseTrailers(numTrailers);
}

// ---------------------------------------------------------------------------------------------- TCP

export function proxy_on_new_connection(contextId: u32): u32 {
  return tcpStreams.get(contextId).onNewConnection();
}

export function proxy_on_downstream_data(contextId: u32, dataSize: usize, endOfStream: bool): u32 {
  return tcpStreams.get(contextId).onDownstreamData(dataSize, endOfStream);
}

export function proxy_on_upstream_data(contextId: u32, dataSize: usize, endOfStream: bool): u32 {
  return tcpStreams.get(contextId).onUpstreamData(dataSize, endOfStream);
}

export function proxy_on_downstream_connection_close(contextId: u32, peer: u32): void {
  tcpStreams.get(contextId).onDownstreamConnectionClose(<PeerType>peer);
}

export function proxy_on_upstream_connection_close(contextId: u32, peer: u32): void {
  tcpStreams.get(contextId).onUpstreamConnectionClose(<PeerType>peer);
}

// ---------------------------------------------------------------------------------------------- callouts

/** The context that made callout `token`, made effective again so it can resume its stream. */
function calloutOwner(token: u32, keep: bool): Context | null {
  if (!calloutOwners.has(token)) return null;
  const owner = calloutOwners.get(token);
  if (!keep) calloutOwners.delete(token);
  const context = anyContext(owner);
  if (context !== null) host.setEffectiveContext(owner);
  return context;
}

export function proxy_on_http_call_response(contextId: u32, calloutId: u32, numHeaders: u32, bodySize: usize, numTrailers: u32): void {
  const owner = calloutOwner(calloutId, false);
  if (owner !== null) owner.onHttpCallResponse(calloutId, new HttpCallResponse(numHeaders, bodySize, numTrailers));
}

export function proxy_on_grpc_receive_initial_metadata(contextId: u32, token: u32, numHeaders: u32): void {
  const owner = calloutOwner(token, true);
  if (owner !== null) owner.onGrpcReceiveInitialMetadata(token, GRPC_INITIAL_METADATA);
}

export function proxy_on_grpc_receive(contextId: u32, token: u32, messageSize: usize): void {
  const owner = calloutOwner(token, true);
  if (owner !== null) owner.onGrpcReceive(token, GRPC_MESSAGE);
}

export function proxy_on_grpc_receive_trailing_metadata(contextId: u32, token: u32, numTrailers: u32): void {
  const owner = calloutOwner(token, true);
  if (owner !== null) owner.onGrpcReceiveTrailingMetadata(token, GRPC_TRAILING_METADATA);
}

export function proxy_on_grpc_close(contextId: u32, token: u32, statusCode: u32): void {
  const owner = calloutOwner(token, false);
  if (owner === null) return;
  const status = host.getStatus();
  owner.onGrpcClose(token, <GrpcStatus>statusCode, status.message);
}
