// The xDS server writes each response from resource pieces encoded once for every proxy (control/xds/messages.ts):
// what it writes must be the message the protobuf library writes from the same content, field for field. Requests
// are read without the library's JSON conversion: what they read must be what that conversion gives.
import { create, fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { envoyRegistry } from "../../control/protos/registry.js";
import { TypeUrl } from "../../control/resources.js";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import { aggregatedDiscoveryService, writeDeltaDiscoveryResponse, writeDiscoveryResponse } from "../../control/xds/messages.js";
import { meshResources } from "./fixtures.js";

const registry = envoyRegistry();
const schema = (name: string) => registry.getMessage(`envoy.service.discovery.v3.${name}`)!;
const read = (name: string, bytes: Uint8Array) => toJson(schema(name), fromBinary(schema(name), bytes), { registry });
const library = (name: string, message: object) => toBinary(schema(name), create(schema(name), message as never));

describe("xDS responses", () => {
  const snapshot = new SnapshotCache().set("p", meshResources({ clusters: { a: [1, 2], b: [3] }, routeTo: "a" }));
  const clusters = [...snapshot.resources.get(TypeUrl.Cluster)!.values()];
  const endpoints = [...snapshot.resources.get(TypeUrl.ClusterLoadAssignment)!.values()];

  it("writes a state-of-the-world response as the protobuf library does, and again the same for another proxy", () => {
    for (const [typeUrl, resources] of [[TypeUrl.Cluster, clusters], [TypeUrl.ClusterLoadAssignment, endpoints], [TypeUrl.Listener, []]] as const) {
      const message = { versionInfo: "v1", typeUrl, nonce: "7", resources: [...resources] };
      const written = writeDiscoveryResponse(message);
      const expected = library("DiscoveryResponse", { ...message, resources: resources.map((resource) => ({ typeUrl, value: resource.bytes })) });
      expect(read("DiscoveryResponse", written)).toEqual(read("DiscoveryResponse", expected));
      expect(Buffer.compare(writeDiscoveryResponse({ ...message, nonce: "7" }), written)).toBe(0);
      expect(written.length).toBe(expected.length);
    }
    // The resources unpack to what the snapshot holds (the Any's type and bytes).
    const decoded = read("DiscoveryResponse", writeDiscoveryResponse({ versionInfo: "v", typeUrl: TypeUrl.Cluster, nonce: "1", resources: clusters })) as { resources: Array<{ name: string }> };
    expect(decoded.resources.map((resource) => resource.name)).toEqual(clusters.map((cluster) => cluster.name));
  });

  it("writes a delta response as the protobuf library does: resources with name and version, removed names", () => {
    const message = { systemVersionInfo: "abc", typeUrl: TypeUrl.ClusterLoadAssignment, nonce: "3", resources: endpoints, removedResources: ["gone", "also-gone"] };
    const written = writeDeltaDiscoveryResponse(message);
    const expected = library("DeltaDiscoveryResponse", {
      ...message,
      resources: endpoints.map((resource) => ({ name: resource.name, version: resource.version, resource: { typeUrl: message.typeUrl, value: resource.bytes } })),
    });
    expect(read("DeltaDiscoveryResponse", written)).toEqual(read("DeltaDiscoveryResponse", expected));
    expect(written.length).toBe(expected.length);
  });

  it("reads requests as the library's proto3 JSON form: node with Struct metadata and locality, names, nonce, NACK", () => {
    const node = { id: "p1", cluster: "c", metadata: { ROLE: "gateway", LABELS: { app: "a" }, N: 3 }, locality: { region: "r", subZone: "s" } };
    const requests = {
      DiscoveryRequest: [
        { node, typeUrl: TypeUrl.Cluster },
        { versionInfo: "v1", typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: "4", resourceNames: ["a", "b"] },
        { typeUrl: TypeUrl.Listener, responseNonce: "5", errorDetail: { code: 3, message: "bad listener" } },
        { typeUrl: TypeUrl.Listener, responseNonce: "6", errorDetail: {} },
        {},
      ],
      DeltaDiscoveryRequest: [
        { node, typeUrl: TypeUrl.Cluster, initialResourceVersions: { a: "1" }, resourceNamesSubscribe: ["*"] },
        { typeUrl: TypeUrl.ClusterLoadAssignment, responseNonce: "2", resourceNamesUnsubscribe: ["a"], errorDetail: { message: "no" } },
      ],
    };
    const methods = { DiscoveryRequest: aggregatedDiscoveryService.StreamAggregatedResources, DeltaDiscoveryRequest: aggregatedDiscoveryService.DeltaAggregatedResources };
    for (const [name, list] of Object.entries(requests) as Array<[keyof typeof methods, object[]]>) {
      for (const request of list) {
        const bytes = Buffer.from(toBinary(schema(name), fromJson(schema(name), request as never, { registry })));
        const expected = toJson(schema(name), fromBinary(schema(name), bytes), { useProtoFieldName: true, registry });
        expect(methods[name].requestDeserialize(bytes)).toEqual(expected);
      }
    }
  });
});
