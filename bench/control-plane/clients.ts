// Simulated proxies for the control-plane benchmark: COUNT ADS clients (state of the world), each its own gRPC
// channel and node id, subscribing like Envoy (CDS and LDS wildcard, EDS for every EDS cluster, RDS by name) and
// ACKing every response. Runs in its own process so that its cost and memory stay out of the server's numbers.
// Usage: node --import tsx bench/control-plane/clients.ts PORT COUNT ROUTE_NAME [NAMESPACE]
import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Client, credentials } from "@grpc/grpc-js";
import { envoyRegistry } from "../../control/protos/registry.js";
import { TypeUrl } from "../../control/resources.js";

const [port, count, routeName, namespace] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4], process.argv[5]];
/** EDS cluster names by CDS version: a version is a hash of the content, so every client decodes each version once. */
const edsNamesByVersion = new Map<string, string[]>();
const registry = envoyRegistry();
const Request = registry.getMessage("envoy.service.discovery.v3.DiscoveryRequest")!;
const Response = registry.getMessage("envoy.service.discovery.v3.DiscoveryResponse")!;
const Cluster = registry.getMessage("envoy.config.cluster.v3.Cluster")!;

interface DecodedResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  /** Each resource's Any, still encoded: only a new CDS version's are read (for the EDS cluster names). */
  resources: Uint8Array[];
}

const field = (name: string) => Response.fields.find((candidate) => candidate.name === name)!.number;
const [VERSION_INFO, RESOURCES, TYPE_URL, NONCE] = [field("version_info"), field("resources"), field("type_url"), field("nonce")];
const Any = Response.fields.find((candidate) => candidate.name === "resources")!.message!;

/** The response's header fields; the resources are left encoded. A simulated proxy stands for an Envoy on another
 * machine: decoding a thousand clusters and endpoint sets per response here would spend the shared CPUs on the
 * load generator rather than on the control plane it measures. */
function readResponse(bytes: Buffer): DecodedResponse {
  const reader = new BinaryReader(bytes);
  const response: DecodedResponse = { versionInfo: "", typeUrl: "", nonce: "", resources: [] };
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === VERSION_INFO) response.versionInfo = reader.string();
    else if (number === TYPE_URL) response.typeUrl = reader.string();
    else if (number === NONCE) response.nonce = reader.string();
    else if (number === RESOURCES) response.resources.push(reader.bytes());
    else reader.skip(wireType as WireType);
  }
  return response;
}

function connect(index: number): void {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const stream = client.makeBidiStreamRequest(
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    // The first request is a message already (fromJson: its node metadata is a google.protobuf.Struct).
    (message: object) => Buffer.from(toBinary(Request, "$typeName" in message ? (message as never) : create(Request, message as never))),
    readResponse,
  );
  const metadata = { ROLE: "gateway", LABELS: { istio: "ingressgateway" }, ...(namespace ? { NAMESPACE: namespace } : {}) };
  const first = fromJson(Request, { node: { id: `sim-${index}`, metadata }, typeUrl: TypeUrl.Cluster }, { registry });
  let endpointNames: string[] = [];
  stream.on("data", (response: DecodedResponse) => {
    let names: string[] = [];
    if (response.typeUrl === TypeUrl.ClusterLoadAssignment) names = endpointNames;
    if (response.typeUrl === TypeUrl.RouteConfiguration) names = [routeName];
    stream.write({ typeUrl: response.typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce, resourceNames: names });
    if (response.typeUrl === TypeUrl.Cluster) {
      const next = edsNamesByVersion.get(response.versionInfo) ?? edsClusterNames(response);
      edsNamesByVersion.set(response.versionInfo, next);
      if (next.join() !== endpointNames.join()) {
        endpointNames = next;
        stream.write({ typeUrl: TypeUrl.ClusterLoadAssignment, resourceNames: endpointNames });
      }
    }
    if (response.typeUrl === TypeUrl.Listener && !subscribedRoutes) {
      subscribedRoutes = true;
      stream.write({ typeUrl: TypeUrl.RouteConfiguration, resourceNames: [routeName] });
    }
  });
  let subscribedRoutes = false;
  stream.on("error", () => {});
  stream.write(first);
  stream.write({ typeUrl: TypeUrl.Listener });
}

function edsClusterNames(response: DecodedResponse): string[] {
  const clusters = response.resources.map(
    (resource) => fromBinary(Cluster, (fromBinary(Any, resource) as unknown as { value: Uint8Array }).value) as unknown as { name: string; clusterDiscoveryType: { case?: string; value?: number } },
  );
  // Cluster.DiscoveryType EDS = 3 (the field `type` sits in the oneof cluster_discovery_type).
  return clusters
    .filter((cluster) => cluster.clusterDiscoveryType.case === "type" && cluster.clusterDiscoveryType.value === 3)
    .map((cluster) => cluster.name)
    .sort();
}

for (let i = 0; i < count; i++) connect(i);
process.send?.("connected");
