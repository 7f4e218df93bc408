// Part of the package build (`npm run build` in control/, run by `npm pack` too): puts into dist/ what the compiled
// control plane reads at run time besides its JavaScript. The Envoy API descriptor set, so that the packed package
// carries it (built here by the components builder, from Go; a user's project has no Go toolchain), and the
// components builder's Go sources, so that `skiff components build` also works from the compiled CLI. And the
// istio-stats module (Istio's standard metrics), which the control plane attaches to every proxy: compiled here from
// filters/istio-stats, since a user's project has neither this repository's filters nor its build/ folder.
import { cpSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { compileFilter } from "@skiff/proxy-wasm/compile";
import { buildComponent } from "../components/build.js";

const dist = (path: string) => fileURLToPath(new URL(`../dist/${path}`, import.meta.url));

const { path } = buildComponent("descriptors", (line) => console.error(`descriptors: ${line}`));
mkdirSync(dist("descriptors"), { recursive: true });
cpSync(path, dist("descriptors/envoy-api.binpb"));
cpSync(fileURLToPath(new URL("../components/go", import.meta.url)), dist("components/go"), { recursive: true });
const repository = fileURLToPath(new URL("../..", import.meta.url));
await compileFilter({ entry: "filters/istio-stats/index.ts", outFile: dist("filters/istio-stats.wasm"), config: "asconfig.json", baseDir: repository });
console.error(`bundled the Envoy API descriptors, the components' Go sources and the istio-stats module into ${dist("")}`);
