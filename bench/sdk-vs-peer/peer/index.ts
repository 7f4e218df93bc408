// The benchmark filter, written with @gcoredev/proxy-wasm-sdk-as in the style of its README and examples: reads
// three request headers and adds one response header (`x-bench-seen`: how many of the three were present).
// Same behaviour as ../skiff/index.ts. The peer's `get` returns "" for a missing header.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  Context,
  FilterHeadersStatusValues,
  registerRootContext,
  RootContext,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class BenchRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Bench(context_id, this);
  }
}

class Bench extends Context {
  seen: i32 = 0;

  constructor(context_id: u32, root_context: BenchRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get("x-user-id") != "") this.seen++;
    if (stream_context.headers.request.get("x-cohort") != "") this.seen++;
    if (stream_context.headers.request.get("user-agent") != "") this.seen++;
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-bench-seen", this.seen.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new BenchRoot(context_id);
}, "bench");
