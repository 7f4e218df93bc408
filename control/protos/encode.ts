// Proto3 JSON -> protobuf bytes for xDS resources, with errors that name the resource and the field.
import { type DescMessage, fromJson, toBinary } from "@bufbuild/protobuf";
import type { XdsResource } from "../resources.js";
import { envoyRegistry } from "./registry.js";

export class ResourceEncodingError extends Error {
  constructor(
    readonly typeUrl: string,
    readonly resourceName: string,
    readonly field: string,
    /** What is wrong with the field (the message without the resource and field). */
    readonly detail: string,
  ) {
    super(`${typeUrl.split(".").pop()} "${resourceName}": ${field ? `field ${field}: ` : ""}${detail}`);
    this.name = "ResourceEncodingError";
  }
}

/** The message type a type URL names ("type.googleapis.com/envoy.config.cluster.v3.Cluster"). */
export function messageType(typeUrl: string): DescMessage {
  const descriptor = envoyRegistry().getMessage(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
  if (!descriptor) throw new Error(`unknown message type ${typeUrl}`);
  return descriptor;
}

export function encodeResource(typeUrl: string, resource: XdsResource): Uint8Array {
  const descriptor = messageType(typeUrl);
  try {
    return toBinary(descriptor, fromJson(descriptor, resource.body as never, { registry: envoyRegistry() }));
  } catch (error) {
    throw describeJsonError(descriptor, typeUrl, resource.name, resource.body, error as Error);
  }
}

/** The error for JSON that did not decode as `descriptor`, naming the deepest field that does not. */
export function describeJsonError(descriptor: DescMessage, typeUrl: string, name: string, json: unknown, error: Error): ResourceEncodingError {
  const found = findBadField(descriptor, json, "");
  return new ResourceEncodingError(typeUrl, name, found?.path ?? "", found?.detail ?? error.message);
}

interface BadField {
  path: string;
  detail: string;
}

/** The deepest field whose JSON does not decode, found by decoding one field at a time (only runs on errors). */
function findBadField(descriptor: DescMessage, json: unknown, path: string): BadField | undefined {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  for (const [key, value] of Object.entries(json)) {
    if (key === "@type") continue;
    const here = path ? `${path}.${key}` : key;
    const field = descriptor.fields.find((candidate) => candidate.name === key || candidate.jsonName === key);
    if (!field) return { path: here, detail: `unknown field (${descriptor.typeName} has no field "${key}")` };
    const failure = decodeError(descriptor, { [key]: value });
    if (!failure) continue;
    let deeper: BadField | undefined;
    if (field.fieldKind === "message") deeper = findInMessage(field.message, value, here);
    else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
      deeper = value.map((element, index) => findInMessage(field.message, element, `${here}[${index}]`)).find(Boolean);
    } else if (field.fieldKind === "map" && field.mapKind === "message" && value && typeof value === "object") {
      deeper = Object.entries(value).map(([mapKey, element]) => findInMessage(field.message, element, `${here}["${mapKey}"]`)).find(Boolean);
    }
    return deeper ?? { path: here, detail: failure };
  }
  return undefined;
}

function findInMessage(descriptor: DescMessage, json: unknown, path: string): BadField | undefined {
  if (descriptor.typeName === "google.protobuf.Any" && json && typeof json === "object" && "@type" in json) {
    const typeUrl = String((json as { "@type": unknown })["@type"]);
    const inner = envoyRegistry().getMessage(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
    if (!inner) return { path: `${path}.@type`, detail: `${typeUrl} is not a known type` };
    return findBadField(inner, json, path);
  }
  // Well-known types (Duration, Struct, wrappers) have their own JSON forms: the error at the field says it all.
  if (descriptor.typeName.startsWith("google.protobuf.")) return undefined;
  return findBadField(descriptor, json, path);
}

function decodeError(descriptor: DescMessage, json: unknown): string | undefined {
  try {
    fromJson(descriptor, json as never, { registry: envoyRegistry() });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}
