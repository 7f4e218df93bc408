// The package's AssemblyScript entry: `import { HttpContext, ... } from "@skiff/proxy-wasm"` (the compiler resolves a
// package name to its index.ts). The API is in assembly/; this file only points there.
export * from "./assembly/index";
