// Compiles the benchmark filter twice, with the Skiff SDK and with @gcoredev/proxy-wasm-sdk-as, at -O3, in the
// variants the SDK-vs-peer comparison reports (see ../README.md). Output: build/bench/<variant>.wasm.
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { join, relative } from "node:path";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { wasmFilter } from "../../test/harness/bootstrap.js";
import type { VariantSpec } from "../lib/envoys.js";

export interface Variant {
  name: string;
  sdk: "skiff" | "peer" | "floor";
  /** What differs from that SDK's own recommended build, in words for the results table. */
  flags: string;
  args: string[];
}

const here = relative(PROJECT_ROOT, import.meta.dirname);
const skiffEntry = join(here, "skiff", "index.ts");
const peerEntry = join(here, "peer", "index.ts");
const floorEntry = join(here, "floor", "index.ts");

export const VARIANTS: Variant[] = [
  // The SDK preset exactly as a filter author gets it (target release: runtime incremental, noAssert, -O3, converge).
  { name: "skiff", sdk: "skiff", flags: "SDK preset: --runtime incremental -O3 --noAssert --converge", args: [skiffEntry, "--config", "asconfig.json", "--target", "release"] },
  // The preset's `small` target: --runtime minimal, shrink level 2, the SDK collects every 64 finished contexts.
  { name: "skiff-small", sdk: "skiff", flags: "SDK preset, target small: --runtime minimal -O3 shrink 2, collects every 64 contexts", args: [skiffEntry, "--config", "asconfig.json", "--target", "small"] },
  { name: "skiff-stub", sdk: "skiff", flags: "preset + --runtime stub (never frees)", args: [skiffEntry, "--config", "asconfig.json", "--target", "release", "--runtime", "stub"] },
  // The peer as its examples build it (wasi-shim, abort=abort_proc_exit, -O3); its malloc imports rt/itcms, so it
  // only builds with the incremental runtime.
  { name: "peer", sdk: "peer", flags: "its examples' asconfig: wasi-shim, -O3, asserts kept, no converge", args: [peerEntry, "--config", join(here, "peer", "asconfig.json"), "--target", "release"] },
  { name: "peer-tuned", sdk: "peer", flags: "examples' asconfig + --noAssert --converge (Skiff's flags)", args: [peerEntry, "--config", join(here, "peer", "asconfig.json"), "--target", "release", "--noAssert", "--converge"] },
  // No SDK: the raw ABI by hand, nothing allocated per request. The floor the SDKs' overhead is measured from.
  { name: "floor", sdk: "floor", flags: "raw ABI by hand, --runtime stub -O3", args: [floorEntry, "--config", join(here, "floor", "asconfig.json"), "--target", "release"] },
];

export const BENCH_BUILD_DIR = join(PROJECT_ROOT, "build", "bench");

export function wasmPath(variant: string): string {
  return join(BENCH_BUILD_DIR, `${variant}.wasm`);
}

const ASC = createRequire(import.meta.url).resolve("assemblyscript/bin/asc.js");

/** Compiles one variant with asc in a child process: asc keeps options between in-process runs (the peer's
 * WASI library folder would leak into the next build). Paths are relative to the project root, as asc expects. */
/** The same build with a name section (--debug), for the size breakdown. */
export function namedWasmPath(variant: string): string {
  return join(BENCH_BUILD_DIR, `${variant}.names.wasm`);
}

export async function buildVariant(variant: Variant, withNames = false): Promise<string> {
  mkdirSync(BENCH_BUILD_DIR, { recursive: true });
  const outFile = withNames ? namedWasmPath(variant.name) : wasmPath(variant.name);
  try {
    await promisify(execFile)(process.execPath, [ASC, ...variant.args, "--outFile", relative(PROJECT_ROOT, outFile), ...(withNames ? ["--debug"] : [])], { cwd: PROJECT_ROOT });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`building ${variant.name} failed:\n${stdout ?? ""}${stderr ?? ""}`);
  }
  return outFile;
}

export async function buildAll(): Promise<void> {
  for (const variant of VARIANTS) await buildVariant(variant);
}

/** An Envoy variant running one of these modules (root_id "bench"), each answer checked for `x-bench-seen`. */
export function benchModuleVariant(name: string, description: string): VariantSpec {
  const filter = wasmFilter("bench", { rootId: "bench" }) as { typed_config: { config: { vm_config: { code: { local: { filename: string } } } } } };
  filter.typed_config.config.vm_config.code.local.filename = wasmPath(name);
  return { name, description, httpFilters: [filter], expectHeader: "x-bench-seen" };
}
