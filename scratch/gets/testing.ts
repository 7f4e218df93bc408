// Helpers for the istio-stats emulator tests: loading the filter, Istio's encodings of a peer (built with a real
// protobuf library), istiod's endpoint metadata, and reading back the metrics as Envoy's stats_tags would.
import { create, fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { AnySchema, StructSchema } from "@bufbuild/protobuf/wkt";
import { expect } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";

export const WASM = "build/filters/istio-stats.wasm";
const STRUCT_TYPE_URL = "type.googleapis.com/google.protobuf.Struct";

export interface PeerLabels {
  workload: string;
  namespace: string;
  app: string;
  version: string;
}

export async function load(config: object): Promise<Emulator> {
  const vm = await Emulator.load(WASM, { pluginConfig: config, logLevel: "info" });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

/** A node's metadata as Istio's proxies describe themselves: a google.protobuf.Struct. */
function nodeMetadata(peer: PeerLabels) {
  return {
    NAMESPACE: peer.namespace,
    WORKLOAD_NAME: peer.workload,
    CLUSTER_ID: "Kubernetes",
    MESH_ID: "cluster.local",
    LABELS: { app: peer.app, version: peer.version, "security.istio.io/tlsMode": "istio" },
    PLATFORM_METADATA: {},
  };
}

/** Istio's HTTP encoding of a node's metadata: base64 of a serialized google.protobuf.Struct. */
export function peerHeader(peer: PeerLabels): string {
  return Buffer.from(toBinary(StructSchema, fromJson(StructSchema, nodeMetadata(peer)))).toString("base64");
}

/** Istio's TCP exchange frame (istio/proxy metadata_exchange.cc): magic 0x3D230467 and the payload's length, both
 * big-endian u32, then a google.protobuf.Any of a Struct { x-envoy-peer-metadata, x-envoy-peer-metadata-id }. */
export function exchangeFrame(peer: PeerLabels, id = `${peer.workload}.${peer.namespace}`): Buffer {
  const struct = fromJson(StructSchema, { "x-envoy-peer-metadata": nodeMetadata(peer), "x-envoy-peer-metadata-id": id });
  const any = toBinary(AnySchema, create(AnySchema, { typeUrl: STRUCT_TYPE_URL, value: toBinary(StructSchema, struct) }));
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0x3d230467, 0);
  header.writeUInt32BE(any.length, 4);
  return Buffer.concat([header, any]);
}

/** A frame decoded with the protobuf library: its header fields, the Any's type, and the Struct as JSON. */
export function decodeExchangeFrame(frame: Uint8Array): { magic: number; length: number; typeUrl: string; struct: unknown; rest: Buffer } {
  const bytes = Buffer.from(frame);
  const length = bytes.readUInt32BE(4);
  const any = fromBinary(AnySchema, bytes.subarray(8, 8 + length));
  return {
    magic: bytes.readUInt32BE(0),
    length,
    typeUrl: any.typeUrl,
    struct: toJson(StructSchema, fromBinary(StructSchema, any.value)),
    rest: bytes.subarray(8 + length),
  };
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  return [...out, value];
}

/** envoy.config.core.v3.Metadata { filter_metadata = 1 (map<string, Struct>) } with istiod's endpoint entry. */
export function endpointMetadata(workload: string): Uint8Array {
  const struct = toBinary(StructSchema, fromJson(StructSchema, { workload }));
  const entry = [0x0a, ...varint(5), ...Buffer.from("istio"), 0x12, ...varint(struct.length), ...struct];
  return Uint8Array.from([0x0a, ...varint(entry.length), ...entry]);
}

export interface IstioMetric {
  metric: string;
  labels: Record<string, string>;
  name: string;
}

/** The metrics the filter defined, read back the way Envoy's stats_tags regexes read them. */
export function istioMetrics(vm: Emulator, metric: string): IstioMetric[] {
  return vm.metrics
    .names()
    .filter((name) => name.endsWith(`;.;${metric}`))
    .map((name) => {
      const labels: Record<string, string> = {};
      for (const part of name.split(";.;").slice(0, -1)) {
        const [key, value] = part.split("=.=");
        labels[key!] = value!;
      }
      return { metric, labels, name };
    });
}

export function only(vm: Emulator, metric: string): IstioMetric {
  const found = istioMetrics(vm, metric);
  expect(found, `one ${metric}`).toHaveLength(1);
  return found[0]!;
}
