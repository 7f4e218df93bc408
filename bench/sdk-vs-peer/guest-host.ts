// A minimal proxy-wasm host in Node, just enough to drive the benchmark filter's request path the way Envoy does
// (create context, request headers, response headers, done, log, delete) and to time the guest. It implements only
// the imports the two benchmark modules use; any other import is a stub that fails loudly if it is ever called,
// so a module cannot silently take a path this host does not model. Both modules run against this same host code,
// so the host's own cost is the same for both and cancels in the ratio.
import { readFileSync } from "node:fs";

const OK = 0;
const NOT_FOUND = 1;
const MAP_REQUEST_HEADERS = 0;
const MAP_RESPONSE_HEADERS = 2;

export type HeaderList = Array<[string, string]>;

/** Headers as Envoy hands them to a filter for `GET /` from a typical client (HTTP/1.1, via one proxy). */
export const REQUEST_HEADERS: HeaderList = [
  [":authority", "bench.local"], [":path", "/api/items?page=2"], [":method", "GET"], [":scheme", "http"],
  ["user-agent", "bench-client/1.0"], ["accept", "application/json"], ["x-user-id", "user-4711"],
  ["x-cohort", "internal"], ["x-forwarded-proto", "http"], ["x-request-id", "5f1b7a52-9a3c-4f0e-8c1d-2b3e4f5a6b7c"],
];
export const RESPONSE_HEADERS: HeaderList = [
  [":status", "200"], ["content-type", "application/json"], ["content-length", "42"], ["date", "Tue, 24 Nov 2026 01:00:00 GMT"],
  ["x-upstream", "v1"], ["x-envoy-upstream-service-time", "1"],
];

export class GuestHost {
  private readonly instance: WebAssembly.Instance;
  private readonly memory: WebAssembly.Memory;
  private readonly allocate: (size: number) => number;
  private readonly exports: Record<string, ((...args: number[]) => number) | undefined>;
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();
  private maps: HeaderList[] = [];
  /** Host calls made, by import name (for the per-request call profile). */
  readonly calls = new Map<string, number>();
  readonly logs: string[] = [];
  private nextContextId = 2;

  constructor(wasmFile: string) {
    const module = new WebAssembly.Module(readFileSync(wasmFile));
    const implemented: Record<string, Record<string, (...args: number[]) => number>> = {
      env: {
        proxy_get_header_map_value: (type, keyPtr, keySize, valuePtrPtr, valueSizePtr) => {
          const key = this.string(keyPtr, keySize);
          const entry = this.maps[type]?.find(([name]) => name === key);
          if (!entry) return NOT_FOUND;
          this.returnBytes(this.encoder.encode(entry[1]), valuePtrPtr, valueSizePtr);
          return OK;
        },
        proxy_add_header_map_value: (type, keyPtr, keySize, valuePtr, valueSize) => {
          this.maps[type].push([this.string(keyPtr, keySize), this.string(valuePtr, valueSize)]);
          return OK;
        },
        proxy_log: (level, messagePtr, messageSize) => {
          this.logs.push(`${level}: ${this.string(messagePtr, messageSize)}`);
          return OK;
        },
        proxy_set_effective_context: () => OK,
        // No property or buffer is set in this benchmark (no plugin configuration, one root id).
        proxy_get_property: () => NOT_FOUND,
        proxy_get_buffer_bytes: () => NOT_FOUND,
      },
      wasi_snapshot_preview1: {
        fd_write: (fd, iovs, iovsLength, writtenPtr) => {
          const view = new DataView(this.memory.buffer);
          let written = 0;
          for (let i = 0; i < iovsLength; i++) {
            const ptr = view.getUint32(iovs + i * 8, true);
            const length = view.getUint32(iovs + i * 8 + 4, true);
            this.logs.push(`fd ${fd}: ${this.string(ptr, length)}`);
            written += length;
          }
          view.setUint32(writtenPtr, written, true);
          return 0;
        },
      },
    };
    const imports: WebAssembly.Imports = {};
    for (const { module: moduleName, name, kind } of WebAssembly.Module.imports(module)) {
      if (kind !== "function") throw new Error(`${wasmFile} imports ${kind} ${moduleName}.${name}; this host gives functions only`);
      const given = implemented[moduleName]?.[name];
      imports[moduleName] ??= {};
      (imports[moduleName] as Record<string, unknown>)[name] = (...args: number[]) => {
        this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
        if (!given) throw new Error(`${wasmFile} called ${moduleName}.${name}, which this benchmark host does not implement`);
        return given(...args);
      };
    }
    this.instance = new WebAssembly.Instance(module, imports);
    this.exports = this.instance.exports as unknown as Record<string, ((...args: number[]) => number) | undefined>;
    this.memory = this.instance.exports.memory as WebAssembly.Memory;
    // Envoy allocates guest memory through whichever of these the module exports.
    const allocator = this.exports.proxy_on_memory_allocate ?? this.exports.malloc;
    if (!allocator) throw new Error(`${wasmFile} exports no allocator`);
    this.allocate = allocator;
    // Like Envoy: the WASI start function, then the root context, VM start and configure (empty configuration).
    // A callback the module does not export is skipped, as Envoy skips it.
    (this.exports._initialize ?? this.exports._start)?.();
    this.exports.proxy_on_context_create?.(1, 0);
    if (!(this.exports.proxy_on_vm_start?.(1, 0) ?? 1)) throw new Error("proxy_on_vm_start returned false");
    if (!(this.exports.proxy_on_configure?.(1, 0) ?? 1)) throw new Error("proxy_on_configure returned false");
  }

  /** One HTTP stream, callback by callback as Envoy makes them for a GET answered 200; returns the response map. */
  request(requestHeaders: HeaderList = REQUEST_HEADERS, responseHeaders: HeaderList = RESPONSE_HEADERS): HeaderList {
    const id = this.nextContextId++;
    const response = responseHeaders.slice();
    this.maps[MAP_REQUEST_HEADERS] = requestHeaders;
    this.maps[MAP_RESPONSE_HEADERS] = response;
    this.exports.proxy_on_context_create?.(id, 1);
    this.exports.proxy_on_request_headers?.(id, requestHeaders.length, 1);
    this.exports.proxy_on_response_headers?.(id, response.length, 0);
    this.exports.proxy_on_log?.(id);
    this.exports.proxy_on_done?.(id);
    this.exports.proxy_on_delete?.(id);
    return response;
  }

  /** Linear memory in 64 KiB pages (grows if the guest keeps what it allocates per request). */
  memoryPages(): number {
    return this.memory.buffer.byteLength / 65536;
  }

  private string(ptr: number, size: number): string {
    return this.decoder.decode(new Uint8Array(this.memory.buffer, ptr, size));
  }

  private returnBytes(bytes: Uint8Array, ptrPtr: number, sizePtr: number): void {
    const ptr = this.allocate(bytes.length);
    new Uint8Array(this.memory.buffer, ptr, bytes.length).set(bytes);
    const view = new DataView(this.memory.buffer);
    view.setUint32(ptrPtr, ptr, true);
    view.setUint32(sizePtr, bytes.length, true);
  }
}
