import { HttpContext, LogLevel, RootContext, callForeignFunction, log, registerRootContext } from "@skiff/proxy-wasm";
export * from "@skiff/proxy-wasm/dispatcher";
let TOKEN: ArrayBuffer = new ArrayBuffer(4);
let EXPR = "";
class Root extends RootContext {
  onConfigure(size: usize): bool {
    EXPR = this.pluginConfiguration();
    const created = callForeignFunction("expr_create", String.UTF8.encode(EXPR));
    if (created === null) { log(LogLevel.Error, "create failed: " + EXPR); return true; }
    TOKEN = created;
    return true;
  }
  createHttpContext(id: u32): HttpContext | null { return new Stream(id); }
}
class Stream extends HttpContext {
  onLog(): void {
    const all = callForeignFunction("expr_evaluate", TOKEN);
    if (all === null) { log(LogLevel.Error, "EVAL FAILED " + EXPR); return; }
    const bytes = Uint8Array.wrap(all);
    let hex = "";
    for (let i = 0; i < bytes.length; i++) hex += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    log(LogLevel.Error, "EVAL OK " + EXPR + " => " + hex);
  }
}
registerRootContext((id: u32): RootContext => new Root(id));
