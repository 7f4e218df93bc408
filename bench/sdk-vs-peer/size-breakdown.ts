// Where a module's bytes are: the size of each section, and of the function bodies grouped by the source they come
// from (the AssemblyScript standard library by folder, the SDK by file, the filter), read from the wasm binary and
// its name section. The module is rebuilt with --debug for the names; the code is the same as the release build.
import { readFileSync } from "node:fs";

const SECTION_NAMES: Record<number, string> = {
  0: "custom (names)", 1: "types", 2: "imports", 3: "function index", 4: "tables", 5: "memory", 6: "globals",
  7: "exports", 8: "start", 9: "elements", 10: "code", 11: "data", 12: "data count",
};

export interface SizeBreakdown {
  sections: Map<string, number>;
  /** Function body bytes by origin, largest first. */
  code: Array<[origin: string, bytes: number]>;
}

export function sizeBreakdown(wasmFile: string, originOf: (functionName: string) => string): SizeBreakdown {
  const bytes = readFileSync(wasmFile);
  let at = 8;
  const leb = (): number => {
    let result = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = bytes[at++];
      result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return result;
  };
  const skipName = () => {
    const length = leb();
    at += length;
  };
  const sections = new Map<string, number>();
  const bodySizes: number[] = [];
  const names = new Map<number, string>();
  let importedFunctions = 0;
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    const start = at;
    const name = SECTION_NAMES[id] ?? `section ${id}`;
    sections.set(name, (sections.get(name) ?? 0) + size);
    if (id === 2) {
      for (let count = leb(), i = 0; i < count; i++) {
        skipName();
        skipName();
        const kind = bytes[at++];
        if (kind === 0) {
          leb();
          importedFunctions++;
        } else if (kind === 1) {
          at++;
          if (leb() & 1) leb();
          leb();
        } else if (kind === 2) {
          if (leb() & 1) leb();
          leb();
        } else {
          at += 2;
        }
      }
    } else if (id === 10) {
      for (let count = leb(), i = 0; i < count; i++) {
        const bodySize = leb();
        bodySizes.push(bodySize);
        at += bodySize;
      }
    } else if (id === 0) {
      const nameLength = leb();
      const customName = bytes.subarray(at, at + nameLength).toString();
      at += nameLength;
      if (customName === "name") {
        while (at < start + size) {
          const subsection = bytes[at++];
          const subsectionEnd = leb() + at;
          if (subsection === 1) {
            for (let count = leb(), i = 0; i < count; i++) {
              const index = leb();
              const length = leb();
              names.set(index, bytes.subarray(at, at + length).toString());
              at += length;
            }
          }
          at = subsectionEnd;
        }
      }
    }
    at = start + size;
  }
  const code = new Map<string, number>();
  bodySizes.forEach((size, i) => {
    const origin = originOf(names.get(i + importedFunctions) ?? "(unnamed)");
    code.set(origin, (code.get(origin) ?? 0) + size);
  });
  return { sections, code: [...code].sort((a, b) => b[1] - a[1]) };
}

/** Groups AssemblyScript function names: "~lib/map/Map<...>#set" -> "stdlib map", "sdk/assembly/dispatcher/..." -> "SDK dispatcher.ts". */
export function assemblyScriptOrigin(functionName: string): string {
  const peer = /proxy-wasm-sdk-as\/assembly\/([^/~]+?)(\.ts)?(\/|~|$)/.exec(functionName);
  if (peer) return `peer SDK ${peer[1]}.ts`;
  if (/^~lib\/(bindings|wasi_)/.test(functionName)) return "WASI shim (@assemblyscript/wasi-shim)";
  if (functionName.startsWith("~lib/rt/tlsf")) return "runtime: allocator (rt/tlsf)";
  if (functionName.startsWith("~lib/rt/stub")) return "runtime: allocator (rt/stub)";
  if (functionName.startsWith("~lib/rt/")) return "runtime: garbage collector (rt/itcms, __visit_*)";
  const library = /^~lib\/([^/<#]+)/.exec(functionName);
  if (library) return `stdlib ${library[1].replace(/\.ts$/, "")}`;
  const sdk = /sdk\/assembly\/([^/]+)/.exec(functionName);
  if (sdk) return `SDK ${sdk[1]}.ts`;
  if (functionName.startsWith("start:") || functionName === "~start") return "module start (static initialisers)";
  if (/bench\/sdk-vs-peer/.test(functionName)) return "the filter itself";
  return "other";
}
