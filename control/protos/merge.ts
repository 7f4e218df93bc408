// Protobuf merge of Envoy messages, as Istio merges EnvoyFilter patches (istio/istio pkg/proto/merge/merge.go):
// fields set in the source replace scalars and enums of the target, messages merge field by field, lists are
// appended (or replaced, for MERGE_AND_REPLACE_LIST), map entries are replaced, and a google.protobuf.Duration is
// replaced whole (Go's proto.Merge would merge its seconds and nanos separately: golang/protobuf#1359). A oneof takes
// the member the source sets. Values travel as proto3 JSON, the form of control/resources.ts, and are decoded into
// the message type first, so a patch may spell fields in snake_case or lowerCamel.
import { clone, fromJson, type Message, toJson } from "@bufbuild/protobuf";
import { AnySchema, anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { reflect, type ReflectList, type ReflectMap, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { describeJsonError, messageType } from "./encode.js";
import { envoyRegistry } from "./registry.js";

export interface MergeOptions {
  /** MERGE_AND_REPLACE_LIST: a list the source sets replaces the target's list instead of being appended to. */
  replaceLists?: boolean;
}

/** Decodes proto3 JSON (snake_case or lowerCamel, `@type` for Any) into the message `typeName` names; a
 * ResourceEncodingError names the field that does not decode. */
export function decodeMessage(typeName: string, json: unknown, what = "value"): Message {
  const descriptor = messageType(typeName);
  try {
    return fromJson(descriptor, json as never, { registry: envoyRegistry() });
  } catch (error) {
    throw describeJsonError(descriptor, typeName, what, json, error as Error);
  }
}

/** Proto3 JSON with the proto field names (snake_case), as Envoy's docs and the translation write it. */
export function encodeJson(message: Message): Record<string, unknown> {
  return toJson(messageType(message.$typeName), message, { registry: envoyRegistry(), useProtoFieldName: true }) as Record<string, unknown>;
}

/** A patch value in the canonical form: decoded as `typeName` and written back in snake_case. */
export function normalizeJson(typeName: string, json: unknown): Record<string, unknown> {
  return encodeJson(decodeMessage(typeName, json));
}

/** Merges `source` into `target` (both proto3 JSON of `typeName`) and returns the merged JSON. */
export function mergeJson(typeName: string, target: unknown, source: unknown, options: MergeOptions = {}): Record<string, unknown> {
  const merged = decodeMessage(typeName, target, "target");
  mergeMessage(merged, decodeMessage(typeName, source), options);
  return encodeJson(merged);
}

/** Istio's MergeAnyWithAny (pilot/pkg/networking/util/util.go), used for filters' `typed_config` and transport
 * sockets: both `google.protobuf.Any` JSON values are unpacked, merged as messages and packed again. Values of
 * different types do not merge (an error). */
export function mergeAnyJson(target: unknown, source: unknown, options: MergeOptions = {}): Record<string, unknown> {
  const merged = unpackAny(target, "target");
  const patch = unpackAny(source, "value");
  if (merged.$typeName !== patch.$typeName) throw new Error(`a ${patch.$typeName} does not merge into a ${merged.$typeName}`);
  mergeMessage(merged, patch, options);
  return toJson(AnySchema, anyPack(messageType(merged.$typeName), merged), { registry: envoyRegistry(), useProtoFieldName: true }) as Record<string, unknown>;
}

function unpackAny(json: unknown, what: string): Message {
  const message = anyUnpack(decodeMessage("google.protobuf.Any", json, what) as never, envoyRegistry());
  if (!message) throw new Error(`${what}: unknown @type ${String((json as { "@type"?: unknown })["@type"])}`);
  return message;
}

/** Merges `source` into `target` in place (both of the same message type). */
export function mergeMessage(target: Message, source: Message, options: MergeOptions = {}): void {
  if (target.$typeName !== source.$typeName) throw new Error(`cannot merge ${source.$typeName} into ${target.$typeName}`);
  const descriptor = messageType(target.$typeName);
  mergeReflected(reflect(descriptor, target), reflect(descriptor, clone(descriptor, source)), options);
}

function mergeReflected(target: ReflectMessage, source: ReflectMessage, options: MergeOptions): void {
  for (const field of source.fields) {
    if (!source.isSet(field)) continue;
    switch (field.fieldKind) {
      case "list": {
        const list = target.get(field) as ReflectList;
        if (options.replaceLists) list.clear();
        for (const item of source.get(field) as ReflectList) list.add(item);
        break;
      }
      case "map": {
        const map = target.get(field) as ReflectMap;
        for (const [key, value] of source.get(field) as ReflectMap) map.set(key, value);
        break;
      }
      case "message": {
        const value = source.get(field) as ReflectMessage;
        if (field.message.typeName === "google.protobuf.Duration" || !target.isSet(field)) target.set(field, value);
        else mergeReflected(target.get(field) as ReflectMessage, value, options);
        break;
      }
      default:
        target.set(field, source.get(field));
    }
  }
}
