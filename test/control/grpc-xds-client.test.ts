// gRPC's own xDS client (@grpc/grpc-js-xds) against the xDS server: it subscribes by name to every type (LDS, RDS,
// CDS, EDS), so this proves named subscriptions, and that the resources are valid for a second, independent xDS
// implementation: a call to `xds:///echo` reaches a real gRPC server on 127.0.0.1, and follows an endpoint change.
import { type ChannelCredentials, Client, credentials, Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import * as grpcXds from "@grpc/grpc-js-xds";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SnapshotCache } from "../../control/snapshots/cache.js";
import { emptyResources, TypeUrl } from "../../control/resources.js";
import { XdsServer } from "../../control/xds/server.js";

const ECHO = "/skiff.test.Echo/Echo";
const bytes = (buffer: Buffer) => buffer;
const any = (type: string, body: Record<string, unknown>) => ({ "@type": `type.googleapis.com/${type}`, ...body });

async function startEcho(name: string): Promise<{ server: Server; port: number }> {
  const server = new Server();
  server.addService(
    { Echo: { path: ECHO, requestStream: false, responseStream: false, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } },
    { Echo: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => callback(null, Buffer.from(`${name}:${call.request.toString()}`)) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { server, port };
}

function echoResources(port: number) {
  const resources = emptyResources();
  const ads = { ads: {}, resource_api_version: "V3" };
  resources[TypeUrl.Listener].push({
    name: "echo",
    body: {
      name: "echo",
      api_listener: {
        api_listener: any("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", {
          rds: { route_config_name: "echo-routes", config_source: ads },
          http_filters: [{ name: "router", typed_config: any("envoy.extensions.filters.http.router.v3.Router", {}) }],
        }),
      },
    },
  });
  resources[TypeUrl.RouteConfiguration].push({
    name: "echo-routes",
    body: { name: "echo-routes", virtual_hosts: [{ name: "echo", domains: ["*"], routes: [{ match: { prefix: "" }, route: { cluster: "echo-backend" } }] }] },
  });
  resources[TypeUrl.Cluster].push({
    name: "echo-backend",
    body: { name: "echo-backend", type: "EDS", eds_cluster_config: { eds_config: ads }, lb_policy: "ROUND_ROBIN" },
  });
  resources[TypeUrl.ClusterLoadAssignment].push({
    name: "echo-backend",
    body: {
      cluster_name: "echo-backend",
      endpoints: [{ locality: {}, load_balancing_weight: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
    },
  });
  return resources;
}

describe("gRPC's xDS client (@grpc/grpc-js-xds) configured by the xDS server", () => {
  const cache = new SnapshotCache();
  let xds: XdsServer;
  let first: { server: Server; port: number };
  let second: { server: Server; port: number };
  let client: Client;

  const call = (message: string) =>
    new Promise<string>((resolve, reject) =>
      client.makeUnaryRequest(ECHO, bytes, bytes, Buffer.from(message), (error, response) => (error ? reject(error) : resolve(response!.toString()))),
    );

  beforeAll(async () => {
    first = await startEcho("first");
    second = await startEcho("second");
    xds = await XdsServer.start({ cache });
    cache.set("grpc-client", echoResources(first.port));
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${xds.port}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
      node: { id: "grpc-client", locality: {}, metadata: { ROLE: "sidecar" } },
    });
    grpcXds.register();
    client = new Client("xds:///echo", credentials.createInsecure() as ChannelCredentials);
  });

  afterAll(async () => {
    client?.close();
    await xds?.stop();
    first?.server.forceShutdown();
    second?.server.forceShutdown();
  });

  it("resolves xds:///echo through listener, route, cluster and endpoints to the gRPC server", async () => {
    expect(await call("hello")).toBe("first:hello");
    await expect.poll(() => xds.status()[0]?.types).toMatchObject({
      Listener: { status: "SYNCED" },
      RouteConfiguration: { status: "SYNCED" },
      Cluster: { status: "SYNCED" },
      ClusterLoadAssignment: { status: "SYNCED" },
    });
  });

  it("follows an endpoint change pushed to it", async () => {
    cache.set("grpc-client", echoResources(second.port));
    await expect.poll(() => call("again").catch((error: Error) => error.message)).toBe("second:again");
  });
});
