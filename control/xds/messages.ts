// The ADS wire messages (DiscoveryRequest/Response and their delta forms), read into plain objects and written
// from already-encoded resources, with the gRPC method definitions of AggregatedDiscoveryService.
import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { envoyRegistry } from "../protos/registry.js";

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

export interface DiscoveryResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: Array<{ typeUrl: string; value: Uint8Array }>;
}

export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: Array<{ name: string; version: string; resource: { typeUrl: string; value: Uint8Array } }>;
  removedResources: string[];
}

const PACKAGE = "envoy.service.discovery.v3";

function schema(name: string) {
  const descriptor = envoyRegistry().getMessage(`${PACKAGE}.${name}`);
  if (!descriptor) throw new Error(`${PACKAGE}.${name} is missing from the loaded protos`);
  return descriptor;
}

function reader<T>(name: string): (bytes: Buffer) => T {
  return (bytes) => {
    const descriptor = schema(name);
    return toJson(descriptor, fromBinary(descriptor, bytes), { useProtoFieldName: true, registry: envoyRegistry() }) as T;
  };
}

function writer<T extends object>(name: string): (message: T) => Buffer {
  return (message) => {
    const descriptor = schema(name);
    return Buffer.from(toBinary(descriptor, create(descriptor, message as never)));
  };
}

function method<Request, Response extends object>(name: string, request: string, response: string, service = `${PACKAGE}.AggregatedDiscoveryService`): MethodDefinition<Request, Response> {
  return {
    path: `/${service}/${name}`,
    requestStream: true,
    responseStream: true,
    requestDeserialize: reader<Request>(request),
    requestSerialize: () => {
      throw new Error("the server does not send requests");
    },
    responseSerialize: writer<Response>(response),
    responseDeserialize: () => {
      throw new Error("the server does not read responses");
    },
  };
}

/** AggregatedDiscoveryService (envoy/service/discovery/v3/ads.proto) for @grpc/grpc-js's Server.addService. */
export const aggregatedDiscoveryService = {
  StreamAggregatedResources: method<DiscoveryRequest, DiscoveryResponse>("StreamAggregatedResources", "DiscoveryRequest", "DiscoveryResponse"),
  DeltaAggregatedResources: method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>(
    "DeltaAggregatedResources",
    "DeltaDiscoveryRequest",
    "DeltaDiscoveryResponse",
  ),
} satisfies ServiceDefinition;

/** SecretDiscoveryService (envoy/service/secret/v3/sds.proto): the same messages as ADS, for a proxy's `sds_config`
 * with its own gRPC service (what istio-agent serves Envoy on a Unix socket). */
const SDS = "envoy.service.secret.v3.SecretDiscoveryService";
export const secretDiscoveryService = {
  StreamSecrets: method<DiscoveryRequest, DiscoveryResponse>("StreamSecrets", "DiscoveryRequest", "DiscoveryResponse", SDS),
  DeltaSecrets: method<DeltaDiscoveryRequest, DeltaDiscoveryResponse>("DeltaSecrets", "DeltaDiscoveryRequest", "DeltaDiscoveryResponse", SDS),
} satisfies ServiceDefinition;
