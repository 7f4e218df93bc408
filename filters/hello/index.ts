// The smallest useful filter: adds `x-skiff-hello` to every response. The header value is the plugin
// configuration, or "world" when there is none.
import { HeadersAction, HttpContext, RootContext, registerRootContext } from "@skiff/proxy-wasm";
export * from "@skiff/proxy-wasm/dispatcher";

class HelloRoot extends RootContext {
  greeting: string = "world";

  onConfigure(configurationSize: usize): bool {
    if (configurationSize > 0) this.greeting = this.pluginConfiguration();
    return true;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new Hello(contextId, this);
  }
}

class Hello extends HttpContext {
  constructor(contextId: u32, readonly plugin: HelloRoot) {
    super(contextId);
  }

  onResponseHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    this.response.headers.set("x-skiff-hello", this.plugin.greeting);
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new HelloRoot(contextId));
