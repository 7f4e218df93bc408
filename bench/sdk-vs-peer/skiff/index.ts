// The benchmark filter, written with the Skiff SDK: reads three request headers and adds one response header
// (`x-bench-seen`: how many of the three were present). Same behaviour as ../peer/index.ts.
import { HeadersAction, HttpContext, RootContext, registerRootContext } from "@skiff/proxy-wasm";
export * from "@skiff/proxy-wasm/dispatcher";

class BenchRoot extends RootContext {
  createHttpContext(contextId: u32): HttpContext | null {
    return new Bench(contextId);
  }
}

class Bench extends HttpContext {
  seen: i32 = 0;

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const headers = this.request.headers;
    if (headers.get("x-user-id") !== null) this.seen++;
    if (headers.get("x-cohort") !== null) this.seen++;
    if (headers.get("user-agent") !== null) this.seen++;
    return HeadersAction.Continue;
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    this.response.headers.add("x-bench-seen", this.seen.toString());
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new BenchRoot(contextId));
