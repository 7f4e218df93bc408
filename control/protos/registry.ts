// Envoy's message types as a @bufbuild/protobuf registry, from the FileDescriptorSet that the components builder
// makes from the Go module github.com/envoyproxy/go-control-plane/envoy v1.40.0 (the release that matches Envoy
// 1.40.0): every v3 message and extension, with what they import. @bufbuild/protobuf implements the full proto3 JSON
// mapping (Duration "1s", Any with "@type", Struct, wrappers, enums by name, snake_case and lowerCamel names).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { componentPath } from "../components/build.js";

let registry: FileRegistry | undefined;

/** Every Envoy API type (config, extensions, services) plus what they import. Loaded once, about 0.2 s. Throws,
 * naming the command that builds them, when the descriptors are not built. */
export function envoyRegistry(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSet())));
  return registry;
}

/** The set the packed `skiff` package carries (dist/descriptors/, copied there by tools/bundle-assets.ts, so that a
 * user's project needs no Go), else the one the components builder made. */
function descriptorSet(): string {
  const bundled = fileURLToPath(new URL("../descriptors/envoy-api.binpb", import.meta.url));
  return existsSync(bundled) ? bundled : componentPath("descriptors");
}
