// The compiler preset's transform (asconfig.json "transform"): a filter's module exports only the per-stream callbacks
// that the filter's own classes override. Envoy enters the VM for a callback only when the module exports it
// (proxy-wasm-cpp-host's ContextBase skips a callback the module lacks), so a filter that overrides only
// onResponseHeaders costs Envoy no VM call on request headers, bodies, trailers, done or log. Callbacks that are not
// per stream (configuration, ticks, queues, foreign functions, callout answers) stay exported: Envoy calls them only
// when there is something to deliver. proxy_on_context_create and proxy_on_delete always stay: the dispatcher makes
// and forgets its context objects there. Plain JavaScript: the compiler loads transforms as Node modules.
import { ClassPrototype } from "assemblyscript";
import { Transform } from "assemblyscript/transform";

/** Per SDK base class, which callback method a subclass overrides to need which export. */
const CALLBACKS = {
  Context: { onDone: "proxy_on_done", onLog: "proxy_on_log" },
  HttpContext: {
    onRequestHeaders: "proxy_on_request_headers",
    onRequestBody: "proxy_on_request_body",
    onRequestTrailers: "proxy_on_request_trailers",
    onResponseHeaders: "proxy_on_response_headers",
    onResponseBody: "proxy_on_response_body",
    onResponseTrailers: "proxy_on_response_trailers",
  },
  TcpContext: {
    onDownstreamData: "proxy_on_downstream_data",
    onUpstreamData: "proxy_on_upstream_data",
    onDownstreamConnectionClose: "proxy_on_downstream_connection_close",
    onUpstreamConnectionClose: "proxy_on_upstream_connection_close",
  },
};
/** Made on a connection's first callback: needed by any plugin with a TCP context class. */
const NEW_CONNECTION = "proxy_on_new_connection";
const SDK_CLASS = /(?:^|\/)assembly\/contexts\/(Context|HttpContext|TcpContext)$/;

export default class PruneCallbacks extends Transform {
  /** The prunable exports some class of the filter needs. */
  needed = new Set();
  /** Whether the program holds the SDK at all: a module built with the preset but without the SDK keeps its exports. */
  usesSdk = false;

  afterInitialize(program) {
    const bases = new Map();
    const classes = [];
    for (const element of program.elementsByName.values()) {
      if (!(element instanceof ClassPrototype)) continue;
      const sdk = SDK_CLASS.exec(element.internalName);
      if (sdk) bases.set(sdk[1], element);
      else classes.push(element);
    }
    this.usesSdk = bases.size === Object.keys(CALLBACKS).length;
    if (!this.usesSdk) return;
    for (const type of classes) {
      for (const [baseName, callbacks] of Object.entries(CALLBACKS)) {
        if (!type.extends(bases.get(baseName))) continue;
        if (baseName === "TcpContext") this.needed.add(NEW_CONNECTION);
        for (const member of type.instanceMembers?.keys() ?? []) {
          if (Object.hasOwn(callbacks, member)) this.needed.add(callbacks[member]);
        }
      }
    }
  }

  afterCompile(module) {
    if (!this.usesSdk) return;
    const prunable = [NEW_CONNECTION, ...Object.values(CALLBACKS).flatMap((callbacks) => Object.values(callbacks))];
    for (const name of prunable) {
      if (!this.needed.has(name) && hasExport(module, this.binaryen, name)) module.removeExport(name);
    }
  }
}

function hasExport(module, binaryen, name) {
  for (let i = 0; i < module.getNumExports(); i++) {
    if (binaryen.getExportInfo(module.getExportByIndex(i)).name === name) return true;
  }
  return false;
}
