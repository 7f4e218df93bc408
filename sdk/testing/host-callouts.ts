// Host functions for callouts: proxy_http_call, the gRPC calls and streams, and proxy_get_status. Envoy makes every
// callout on the root context of the caller (proxy-wasm-cpp-host's exports.cc: contextOrEffectiveContext()->
// root_context()); checks and results follow Envoy's Context::httpCall / grpcCall / grpcStream in
// source/extensions/common/wasm/context.cc.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type HeaderPair, WasmResult, decodeText, deserializePairs, encodeText } from "./abi.js";
import { GrpcCallout, HttpCall } from "./callouts.js";
import type { Vm } from "./host.js";

export function calloutFunctions(vm: Vm): Record<string, unknown> {
  const m = () => vm.memory;
  const process = vm.process;

  const openGrpc = (
    kind: "call" | "stream", upstream: Uint8Array, service: string, method: string, metadataBytes: Uint8Array,
    message: Uint8Array, timeoutMs: number, tokenPtr: number,
  ): number => {
    const cluster = grpcCluster(upstream);
    if (cluster === null) return WasmResult.BadArgument;
    if (!process.knowsCluster(cluster)) return WasmResult.ParseFailure;
    let metadata: HeaderPair[];
    try {
      metadata = deserializePairs(metadataBytes);
    } catch {
      return WasmResult.BadArgument;
    }
    const root = vm.rootOf(vm.effectiveId);
    if (root === undefined) return WasmResult.BadArgument;
    const token = vm.callouts.nextToken(kind === "call" ? "grpc-call" : "grpc-stream");
    const callout = new GrpcCallout(vm.delivery(), kind, token, vm.index, root.id, vm.effectiveId, cluster, service, method, metadata, message, timeoutMs);
    vm.callouts.add(callout);
    process.grpcOpened(callout);
    m().u32(tokenPtr, token);
    return WasmResult.Ok;
  };

  /** The gRPC callout behind `token`, or the status to answer: BadArgument for a token that is no gRPC one. */
  const grpcCallout = (token: number): GrpcCallout | WasmResult => {
    if ((token & 3) === 0) return WasmResult.BadArgument;
    const callout = vm.callouts.get(token);
    return callout instanceof GrpcCallout ? callout : WasmResult.NotFound;
  };

  return {
    proxy_get_status: (codePtr: number, ptrPtr: number, sizePtr: number): number => {
      m().u32(codePtr, vm.call.status.code);
      m().returnBytes(encodeText(vm.call.status.message), ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
    proxy_http_call: (
      clusterPtr: number, clusterSize: number, headersPtr: number, headersSize: number, bodyPtr: number, bodySize: number,
      trailersPtr: number, trailersSize: number, timeoutMs: number, tokenPtr: number,
    ): number => {
      const cluster = m().text(clusterPtr, clusterSize);
      if ((timeoutMs | 0) < 0 || !process.knowsCluster(cluster)) return WasmResult.BadArgument;
      let headers: HeaderPair[];
      let trailers: HeaderPair[];
      try {
        headers = deserializePairs(m().bytes(headersPtr, headersSize)).map(([n, v]): HeaderPair => [n.toLowerCase(), v]);
        trailers = deserializePairs(m().bytes(trailersPtr, trailersSize));
      } catch {
        return WasmResult.BadArgument;
      }
      // Envoy requires :path, :method and :authority (Host) on a callout.
      const names = new Set(headers.map(([n]) => n));
      if (!names.has(":path") || !names.has(":method") || !(names.has(":authority") || names.has("host"))) return WasmResult.BadArgument;
      const body = m().bytes(bodyPtr, bodySize);
      if (body.length > 0) headers = [...headers.filter(([n]) => n !== "content-length"), ["content-length", String(body.length)]];
      const root = vm.rootOf(vm.effectiveId);
      if (root === undefined) return WasmResult.BadArgument;
      const token = vm.callouts.nextToken("http");
      const timeout = timeoutMs >>> 0;
      // A timeout of 0 is none, as in Envoy.
      const deadline = timeout > 0 ? process.clock.nowMs + timeout : Infinity;
      const call = new HttpCall(vm.delivery(), token, vm.index, root.id, vm.effectiveId, cluster, headers, body, trailers, timeout, deadline);
      vm.callouts.add(call);
      process.httpCallMade(call);
      m().u32(tokenPtr, token);
      return WasmResult.Ok;
    },
    proxy_grpc_call: (
      upstreamPtr: number, upstreamSize: number, servicePtr: number, serviceSize: number, methodPtr: number, methodSize: number,
      metadataPtr: number, metadataSize: number, messagePtr: number, messageSize: number, timeoutMs: number, tokenPtr: number,
    ): number => openGrpc("call", m().bytes(upstreamPtr, upstreamSize), m().text(servicePtr, serviceSize), m().text(methodPtr, methodSize),
      m().bytes(metadataPtr, metadataSize), m().bytes(messagePtr, messageSize), timeoutMs >>> 0, tokenPtr),
    proxy_grpc_stream: (
      upstreamPtr: number, upstreamSize: number, servicePtr: number, serviceSize: number, methodPtr: number, methodSize: number,
      metadataPtr: number, metadataSize: number, tokenPtr: number,
    ): number => openGrpc("stream", m().bytes(upstreamPtr, upstreamSize), m().text(servicePtr, serviceSize), m().text(methodPtr, methodSize),
      m().bytes(metadataPtr, metadataSize), new Uint8Array(0), 0, tokenPtr),
    proxy_grpc_send: (token: number, messagePtr: number, messageSize: number, endStream: number): number => {
      if ((token & 3) !== 2) return WasmResult.BadArgument;
      const stream = vm.callouts.get(token);
      if (!(stream instanceof GrpcCallout)) return WasmResult.NotFound;
      stream.sent.push(m().bytes(messagePtr, messageSize));
      if (endStream !== 0) stream.localClosed = true;
      process.grpcStreamMessage(stream);
      return WasmResult.Ok;
    },
    proxy_grpc_cancel: (token: number): number => {
      const callout = grpcCallout(token);
      if (!(callout instanceof GrpcCallout)) return callout;
      callout.cancelled = true;
      vm.callouts.take(token);
      return WasmResult.Ok;
    },
    proxy_grpc_close: (token: number): number => {
      const callout = grpcCallout(token);
      if (!(callout instanceof GrpcCallout)) return callout;
      callout.localClosed = true;
      // Closing a unary call cancels it; a stream stays open for the remote side's close.
      if (callout.kind === "call") {
        callout.cancelled = true;
        vm.callouts.take(token);
      }
      return WasmResult.Ok;
    },
  };
}

/** The cluster of a gRPC callout's upstream argument. Envoy parses it as an envoy.config.core.v3.GrpcService and
 * uses envoy_grpc (field 1) .cluster_name (field 1); only bytes that do not parse are taken as a plain cluster name.
 * Null when they parse but name no cluster (Envoy cannot make a client: BadArgument). */
export function grpcCluster(upstream: Uint8Array): string | null {
  try {
    const cluster = lengthDelimitedField(lengthDelimitedField(upstream, 1) ?? new Uint8Array(0), 1);
    return cluster === undefined ? null : decodeText(cluster);
  } catch {
    return decodeText(upstream);
  }
}

/** The last occurrence of field `field` if it is length-delimited (the one a parser keeps for a singular field);
 * throws where a protobuf parser would fail, skipping every other field. */
function lengthDelimitedField(bytes: Uint8Array, field: number): Uint8Array | undefined {
  const reader = new BinaryReader(bytes);
  let found: Uint8Array | undefined;
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === field && wireType === WireType.LengthDelimited) found = reader.bytes();
    else reader.skip(wireType, fieldNo);
  }
  return found;
}
