// The guest side of the ABI: every proxy_on_* export, routed to the context object it is for. A filter's entry
// file re-exports this module (`export * from "<sdk>/dispatcher"`) and calls registerRootContext once.
import * as host from "./hostcalls";
import { Body, Context, HeaderMap, HttpCallResponse, HttpContext, RootContext, TcpContext } from "./contexts";
import { UNARY_CALLOUT, calloutOwners, rootFactories, rootIds } from "./registry";
import { BufferType, DataAction, GrpcStatus, HeadersAction, MapType, NetworkAction, PeerType } from "./types";
import "./runtime";

const GRPC_INITIAL_METADATA = new HeaderMap(MapType.GrpcInitialMetadata);
const GRPC_TRAILING_METADATA = new HeaderMap(MapType.GrpcTrailingMetadata);
const GRPC_MESSAGE = new Body(BufferType.GrpcReceiveBuffer);

// Every live context by id: one map (one instantiation of Map's code in the module) for roots, HTTP and TCP. A stream
// the host created but has not called yet maps to its root (an entry whose id is not its key): its kind comes with
// its first callback.
const contexts = new Map<u32, Context>();

function newRoot(contextId: u32): RootContext {
  if (rootFactories.length == 1) return rootFactories[0](contextId);
  // Several plugins in one module: Envoy's root_id picks one; "" is the fallback.
  const rootId = host.getPropertyString(new host.PropertyPath(["plugin_root_id"]));
  let at = rootId !== null ? rootIds.indexOf(rootId) : -1;
  if (at < 0) at = rootIds.indexOf("");
  if (at < 0) abort("no root context registered for root_id '" + (rootId !== null ? rootId : "") + "'");
  return rootFactories[at](contextId);
}

// Under `--runtime minimal` (the preset's `small` target) nothing collects garbage unless asked. The SDK asks at the
// end of an export, where no managed object lives only on the stack (a context on the stack is also in `contexts`):
// after every COLLECT_EVERY callbacks that end a context, tick, or carry data, so that a long-lived stream with many
// body or TCP data callbacks is collected too. The check folds away at compile time under the incremental runtime.
const COLLECT_EVERY: u32 = 64;
let sinceCollect: u32 = 0;

function collectNowAndThen(): void {
  if (ASC_RUNTIME != 1) return;
  if (++sinceCollect < COLLECT_EVERY) return;
  sinceCollect = 0;
  __collect();
}

// The stream the host created last and has not called yet, with its root. Envoy creates a stream's context in the
// VM right before its first callback (ContextBase::onCreate, from Envoy's decodeHeaders for HTTP and onNewConnection
// for TCP), so this one slot spares the map a write; a second creation first parks the previous one in `contexts`.
let unmadeId: u32 = 0;
let unmadeRoot: RootContext | null = null;

// The HTTP stream the host called last, or made last: most callbacks in a row, from its creation to its deletion,
// are for the same stream, and this spares them the map lookups.
let lastHttpId: u32 = 0;
let lastHttp: HttpContext | null = null;

/** The root of a stream the host created but has not called yet, taken out of waiting; null for any other id. */
function takeUnmade(contextId: u32): RootContext | null {
  if (contextId == unmadeId && unmadeRoot !== null) {
    const root = unmadeRoot;
    unmadeRoot = null;
    unmadeId = 0;
    return root;
  }
  if (!contexts.has(contextId)) return null;
  const parked = contexts.get(contextId);
  if (parked.id == contextId) return null;
  contexts.delete(contextId);
  return changetype<RootContext>(parked);
}

/** The HTTP context of `contextId`, made on its first callback; null when the plugin has none for it (its root is
 * not an HTTP filter). */
function http(contextId: u32): HttpContext | null {
  if (contextId == lastHttpId && lastHttp !== null) return lastHttp;
  const root = takeUnmade(contextId);
  let stream: HttpContext | null = null;
  if (root !== null) {
    stream = root.createHttpContext(contextId);
    if (stream === null) return null;
    contexts.set(contextId, stream);
  } else {
    if (!contexts.has(contextId)) return null;
    const context = contexts.get(contextId);
    if (!(context instanceof HttpContext)) return null;
    stream = changetype<HttpContext>(context);
  }
  lastHttpId = contextId;
  lastHttp = stream;
  return stream;
}

/** The TCP context of `contextId`, made on proxy_on_new_connection; null when the plugin has none for it. */
function tcp(contextId: u32): TcpContext | null {
  const root = takeUnmade(contextId);
  if (root !== null) {
    const stream = root.createTcpContext(contextId);
    if (stream !== null) contexts.set(contextId, stream);
    return stream;
  }
  if (!contexts.has(contextId)) return null;
  const context = contexts.get(contextId);
  return context instanceof TcpContext ? changetype<TcpContext>(context) : null;
}

/** Any made context: a root, an HTTP or a TCP stream. A stream not made yet whose first callback is one of the
 * lifecycle ones is an HTTP stream (Envoy creates it for the access log of a request an earlier filter answered). */
function anyContext(contextId: u32): Context | null {
  if (contextId == lastHttpId && lastHttp !== null) return lastHttp;
  if (contextId != unmadeId && contexts.has(contextId)) {
    const context = contexts.get(contextId);
    if (context.id == contextId) return context;
  }
  return http(contextId);
}

function root(contextId: u32): RootContext {
  return changetype<RootContext>(contexts.get(contextId));
}

// ---------------------------------------------------------------------------------------------- integration

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

// ---------------------------------------------------------------------------------------------- lifecycle

export function proxy_on_context_create(contextId: u32, parentId: u32): void {
  if (parentId == 0) {
    contexts.set(contextId, newRoot(contextId));
    return;
  }
  if (unmadeRoot !== null) contexts.set(unmadeId, unmadeRoot!);
  unmadeId = contextId;
  unmadeRoot = root(parentId);
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
  if (contextId == lastHttpId) {
    lastHttpId = 0;
    lastHttp = null;
  }
  // A stream the host never called was never made: there is nothing to tell.
  if (takeUnmade(contextId) !== null || !contexts.has(contextId)) return;
  contexts.get(contextId).onDelete();
  contexts.delete(contextId);
  collectNowAndThen();
}

// ---------------------------------------------------------------------------------------------- configuration, timers

export function proxy_on_vm_start(rootId: u32, vmConfigurationSize: usize): bool {
  return root(rootId).onVmStart(vmConfigurationSize);
}

export function proxy_on_configure(rootId: u32, configurationSize: usize): bool {
  return root(rootId).onConfigure(configurationSize);
}

export function proxy_on_tick(rootId: u32): void {
  root(rootId).onTick();
  collectNowAndThen();
}

export function proxy_on_queue_ready(rootId: u32, queueId: u32): void {
  root(rootId).onQueueReady(queueId);
}

export function proxy_on_foreign_function(rootId: u32, functionId: u32, argumentsSize: usize): void {
  root(rootId).onForeignFunction(functionId, argumentsSize);
}

// ---------------------------------------------------------------------------------------------- HTTP

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  const stream = http(contextId);
  return stream === null ? HeadersAction.Continue : stream.onRequestHeaders(numHeaders, endOfStream);
}

export function proxy_on_request_body(contextId: u32, bodySize: usize, endOfStream: bool): u32 {
  const stream = http(contextId);
  const action = stream === null ? DataAction.Continue : stream.onRequestBody(bodySize, endOfStream);
  collectNowAndThen();
  return action;
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  const stream = http(contextId);
  return stream === null ? DataAction.Continue : stream.onRequestTrailers(numTrailers);
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  const stream = http(contextId);
  return stream === null ? HeadersAction.Continue : stream.onResponseHeaders(numHeaders, endOfStream);
}

export function proxy_on_response_body(contextId: u32, bodySize: usize, endOfStream: bool): u32 {
  const stream = http(contextId);
  const action = stream === null ? DataAction.Continue : stream.onResponseBody(bodySize, endOfStream);
  collectNowAndThen();
  return action;
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  const stream = http(contextId);
  return stream === null ? DataAction.Continue : stream.onResponseTrailers(numTrailers);
}

// ---------------------------------------------------------------------------------------------- TCP

export function proxy_on_new_connection(contextId: u32): u32 {
  const stream = tcp(contextId);
  return stream === null ? NetworkAction.Continue : stream.onNewConnection();
}

export function proxy_on_downstream_data(contextId: u32, dataSize: usize, endOfStream: bool): u32 {
  const stream = tcp(contextId);
  const action = stream === null ? NetworkAction.Continue : stream.onDownstreamData(dataSize, endOfStream);
  collectNowAndThen();
  return action;
}

export function proxy_on_upstream_data(contextId: u32, dataSize: usize, endOfStream: bool): u32 {
  const stream = tcp(contextId);
  const action = stream === null ? NetworkAction.Continue : stream.onUpstreamData(dataSize, endOfStream);
  collectNowAndThen();
  return action;
}

export function proxy_on_downstream_connection_close(contextId: u32, peer: u32): void {
  const stream = tcp(contextId);
  if (stream !== null) stream.onDownstreamConnectionClose(<PeerType>peer);
}

export function proxy_on_upstream_connection_close(contextId: u32, peer: u32): void {
  const stream = tcp(contextId);
  if (stream !== null) stream.onUpstreamConnectionClose(<PeerType>peer);
}

// ---------------------------------------------------------------------------------------------- callouts

/** The context that made callout `token`, made effective so that its host calls act on its stream. Envoy answers
 * every callout on the root context (`contextId`), whichever context made it. `final` forgets the callout; a
 * unary gRPC call is forgotten by whichever callback answers it. */
function calloutOwner(token: u32, final: bool): Context | null {
  if (!calloutOwners.has(token)) return null;
  const entry = calloutOwners.get(token);
  if (final || (entry & UNARY_CALLOUT) != 0) calloutOwners.delete(token);
  const owner = entry & ~UNARY_CALLOUT;
  const context = anyContext(owner);
  if (context !== null) host.setEffectiveContext(owner);
  return context;
}

export function proxy_on_http_call_response(contextId: u32, calloutId: u32, numHeaders: u32, bodySize: usize, numTrailers: u32): void {
  const owner = calloutOwner(calloutId, true);
  if (owner !== null) owner.onHttpCallResponse(calloutId, new HttpCallResponse(numHeaders, bodySize, numTrailers));
}

export function proxy_on_grpc_receive_initial_metadata(contextId: u32, token: u32, numHeaders: u32): void {
  const owner = calloutOwner(token, false);
  if (owner !== null) owner.onGrpcReceiveInitialMetadata(token, GRPC_INITIAL_METADATA);
}

export function proxy_on_grpc_receive(contextId: u32, token: u32, messageSize: usize): void {
  const owner = calloutOwner(token, false);
  if (owner !== null) owner.onGrpcReceive(token, GRPC_MESSAGE);
  collectNowAndThen();
}

export function proxy_on_grpc_receive_trailing_metadata(contextId: u32, token: u32, numTrailers: u32): void {
  const owner = calloutOwner(token, false);
  if (owner !== null) owner.onGrpcReceiveTrailingMetadata(token, GRPC_TRAILING_METADATA);
}

export function proxy_on_grpc_close(contextId: u32, token: u32, statusCode: u32): void {
  const owner = calloutOwner(token, true);
  if (owner === null) return;
  const status = host.getStatus();
  owner.onGrpcClose(token, <GrpcStatus>statusCode, status.message);
}
