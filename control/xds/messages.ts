// The ADS wire messages (DiscoveryRequest/Response and their delta forms), read into plain objects and written
// from already-encoded resources, with the gRPC method definitions of AggregatedDiscoveryService.
import { type DescMessage, fromBinary, toJson } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { envoyRegistry } from "../protos/registry.js";
import type { EncodedResource } from "../snapshots/cache.js";

export interface Node {
  id?: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
  locality?: { region?: string; zone?: string; sub_zone?: string };
}

export interface RpcStatus {
  code?: number;
  message?: string;
}

/** envoy.service.discovery.v3.DiscoveryRequest in proto3 JSON (snake_case). */
export interface DiscoveryRequest {
  version_info?: string;
  node?: Node;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: RpcStatus;
}

export interface DeltaDiscoveryRequest {
  node?: Node;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: RpcStatus;
}

/** envoy.service.discovery.v3.DiscoveryResponse; each resource goes as an Any of `typeUrl`. */
export interface DiscoveryResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: EncodedResource[];
}

/** envoy.service.discovery.v3.DeltaDiscoveryResponse; each resource goes as a Resource (name, version, Any). */
export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: EncodedResource[];
  removedResources: string[];
}

const PACKAGE = "envoy.service.discovery.v3";

function schema(name: string) {
  const descriptor = envoyRegistry().getMessage(`${PACKAGE}.${name}`);
  if (!descriptor) throw new Error(`${PACKAGE}.${name} is missing from the loaded protos`);
  return descriptor;
}

/** The fields both request kinds share, as the library decodes them (camelCase, defaults filled in). */
interface DecodedRequest {
  node?: object;
  typeUrl: string;
  responseNonce: string;
  errorDetail?: { code: number; message: string };
}

/** A request's fields in proto3 JSON form (what toJson gives: snake_case, default values left out), read directly:
 * a state-of-the-world ACK repeats every resource name it subscribes to, a thousand for a gateway of a large mesh,
 * and converting each request through toJson cost more than serving it. Only the node goes through toJson (its
 * metadata is a google.protobuf.Struct). */
function readShared(descriptor: DescMessage, message: DecodedRequest) {
  const node = message.node ? (toJson(descriptor.fields.find((field) => field.name === "node")!.message!, message.node as never, { useProtoFieldName: true, registry: envoyRegistry() }) as Node) : undefined;
  const error = message.errorDetail;
  return {
    ...(node ? { node } : {}),
    ...(message.typeUrl ? { type_url: message.typeUrl } : {}),
    ...(message.responseNonce ? { response_nonce: message.responseNonce } : {}),
    ...(error ? { error_detail: { ...(error.code ? { code: error.code } : {}), ...(error.message ? { message: error.message } : {}) } } : {}),
  };
}

function readRequest(bytes: Buffer): DiscoveryRequest {
  const descriptor = schema("DiscoveryRequest");
  const message = fromBinary(descriptor, bytes) as unknown as DecodedRequest & { versionInfo: string; resourceNames: string[] };
  return {
    ...readShared(descriptor, message),
    ...(message.versionInfo ? { version_info: message.versionInfo } : {}),
    ...(message.resourceNames.length > 0 ? { resource_names: message.resourceNames } : {}),
  };
}

function readDeltaRequest(bytes: Buffer): DeltaDiscoveryRequest {
  const descriptor = schema("DeltaDiscoveryRequest");
  const message = fromBinary(descriptor, bytes) as unknown as DecodedRequest & {
    resourceNamesSubscribe: string[];
    resourceNamesUnsubscribe: string[];
    initialResourceVersions: Record<string, string>;
  };
  return {
    ...readShared(descriptor, message),
    ...(message.resourceNamesSubscribe.length > 0 ? { resource_names_subscribe: message.resourceNamesSubscribe } : {}),
    ...(message.resourceNamesUnsubscribe.length > 0 ? { resource_names_unsubscribe: message.resourceNamesUnsubscribe } : {}),
    ...(Object.keys(message.initialResourceVersions).length > 0 ? { initial_resource_versions: { ...message.initialResourceVersions } } : {}),
  };
}

/** The protos load on the first response, not on import (the agent imports this module for the method paths). */
function lazily<T>(make: () => (message: T) => Buffer): (message: T) => Buffer {
  let write: ((message: T) => Buffer) | undefined;
  return (message) => (write ??= make())(message);
}

/** A field's number by its proto name, from the loaded descriptor. */
function fieldNumber(descriptor: DescMessage, name: string): number {
  const field = descriptor.fields.find((candidate) => candidate.name === name);
  if (!field) throw new Error(`${descriptor.typeName} has no field ${name}`);
  return field.number;
}

/**
 * A response is mostly its resources, and the same resource goes to every proxy that holds it: each is wrapped
 * once (as the response's repeated Any, or delta's Resource, with its field tag and length) and a response is the
 * concatenation of those pieces between a few header fields. Protobuf lets a message be written as its fields'
 * encodings one after another (https://protobuf.dev/programming-guides/encoding/#structure), so this is the same
 * message bufbuild's toBinary writes, without copying every resource's bytes through a writer per proxy
 * (go-control-plane likewise caches marshaled resources).
 */
class ResponseWriter {
  private readonly pieces = new WeakMap<EncodedResource, { typeUrl: string; bytes: Uint8Array }>();

  constructor(
    private readonly wrap: (writer: BinaryWriter, resource: EncodedResource, typeUrl: string) => void,
  ) {}

  write(head: (writer: BinaryWriter) => void, typeUrl: string, resources: EncodedResource[], tail: (writer: BinaryWriter) => void): Buffer {
    const parts: Uint8Array[] = [];
    const headWriter = new BinaryWriter();
    head(headWriter);
    parts.push(headWriter.finish());
    for (const resource of resources) parts.push(this.piece(resource, typeUrl));
    const tailWriter = new BinaryWriter();
    tail(tailWriter);
    parts.push(tailWriter.finish());
    return Buffer.concat(parts);
  }

  private piece(resource: EncodedResource, typeUrl: string): Uint8Array {
    const known = this.pieces.get(resource);
    if (known?.typeUrl === typeUrl) return known.bytes;
    const writer = new BinaryWriter();
    this.wrap(writer, resource, typeUrl);
    const bytes = writer.finish();
    this.pieces.set(resource, { typeUrl, bytes });
    return bytes;
  }
}

/** Writes proto3's non-default string fields (an empty string is not written). */
function strings(writer: BinaryWriter, fields: Array<[number, string]>): void {
  for (const [number, value] of fields) if (value !== "") writer.tag(number, WireType.LengthDelimited).string(value);
}

function writeAny(writer: BinaryWriter, typeUrl: string, value: Uint8Array): void {
  const any = schema("DiscoveryResponse").fields.find((field) => field.name === "resources")!.message!;
  writer.fork();
  strings(writer, [[fieldNumber(any, "type_url"), typeUrl]]);
  if (value.length > 0) writer.tag(fieldNumber(any, "value"), WireType.LengthDelimited).bytes(value);
  writer.join();
}

function sotwWriter(): (message: DiscoveryResponse) => Buffer {
  const descriptor = schema("DiscoveryResponse");
  const field = (name: string) => fieldNumber(descriptor, name);
  const [versionInfo, resources, typeUrlField, nonce] = [field("version_info"), field("resources"), field("type_url"), field("nonce")];
  const pieces = new ResponseWriter((writer, resource, typeUrl) => writeAny(writer.tag(resources, WireType.LengthDelimited), typeUrl, resource.bytes));
  return (message) =>
    pieces.write(
      (writer) => strings(writer, [[versionInfo, message.versionInfo]]),
      message.typeUrl,
      message.resources,
      (writer) => strings(writer, [[typeUrlField, message.typeUrl], [nonce, message.nonce]]),
    );
}

function deltaWriter(): (message: DeltaDiscoveryResponse) => Buffer {
  const descriptor = schema("DeltaDiscoveryResponse");
  const field = (name: string) => fieldNumber(descriptor, name);
  const [systemVersionInfo, resources, typeUrlField, nonce, removedResources] = [
    field("system_version_info"),
    field("resources"),
    field("type_url"),
    field("nonce"),
    field("removed_resources"),
  ];
  const resourceMessage = descriptor.fields.find((candidate) => candidate.name === "resources")!.message!;
  const [version, resourceField, name] = [fieldNumber(resourceMessage, "version"), fieldNumber(resourceMessage, "resource"), fieldNumber(resourceMessage, "name")];
  const pieces = new ResponseWriter((writer, resource, typeUrl) => {
    writer.tag(resources, WireType.LengthDelimited).fork();
    strings(writer, [[version, resource.version]]);
    writeAny(writer.tag(resourceField, WireType.LengthDelimited), typeUrl, resource.bytes);
    strings(writer, [[name, resource.name]]);
    writer.join();
  });
  return (message) =>
    pieces.write(
      (writer) => strings(writer, [[systemVersionInfo, message.systemVersionInfo]]),
      message.typeUrl,
      message.resources,
      (writer) => {
        strings(writer, [[typeUrlField, message.typeUrl], [nonce, message.nonce]]);
        for (const removed of message.removedResources) writer.tag(removedResources, WireType.LengthDelimited).string(removed);
      },
    );
}

function method<Request, Response extends object>(
  name: string,
  requestDeserialize: (bytes: Buffer) => Request,
  responseSerialize: (message: Response) => Buffer,
  service = `${PACKAGE}.AggregatedDiscoveryService`,
): MethodDefinition<Request, Response> {
  return {
    path: `/${service}/${name}`,
    requestStream: true,
    responseStream: true,
    requestDeserialize,
    requestSerialize: () => {
      throw new Error("the server does not send requests");
    },
    responseSerialize,
    responseDeserialize: () => {
      throw new Error("the server does not read responses");
    },
  };
}

/** The responses as the server writes them (exported for the test that reads them back with the protobuf library). */
export const writeDiscoveryResponse = lazily(sotwWriter);
export const writeDeltaDiscoveryResponse = lazily(deltaWriter);

/** AggregatedDiscoveryService (envoy/service/discovery/v3/ads.proto) for @grpc/grpc-js's Server.addService. */
export const aggregatedDiscoveryService = {
  StreamAggregatedResources: method<DiscoveryRequest, DiscoveryResponse>("StreamAggregatedResources", readRequest, writeDiscoveryResponse),
  DeltaAggregatedResources: method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>("DeltaAggregatedResources", readDeltaRequest, writeDeltaDiscoveryResponse),
} satisfies ServiceDefinition;

/** SecretDiscoveryService (envoy/service/secret/v3/sds.proto): the same messages as ADS, for a proxy's `sds_config`
 * with its own gRPC service (what istio-agent serves Envoy on a Unix socket). */
const SDS = "envoy.service.secret.v3.SecretDiscoveryService";
export const secretDiscoveryService = {
  StreamSecrets: method<DiscoveryRequest, DiscoveryResponse>("StreamSecrets", readRequest, writeDiscoveryResponse, SDS),
  DeltaSecrets: method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>("DeltaSecrets", readDeltaRequest, writeDeltaDiscoveryResponse, SDS),
} satisfies ServiceDefinition;
