// The floor: the benchmark filter's behaviour written against the raw ABI with no SDK, no objects and no allocation
// per request (static header names, a bump allocator reset per request, a byte per context in linear memory), and
// only the exports that behaviour needs.
// Its time per request is the host's cost plus the least guest work possible; the SDKs are measured above it.

@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(type: u32, keyPtr: usize, keySize: usize, valuePtrPtr: usize, valueSizePtr: usize): u32;
@external("env", "proxy_add_header_map_value")
declare function proxy_add_header_map_value(type: u32, keyPtr: usize, keySize: usize, valuePtr: usize, valueSize: usize): u32;

const USER_ID = memory.data<u8>([0x78, 0x2d, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x69, 0x64]); // x-user-id
const COHORT = memory.data<u8>([0x78, 0x2d, 0x63, 0x6f, 0x68, 0x6f, 0x72, 0x74]); // x-cohort
const USER_AGENT = memory.data<u8>([0x75, 0x73, 0x65, 0x72, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74]); // user-agent
const SEEN = memory.data<u8>([0x78, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68, 0x2d, 0x73, 0x65, 0x65, 0x6e]); // x-bench-seen
const DIGIT = memory.data(1);
const OUT = memory.data(8);
const HEAP = memory.data(4096);
let heapTop: usize = 0;
// Headers seen, per stream: a slot per context id (streams interleave on a worker; 1024 in flight never collide here).
const SEEN_BY_CONTEXT = memory.data(1024);

// Only what the behaviour needs is exported: Envoy enters the VM for a callback only when the module exports it
// (proxy-wasm-cpp-host's ContextBase skips a missing one), so the floor has no context, done, log or delete callbacks.
export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_memory_allocate(size: usize): usize {
  const ptr = HEAP + heapTop;
  heapTop += (size + 7) & ~7;
  return ptr;
}
export function proxy_on_request_headers(contextId: u32, headers: u32, endOfStream: u32): u32 {
  let seen: u8 = 0;
  if (proxy_get_header_map_value(0, USER_ID, 9, OUT, OUT + 4) == 0) seen++;
  if (proxy_get_header_map_value(0, COHORT, 8, OUT, OUT + 4) == 0) seen++;
  if (proxy_get_header_map_value(0, USER_AGENT, 10, OUT, OUT + 4) == 0) seen++;
  store<u8>(SEEN_BY_CONTEXT + (contextId & 1023), seen);
  heapTop = 0;
  return 0;
}
export function proxy_on_response_headers(contextId: u32, headers: u32, endOfStream: u32): u32 {
  store<u8>(DIGIT, 0x30 + load<u8>(SEEN_BY_CONTEXT + (contextId & 1023)));
  proxy_add_header_map_value(2, SEEN, 12, DIGIT, 1);
  return 0;
}
