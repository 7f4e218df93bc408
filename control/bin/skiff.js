#!/usr/bin/env node
// The `skiff` command: the CLI compiled to JavaScript (dist/, built by `npm run build` in the repository and shipped
// in the package).
import { existsSync } from "node:fs";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("skiff: the CLI is not built (dist/cli/main.js is missing); in a Skiff checkout run: npm run build");
  process.exit(1);
}
await import(main.href);
