// The guest's exports as the emulator calls them, and the small memory helpers the host functions use. Every
// callback is optional: a module exports only what it implements, as Envoy allows.

export interface GuestExports {
  memory: WebAssembly.Memory;
  _initialize?: () => void;
  _start?: () => void;
  /** Called after _initialize when both exist (the spec's integration rules). */
  main?: (argc: number, argv: number) => number;
  proxy_on_memory_allocate?: (size: number) => number;
  malloc?: (size: number) => number;
  proxy_on_context_create?: (contextId: number, parentId: number) => void;
  proxy_on_vm_start?: (rootId: number, size: number) => number;
  proxy_validate_configuration?: (rootId: number, size: number) => number;
  proxy_on_configure?: (rootId: number, size: number) => number;
  proxy_on_tick?: (rootId: number) => void;
  proxy_on_queue_ready?: (rootId: number, token: number) => void;
  proxy_on_foreign_function?: (rootId: number, functionId: number, size: number) => void;
  proxy_on_request_headers?: (contextId: number, headers: number, endOfStream: number) => number;
  proxy_on_request_body?: (contextId: number, size: number, endOfStream: number) => number;
  proxy_on_request_trailers?: (contextId: number, trailers: number) => number;
  proxy_on_response_headers?: (contextId: number, headers: number, endOfStream: number) => number;
  proxy_on_response_body?: (contextId: number, size: number, endOfStream: number) => number;
  proxy_on_response_trailers?: (contextId: number, trailers: number) => number;
  proxy_on_new_connection?: (contextId: number) => number;
  proxy_on_downstream_data?: (contextId: number, size: number, endOfStream: number) => number;
  proxy_on_upstream_data?: (contextId: number, size: number, endOfStream: number) => number;
  proxy_on_downstream_connection_close?: (contextId: number, peer: number) => void;
  proxy_on_upstream_connection_close?: (contextId: number, peer: number) => void;
  proxy_on_http_call_response?: (contextId: number, token: number, headers: number, bodySize: number, trailers: number) => void;
  proxy_on_grpc_receive_initial_metadata?: (contextId: number, token: number, headers: number) => void;
  proxy_on_grpc_receive?: (contextId: number, token: number, size: number) => void;
  proxy_on_grpc_receive_trailing_metadata?: (contextId: number, token: number, trailers: number) => void;
  proxy_on_grpc_close?: (contextId: number, token: number, status: number) => void;
  proxy_on_done?: (contextId: number) => number;
  proxy_on_log?: (contextId: number) => void;
  proxy_on_delete?: (contextId: number) => void;
}

/** The ABI versions Envoy accepts; a module must export one of them. */
export const ABI_VERSION_EXPORTS = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0"];

/** Raised when the guest traps (an `abort`, `unreachable`, out-of-bounds access). Envoy marks such a VM failed; the
 * emulator stops the test with the trap and the last critical log line, which usually says why. */
export class GuestTrap extends Error {
  constructor(call: string, cause: unknown, lastCritical: string | undefined) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`guest trapped in ${call}: ${reason}${lastCritical !== undefined ? ` (last critical log: ${lastCritical})` : ""}`);
    this.name = "GuestTrap";
  }
}

const utf8 = new TextDecoder();

/** Guest memory as the host functions see it. Views are rebuilt only when the memory grows (its buffer changes). */
export class Memory {
  private buffer: ArrayBuffer | null = null;
  private view!: DataView;
  private bytesView!: Uint8Array;

  constructor(private readonly exports: GuestExports) {}

  private refresh(): void {
    const buffer = this.exports.memory.buffer;
    if (buffer === this.buffer) return;
    this.buffer = buffer;
    this.view = new DataView(buffer);
    this.bytesView = new Uint8Array(buffer);
  }

  /** A copy of guest bytes (the guest may reuse that memory as soon as the call returns). */
  bytes(ptr: number, size: number): Uint8Array {
    this.refresh();
    if (ptr + size > this.bytesView.length) throw new RangeError(`guest memory read out of bounds: ${ptr}+${size}`);
    return this.bytesView.slice(ptr, ptr + size);
  }

  text(ptr: number, size: number): string {
    this.refresh();
    if (ptr + size > this.bytesView.length) throw new RangeError(`guest memory read out of bounds: ${ptr}+${size}`);
    return utf8.decode(this.bytesView.subarray(ptr, ptr + size));
  }

  u32(ptr: number, value: number): void {
    this.refresh();
    this.view.setUint32(ptr, value >>> 0, true);
  }

  u64(ptr: number, value: bigint): void {
    this.refresh();
    this.view.setBigUint64(ptr, BigInt.asUintN(64, value), true);
  }

  readU32(ptr: number): number {
    this.refresh();
    return this.view.getUint32(ptr, true);
  }

  write(ptr: number, data: Uint8Array): void {
    this.refresh();
    this.bytesView.set(data, ptr);
  }

  /** Copies `data` into memory the guest allocates (proxy_on_memory_allocate or malloc), as Envoy does when it
   * returns a value, and writes its address and size to the two return slots. Empty data is returned as (0, 0). */
  returnBytes(data: Uint8Array, ptrPtr: number, sizePtr: number): void {
    let ptr = 0;
    if (data.length > 0) {
      const allocate = this.exports.proxy_on_memory_allocate ?? this.exports.malloc;
      if (allocate === undefined) throw new Error("the module exports neither proxy_on_memory_allocate nor malloc");
      ptr = allocate(data.length) >>> 0;
      this.write(ptr, data);
    }
    this.u32(ptrPtr, ptr);
    this.u32(sizePtr, data.length);
  }
}
