// Part of the package build (`npm run build` in control/, run by `npm pack` too): puts into dist/ what the compiled
// control plane reads at run time besides its JavaScript. The Envoy API descriptor set, so that the packed package
// carries it (built here by the components builder, from Go; a user's project has no Go toolchain), and the
// components builder's Go sources, so that `skiff components build` also works from the compiled CLI.
import { cpSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildComponent } from "../components/build.js";

const dist = (path: string) => fileURLToPath(new URL(`../dist/${path}`, import.meta.url));

const { path } = buildComponent("descriptors", (line) => console.error(`descriptors: ${line}`));
mkdirSync(dist("descriptors"), { recursive: true });
cpSync(path, dist("descriptors/envoy-api.binpb"));
cpSync(fileURLToPath(new URL("../components/go", import.meta.url)), dist("components/go"), { recursive: true });
console.error(`bundled the Envoy API descriptors and the components' Go sources into ${dist("")}`);
