// Simulated proxies for the control-plane benchmark: COUNT ADS clients (state of the world), each its own gRPC
// channel and node id, subscribing like Envoy (CDS and LDS wildcard, EDS for every EDS cluster, RDS by name) and
// ACKing every response. Runs in its own process so that its cost and memory stay out of the server's numbers.
// Usage: node --import tsx bench/control-plane/clients.ts PORT COUNT ROUTE_NAME
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, credentials } from "@grpc/grpc-js";
import { envoyRegistry } from "../../control/protos/registry.js";
import { TypeUrl } from "../../control/resources.js";

const [port, count, routeName] = [Number(process.argv[2]), Number(process.argv[3]), process.argv[4]];
const registry = envoyRegistry();
const Request = registry.getMessage("envoy.service.discovery.v3.DiscoveryRequest")!;
const Response = registry.getMessage("envoy.service.discovery.v3.DiscoveryResponse")!;
const Cluster = registry.getMessage("envoy.config.cluster.v3.Cluster")!;

interface DecodedResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: Array<{ value: Uint8Array }>;
}

function connect(index: number): void {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  const stream = client.makeBidiStreamRequest(
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    (message: object) => Buffer.from(toBinary(Request, create(Request, message as never))),
    (bytes: Buffer) => fromBinary(Response, bytes) as unknown as DecodedResponse,
  );
  const node = { id: `sim-${index}`, metadata: { fields: { ROLE: { kind: { case: "stringValue", value: "gateway" } }, LABELS: { kind: { case: "structValue", value: { fields: { istio: { kind: { case: "stringValue", value: "ingressgateway" } } } } } } } } };
  let endpointNames: string[] = [];
  stream.on("data", (response: DecodedResponse) => {
    let names: string[] = [];
    if (response.typeUrl === TypeUrl.ClusterLoadAssignment) names = endpointNames;
    if (response.typeUrl === TypeUrl.RouteConfiguration) names = [routeName];
    stream.write({ typeUrl: response.typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce, resourceNames: names });
    if (response.typeUrl === TypeUrl.Cluster) {
      const clusters = response.resources.map(
        (resource) => fromBinary(Cluster, resource.value) as unknown as { name: string; clusterDiscoveryType: { case?: string; value?: number } },
      );
      // Cluster.DiscoveryType EDS = 3 (the field `type` sits in the oneof cluster_discovery_type).
      const next = clusters
        .filter((cluster) => cluster.clusterDiscoveryType.case === "type" && cluster.clusterDiscoveryType.value === 3)
        .map((cluster) => cluster.name)
        .sort();
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
  stream.write({ node, typeUrl: TypeUrl.Cluster });
  stream.write({ typeUrl: TypeUrl.Listener });
}

for (let i = 0; i < count; i++) connect(i);
process.send?.("connected");
