// The preset's transform (exports.js): a module exports the per-stream callbacks its classes override and no others,
// so Envoy never enters the VM for a callback the filter does not implement; and such a module still runs as before.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fixtureModule } from "../tools/fixtures.js";
import { Emulator } from "../testing/index.js";

const STREAM_CALLBACKS = [
  "proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_response_headers",
  "proxy_on_response_body", "proxy_on_response_trailers", "proxy_on_done", "proxy_on_log", "proxy_on_new_connection",
  "proxy_on_downstream_data", "proxy_on_upstream_data", "proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close",
];

function exported(bytes: Uint8Array): string[] {
  return WebAssembly.Module.exports(new WebAssembly.Module(new Uint8Array(bytes))).map((e) => e.name);
}

describe("the preset's export pruning", () => {
  it("leaves the hello filter (it overrides onResponseHeaders only) one stream callback, and its lifecycle", () => {
    const names = exported(readFileSync("build/filters/hello.wasm"));
    expect(STREAM_CALLBACKS.filter((name) => names.includes(name))).toEqual(["proxy_on_response_headers"]);
    // The dispatcher makes and forgets its contexts here; callouts, ticks and configuration stay, Envoy calls them
    // only when it has something to deliver.
    expect(names).toEqual(expect.arrayContaining(["proxy_on_context_create", "proxy_on_delete", "proxy_on_configure", "proxy_on_tick", "proxy_on_http_call_response"]));
  });

  it("keeps every callback a module's classes override (the probe and the TCP probe)", async () => {
    // The probe implements every HTTP callback and onLog, not onDone.
    const probe = exported(readFileSync(await fixtureModule("probe")));
    expect(STREAM_CALLBACKS.filter((name) => probe.includes(name))).toEqual([...STREAM_CALLBACKS.slice(0, 6), "proxy_on_log"]);
    const tcp = exported(readFileSync(await fixtureModule("tcp-probe")));
    expect(STREAM_CALLBACKS.filter((name) => tcp.includes(name)).sort()).toEqual([
      "proxy_on_downstream_connection_close", "proxy_on_downstream_data", "proxy_on_log", "proxy_on_new_connection",
      "proxy_on_response_headers", "proxy_on_upstream_connection_close", "proxy_on_upstream_data",
    ]);
  });

  it("still makes a pruned filter's context on its first callback, and forgets it", async () => {
    const vm = await Emulator.load("build/filters/hello.wasm", { pluginConfig: "pruned" });
    for (let i = 0; i < 3; i++) {
      const stream = vm.http();
      stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "x" }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
      expect(stream.responseHeaders.get("x-skiff-hello")).toBe("pruned");
      expect(stream.finished).toBe(true);
    }
  });
});
