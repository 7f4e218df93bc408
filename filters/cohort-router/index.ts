// cohort-router: picks the subset (version) a request goes to from its headers, header rules first, then sticky
// percentage cohorts, and writes it into a routing header that the route table matches on. Under ABI 0.2.1 Envoy
// clears the route cache when a filter changes request headers, so the router picks the route again with the
// header in place (see README.md).
import { HeadersAction, HttpContext, LogLevel, RootContext, log, registerRootContext } from "@skiff/proxy-wasm";
import { CohortRouterConfig, configError, parseCohortRouterConfig } from "./config";
export * from "@skiff/proxy-wasm/dispatcher";

class CohortRouterRoot extends RootContext {
  config: CohortRouterConfig | null = null;

  onConfigure(configurationSize: usize): bool {
    const config = parseCohortRouterConfig(configurationSize > 0 ? this.pluginConfiguration() : "");
    if (config === null) {
      log(LogLevel.Error, "cohort-router: configuration rejected: " + configError);
      return false;
    }
    config.defineCounters();
    this.config = config;
    return true;
  }

  createHttpContext(contextId: u32): HttpContext | null {
    return new CohortRouter(contextId, this);
  }
}

class CohortRouter extends HttpContext {
  constructor(contextId: u32, readonly plugin: CohortRouterRoot) {
    super(contextId);
  }

  onRequestHeaders(numHeaders: u32, endOfStream: bool): HeadersAction {
    const config = this.plugin.config;
    if (config === null) return HeadersAction.Continue;
    const subset = config.decide(this.request.headers);
    // Always overwrite: a client must not pick its own subset by sending the routing header.
    const headers = this.request.headers;
    if (subset.length > 0) headers.set(config.routingHeader, subset);
    // Look before removing: Envoy clears the route cache on every removal from the request headers, even of a
    // header that is not there, and the router would then match the route again for nothing.
    else if (headers.has(config.routingHeader)) headers.remove(config.routingHeader);
    return HeadersAction.Continue;
  }
}

registerRootContext((contextId: u32): RootContext => new CohortRouterRoot(contextId));
