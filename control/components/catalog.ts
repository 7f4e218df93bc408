// The pinned catalog of components that no registry ships as a binary and that Skiff builds from their published Go
// modules (see README.md beside this file). One entry per component: the Go module and version its wrapper module
// requires, the package built, the wrapper's extra lines and files, the linker flags, and how to check the result.

export interface Component {
  name: string;
  /** What it is and who uses it, for `skiff components list`. */
  description: string;
  /** The Go module the wrapper module requires, at exactly this version. */
  module: string;
  version: string;
  /** The main package built (inside `module`, or the wrapper's own `.` when it has a main.go). */
  package: string;
  /** `replace` lines of the wrapper's go.mod (a module whose own go.mod replaces cannot be built by `go install`). */
  replace?: string[];
  /** Files copied into the wrapper module from `go/<name>/` beside this file (a main.go of its own, say). */
  files?: boolean;
  /** A `go list` pattern: every package it matches is linked in through a generated file of blank imports. */
  blankImports?: string;
  ldflags?: string[];
  /** The file the component is: the built program itself, or a file it writes when run with that file's path. */
  artifact: { program: string; check: string[] } | { file: string; writtenBy: string };
}

export const COMPONENTS: readonly Component[] = [
  {
    name: "descriptors",
    description: "every Envoy v3 API message and extension as one FileDescriptorSet (the control plane's protobuf types)",
    module: "github.com/envoyproxy/go-control-plane/envoy",
    // The go-control-plane release that matches Envoy 1.40.0 (its COMMIT file pins the data-plane-api commit).
    version: "v1.40.0",
    package: ".",
    files: true,
    blankImports: "github.com/envoyproxy/go-control-plane/envoy/...",
    artifact: { file: "envoy-api.binpb", writtenBy: "descriptors" },
  },
];

export function component(name: string): Component {
  const found = COMPONENTS.find((entry) => entry.name === name);
  if (!found) throw new Error(`no component named "${name}" (known: ${COMPONENTS.map((entry) => entry.name).join(", ")})`);
  return found;
}
