#!/usr/bin/env node
// The `skiff` command. The CLI is written in TypeScript; tsx compiles it on the fly so `npx skiff` works straight
// after `npm install`, with no build step.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
