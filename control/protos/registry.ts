// Envoy's message types, from the .proto files that @grpc/grpc-js-xds vendors (Envoy's data-plane-api, xds, udpa,
// googleapis, protoc-gen-validate), as a @bufbuild/protobuf registry. protobufjs parses the .proto text (it is the
// parser @grpc/proto-loader uses); @bufbuild/protobuf does the encoding because it implements the full proto3 JSON
// mapping (Duration "1s", Any with "@type", Struct, wrappers, enums by name, both snake_case and lowerCamel names),
// which protobufjs's fromObject does not.
import { createRequire } from "node:module";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import protobuf from "protobufjs";
import descriptorExt from "protobufjs/ext/descriptor/index.js";
import { createFileRegistry, fromBinary, type FileRegistry } from "@bufbuild/protobuf";
import {
  FileDescriptorSetSchema,
  file_google_protobuf_any,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
} from "@bufbuild/protobuf/wkt";

const require = createRequire(import.meta.url);
const XDS_DEPS = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
const INCLUDE_DIRS = [
  ...["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((dir) => join(XDS_DEPS, dir)),
  // google/protobuf/descriptor.proto, which the annotation files import.
  dirname(require.resolve("protobufjs/package.json")),
];
/** The well-known types come from @bufbuild/protobuf itself, already as descriptors. */
const WELL_KNOWN = [
  file_google_protobuf_any,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
];
const WELL_KNOWN_NAMES = new Set(WELL_KNOWN.map((file) => file.proto.name));

// protobufjs's descriptor extension is untyped JavaScript.
const { FileDescriptorProto, FileDescriptorSet } = descriptorExt as unknown as {
  FileDescriptorProto: { create(properties: Record<string, unknown>): FileProto };
  FileDescriptorSet: { create(properties: { file: FileProto[] }): unknown; encode(set: unknown): { finish(): Uint8Array } };
};
interface FileProto {
  name: string;
  dependency: string[];
  messageType: unknown[];
  enumType: unknown[];
  service: unknown[];
}

let registry: FileRegistry | undefined;

/** Every v3 Envoy type (config, extensions, services) plus what they import. Loaded once, about half a second. */
export function envoyRegistry(): FileRegistry {
  registry ??= buildRegistry();
  return registry;
}

function buildRegistry(): FileRegistry {
  const imports = new Map<string, string[]>();
  const entryPoints = protoFiles(join(XDS_DEPS, "envoy-api", "envoy"))
    .map((file) => relative(join(XDS_DEPS, "envoy-api"), file))
    // v2 and alpha packages import files that are not vendored; v3 is what Envoy 1.40 speaks.
    .filter((file) => /\/v3\//.test(file) && resolvable(file, imports));

  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => locate(target) ?? target;
  root.loadSync(entryPoints, { keepCase: true });
  root.resolveAll();

  // protobufjs's Root.toDescriptor makes one file per package, without imports, which a descriptor registry cannot
  // order; rebuild one FileDescriptorProto per .proto file instead, in import order.
  const files = new Map<string, FileProto>();
  collectTypes(root, files);
  for (const [name, file] of files) file.dependency = (imports.get(name) ?? []).filter((dep) => files.has(dep) || WELL_KNOWN_NAMES.has(dep));
  const ordered = importOrder([...files.keys()], imports).filter((name) => files.has(name)).map((name) => files.get(name)!);
  const encoded = FileDescriptorSet.encode(FileDescriptorSet.create({ file: ordered })).finish();
  const set = fromBinary(FileDescriptorSetSchema, encoded);
  set.file.unshift(...WELL_KNOWN.map((file) => file.proto));
  return createFileRegistry(set);
}

function collectTypes(namespace: protobuf.NamespaceBase, files: Map<string, FileProto>): void {
  for (const nested of namespace.nestedArray) {
    const isType = nested instanceof protobuf.Type;
    if (isType || nested instanceof protobuf.Enum || nested instanceof protobuf.Service) {
      const fileName = nested.filename ? relativeToInclude(nested.filename) : undefined;
      if (!fileName || WELL_KNOWN_NAMES.has(fileName) || fileName.startsWith("google/protobuf/")) continue;
      let file = files.get(fileName);
      if (!file) {
        file = FileDescriptorProto.create({ name: fileName, package: namespace.fullName.slice(1), syntax: "proto3" });
        files.set(fileName, file);
      }
      const described = (nested as unknown as { toDescriptor(edition: string): MessageProto }).toDescriptor("proto3");
      if (isType) file.messageType.push(qualifyTypeNames(described, nested));
      else if (nested instanceof protobuf.Enum) file.enumType.push(described);
      else file.service.push(described);
    } else if (nested instanceof protobuf.Namespace) {
      collectTypes(nested, files);
    }
  }
}

interface FieldProto {
  name: string;
  jsonName?: string;
  typeName?: string;
  extendee?: string;
}
interface MessageProto {
  name: string;
  field: FieldProto[];
  nestedType: MessageProto[];
}

/** protobufjs names field types relative to the message and leaves json_name out (protoc fills both); a descriptor
 * registry needs types fully qualified and the lowerCamel JSON name of each field. */
function qualifyTypeNames(described: MessageProto, type: protobuf.Type): MessageProto {
  described.field = described.field.filter((field) => !field.extendee);
  for (const field of described.field) {
    field.jsonName = field.name.replace(/_(\w)/g, (_, letter: string) => letter.toUpperCase());
    const reflected = type.fields[field.name];
    if (!reflected) continue;
    if (reflected instanceof protobuf.MapField) {
      field.typeName = `${type.fullName}.${field.typeName}`;
      const entry = described.nestedType.find((nested) => `${type.fullName}.${nested.name}` === field.typeName);
      const value = entry?.field.find((entryField) => entryField.name === "value");
      if (value && reflected.resolvedType) value.typeName = reflected.resolvedType.fullName;
    } else if (reflected.resolvedType) {
      field.typeName = reflected.resolvedType.fullName;
    }
  }
  for (const nested of described.nestedType) {
    const reflected = type.nested?.[nested.name];
    if (reflected instanceof protobuf.Type) qualifyTypeNames(nested, reflected);
  }
  return described;
}

function relativeToInclude(path: string): string | undefined {
  const dir = INCLUDE_DIRS.find((include) => path.startsWith(include + "/"));
  return dir ? relative(dir, path) : undefined;
}

function locate(importPath: string): string | undefined {
  return INCLUDE_DIRS.map((dir) => join(dir, importPath)).find((path) => existsSync(path));
}

/** Whether a file and everything it imports can be found; records each file's imports on the way. */
function resolvable(importPath: string, imports: Map<string, string[]>, visiting = new Map<string, boolean>()): boolean {
  if (importPath.startsWith("google/protobuf/")) return true;
  const known = visiting.get(importPath);
  if (known !== undefined) return known;
  visiting.set(importPath, true);
  const path = locate(importPath);
  let ok = path !== undefined;
  if (path && !imports.has(importPath)) {
    imports.set(importPath, [...readFileSync(path, "utf8").matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)";/gm)].map((m) => m[1]));
  }
  for (const dependency of imports.get(importPath) ?? []) ok &&= resolvable(dependency, imports, visiting);
  visiting.set(importPath, ok);
  return ok;
}

/** Files ordered so that each comes after everything it imports (imports of .proto files have no cycles). */
function importOrder(names: string[], imports: Map<string, string[]>): string[] {
  const ordered: string[] = [];
  const done = new Set<string>();
  const visit = (name: string) => {
    if (done.has(name)) return;
    done.add(name);
    for (const dependency of imports.get(name) ?? []) visit(dependency);
    ordered.push(name);
  };
  names.forEach(visit);
  return ordered;
}

function protoFiles(dir: string, found: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) protoFiles(path, found);
    else if (name.endsWith(".proto")) found.push(path);
  }
  return found;
}
