// How the emulator reads a gRPC callout's upstream argument, as Envoy does: a serialized GrpcService when the bytes
// parse as protobuf, a plain cluster name only when they do not.
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { grpcCluster } from "./host-callouts.js";

/** envoy.config.core.v3.GrpcService { envoy_grpc { cluster_name, authority } } */
function grpcService(cluster: string, authority?: string): Uint8Array {
  const envoyGrpc = new BinaryWriter().tag(1, 2).string(cluster);
  if (authority !== undefined) envoyGrpc.tag(2, 2).string(authority);
  return new BinaryWriter().tag(1, 2).bytes(envoyGrpc.finish()).finish();
}

describe("grpcCluster", () => {
  it("reads envoy_grpc.cluster_name from a GrpcService, whatever other fields it carries", () => {
    expect(grpcCluster(grpcService("callout"))).toBe("callout");
    expect(grpcCluster(grpcService("callout", "example.com"))).toBe("callout");
  });

  it("takes bytes that do not parse as protobuf for a plain cluster name", () => {
    // "c" is tag 12 with wire type 3 (a group that never ends): protobuf refuses it, so Envoy uses the name.
    expect(grpcCluster(new TextEncoder().encode("callout"))).toBe("callout");
  });

  it("finds no cluster in a message that parses but names none (Envoy answers BadArgument)", () => {
    expect(grpcCluster(new Uint8Array(0))).toBeNull();
    expect(grpcCluster(new BinaryWriter().tag(3, 2).bytes(new Uint8Array([8, 1])).finish())).toBeNull();
  });
});
