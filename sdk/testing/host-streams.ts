// Host functions that act on the current stream or callback: header maps, buffers (bodies, TCP data, configuration,
// callout answers), properties, stream control, local responses, the effective context, foreign functions. Which map
// or buffer exists when follows Envoy's Context::getMap / getBuffer in source/extensions/common/wasm/context.cc.
import { BufferType, type HeaderPair, MapType, WasmResult, concatBytes, deserializePairs, encodeText, serializePairs } from "./abi.js";
import type { Headers } from "./headers.js";
import type { BufferSlot, Vm } from "./host.js";

export function streamFunctions(vm: Vm): Record<string, unknown> {
  const m = () => vm.memory;

  return {
    // ----- context
    proxy_set_effective_context: (contextId: number): number => {
      if (!vm.isAlive(contextId)) return WasmResult.BadArgument;
      vm.effectiveId = contextId;
      return WasmResult.Ok;
    },
    proxy_done: (): number => (vm.isRoot(vm.effectiveId) ? WasmResult.Ok : WasmResult.NotFound),

    // ----- buffers
    proxy_get_buffer_status: (type: number, lengthPtr: number, flagsPtr: number): number => {
      const slot = buffer(vm, type);
      if (slot === null) return WasmResult.NotFound;
      m().u32(lengthPtr, slot.bytes().length);
      m().u32(flagsPtr, 0);
      return WasmResult.Ok;
    },
    proxy_get_buffer_bytes: (type: number, start: number, length: number, ptrPtr: number, sizePtr: number): number => {
      const slot = buffer(vm, type);
      if (slot === null) return WasmResult.NotFound;
      const bytes = slot.bytes();
      const from = start >>> 0;
      let count = length >>> 0;
      if (from + count > bytes.length) count = Math.max(0, bytes.length - from);
      if (count > 0) m().returnBytes(bytes.subarray(from, from + count), ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
    proxy_set_buffer_bytes: (type: number, start: number, length: number, dataPtr: number, dataSize: number): number => {
      const slot = buffer(vm, type);
      if (slot === null) return WasmResult.NotFound;
      if (slot.set === undefined) return WasmResult.BadArgument;
      const data = m().bytes(dataPtr, dataSize);
      const current = slot.bytes();
      const from = start >>> 0;
      const count = length >>> 0;
      // Envoy's Buffer::copyFrom: prepend, replace all, or append; anything else is refused.
      if (from === 0 && count === 0) slot.set(concatBytes(data, current));
      else if (from === 0 && count >= current.length) slot.set(data);
      else if (from >= current.length) slot.set(concatBytes(current, data));
      else return WasmResult.BadArgument;
      return WasmResult.Ok;
    },

    // ----- header maps
    proxy_get_header_map_pairs: (type: number, ptrPtr: number, sizePtr: number): number => {
      const map = headerMap(vm, type, false);
      const pairs = map === null || map === undefined ? [] : map.entries();
      if (pairs.length === 0) {
        m().u32(ptrPtr, 0);
        m().u32(sizePtr, 0);
        return WasmResult.Ok;
      }
      m().returnBytes(serializePairs(pairs), ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
    proxy_set_header_map_pairs: (type: number, ptr: number, size: number): number => {
      const map = headerMap(vm, type, true);
      if (map === null || map === undefined) return WasmResult.BadArgument;
      let pairs: HeaderPair[];
      try {
        pairs = deserializePairs(m().bytes(ptr, size));
      } catch {
        return WasmResult.BadArgument;
      }
      map.replaceAll(pairs);
      headersModified(vm, type);
      return WasmResult.Ok;
    },
    proxy_get_header_map_size: (type: number, sizePtr: number): number => {
      const map = headerMap(vm, type, true);
      if (map === null || map === undefined) return WasmResult.BadArgument;
      m().u32(sizePtr, map.byteSize);
      return WasmResult.Ok;
    },
    proxy_get_header_map_value: (type: number, keyPtr: number, keySize: number, ptrPtr: number, sizePtr: number): number => {
      const map = headerMap(vm, type, false);
      if (map === undefined) return WasmResult.BadArgument;
      // In the access log Envoy reports a map it no longer has as an empty one.
      if (map === null) return vm.current()?.inAccessLog ? WasmResult.NotFound : WasmResult.BadArgument;
      const value = map.get(m().text(keyPtr, keySize));
      if (value === null) return WasmResult.NotFound;
      m().returnBytes(encodeText(value), ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
    proxy_add_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
      const map = headerMap(vm, type, true);
      if (map === null || map === undefined) return WasmResult.BadArgument;
      map.add(m().text(keyPtr, keySize), m().text(valuePtr, valueSize));
      headersModified(vm, type);
      return WasmResult.Ok;
    },
    proxy_replace_header_map_value: (type: number, keyPtr: number, keySize: number, valuePtr: number, valueSize: number): number => {
      const map = headerMap(vm, type, true);
      if (map === null || map === undefined) return WasmResult.BadArgument;
      map.set(m().text(keyPtr, keySize), m().text(valuePtr, valueSize));
      headersModified(vm, type);
      return WasmResult.Ok;
    },
    proxy_remove_header_map_value: (type: number, keyPtr: number, keySize: number): number => {
      const map = headerMap(vm, type, true);
      if (map === null || map === undefined) return WasmResult.BadArgument;
      map.remove(m().text(keyPtr, keySize));
      headersModified(vm, type);
      return WasmResult.Ok;
    },

    // ----- properties
    proxy_get_property: (pathPtr: number, pathSize: number, ptrPtr: number, sizePtr: number): number => {
      const value = property(vm, m().text(pathPtr, pathSize));
      if (value === undefined) return WasmResult.NotFound;
      m().returnBytes(value, ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
    proxy_set_property: (pathPtr: number, pathSize: number, valuePtr: number, valueSize: number): number => {
      const stream = vm.current();
      if (stream === undefined) return WasmResult.NotFound;
      stream.properties.set(m().text(pathPtr, pathSize), m().bytes(valuePtr, valueSize));
      return WasmResult.Ok;
    },

    // ----- stream control
    proxy_continue_stream: (type: number): number => vm.current()?.continueStream(type) ?? WasmResult.NotFound,
    proxy_close_stream: (type: number): number => vm.current()?.closeStream(type) ?? WasmResult.NotFound,
    proxy_send_local_response: (
      status: number, detailsPtr: number, detailsSize: number, bodyPtr: number, bodySize: number,
      headersPtr: number, headersSize: number, grpcStatus: number,
    ): number => {
      const stream = vm.current();
      if (stream === undefined) return WasmResult.BadArgument;
      let headers: HeaderPair[];
      try {
        headers = deserializePairs(m().bytes(headersPtr, headersSize));
      } catch {
        return WasmResult.BadArgument;
      }
      return stream.sendLocalResponse(status >>> 0, m().text(detailsPtr, detailsSize), m().bytes(bodyPtr, bodySize), headers, grpcStatus | 0);
    },

    // ----- foreign functions
    proxy_call_foreign_function: (namePtr: number, nameSize: number, argsPtr: number, argsSize: number, ptrPtr: number, sizePtr: number): number => {
      const name = m().text(namePtr, nameSize);
      const args = m().bytes(argsPtr, argsSize);
      if (name === "clear_route_cache") {
        const stream = vm.current();
        if (stream === undefined) return WasmResult.NotFound;
        stream.clearRouteCache();
        return WasmResult.Ok;
      }
      const handler = vm.process.foreignFunction(name);
      if (handler === undefined) return WasmResult.NotFound;
      const result = handler(args, { worker: vm.index, contextId: vm.effectiveId });
      m().returnBytes(typeof result === "string" ? encodeText(result) : result ?? new Uint8Array(0), ptrPtr, sizePtr);
      return WasmResult.Ok;
    },
  };
}

/** The header map `type` as the current callback sees it: null when Envoy has none now (BadArgument), undefined when
 * the type is not one of the current context's. A callout's answer and gRPC metadata are read-only. */
function headerMap(vm: Vm, type: number, mutable: boolean): Headers | null | undefined {
  switch (type) {
    case MapType.HttpCallResponseHeaders:
      return mutable ? null : vm.call.callResponse?.headers ?? null;
    case MapType.HttpCallResponseTrailers:
      return mutable ? null : vm.call.callResponse?.trailers ?? null;
    case MapType.GrpcInitialMetadata:
      return mutable ? null : vm.call.grpcInitial;
    case MapType.GrpcTrailingMetadata:
      return mutable ? null : vm.call.grpcTrailing;
    default: {
      const stream = vm.current();
      if (stream === undefined) return null;
      return stream.headerMap(type, mutable);
    }
  }
}

/** Under ABI 0.2.1 Envoy clears the route cache whenever a filter changes the request headers. */
function headersModified(vm: Vm, type: number): void {
  if (type === MapType.RequestHeaders) vm.current()?.clearRouteCache();
}

function buffer(vm: Vm, type: number): BufferSlot | null {
  const call = vm.call;
  switch (type) {
    case BufferType.VmConfiguration:
      return constant(vm.process.vmConfig);
    case BufferType.PluginConfiguration:
      return call.pluginConfig === null ? null : constant(call.pluginConfig);
    case BufferType.ForeignFunctionArguments:
      return call.foreignArgs === null ? null : constant(call.foreignArgs);
    case BufferType.HttpCallResponseBody:
      return call.callResponse === null ? null : constant(call.callResponse.body);
    case BufferType.GrpcReceiveBuffer:
      return call.grpcMessage === null ? null : constant(call.grpcMessage);
    default:
      return vm.current()?.buffer(type) ?? null;
  }
}

function constant(bytes: Uint8Array): BufferSlot {
  return { bytes: () => bytes };
}

/** A stream's own property (one the filter set, or one derived from the stream), else the process-wide one. */
function property(vm: Vm, key: string): Uint8Array | undefined {
  const stream = vm.current();
  const fromStream = stream?.properties.get(key) ?? stream?.derivedProperty(key);
  if (fromStream !== undefined) return fromStream;
  return vm.process.property(key);
}
