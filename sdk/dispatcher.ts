// `export * from "@skiff/proxy-wasm/dispatcher"` in a filter's entry file exports the proxy_on_* functions the host
// calls (only the entry file's exports become the module's).
export * from "./assembly/dispatcher";
