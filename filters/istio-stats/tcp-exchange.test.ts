// Istio's TCP metadata exchange in istio-stats, in the host emulator: the frame each side writes (decoded with a real
// protobuf library), taking the peer's frame off the stream whole or in pieces so the application sees exactly its
// own bytes, when each side speaks (the source only over mesh mTLS, the destination only to a source that spoke
// first), and the labels it gives the TCP metrics. test/observability/tcp-exchange-pods.test.ts shows it
// between two real sidecars.
import { describe, expect, it } from "vitest";
import type { TcpConnection } from "../../sdk/testing/index.js";
import { decodeExchangeFrame, endpointMetadata, exchangeFrame, istioMetrics, load, only } from "./testing.js";

const CATALOG_V2 = { workload: "catalog-v2", namespace: "shop", app: "catalog", version: "v2" };
const WEBAPP = { workload: "webapp", namespace: "shop", app: "webapp", version: "v1" };
const WEBAPP_ID = "spiffe://cluster.local/ns/shop/sa/webapp";
const CATALOG_ID = "spiffe://cluster.local/ns/shop/sa/catalog";
const CLUSTER = "outbound|5432||catalog.shop.svc.cluster.local";

/** A source's connection to a catalog endpoint: mesh mTLS (both certificates SPIFFE IDs) unless told otherwise. */
function toUpstream(connection: TcpConnection, upstream: { mtls?: boolean; localCertificate?: string } = {}): TcpConnection {
  connection.setProperty(["xds", "cluster_name"], CLUSTER);
  // The endpoint metadata names catalog-v1: a destination labelled v2 came from the frame.
  connection.setProperty(["xds", "upstream_host_metadata"], endpointMetadata("catalog-v1;shop;catalog;v1;Kubernetes"));
  if (upstream.mtls !== false) {
    connection.setProperty(["upstream", "uri_san_peer_certificate"], CATALOG_ID);
    connection.setProperty(["upstream", "uri_san_local_certificate"], upstream.localCertificate ?? WEBAPP_ID);
  }
  return connection;
}

/** A destination's connection from a client: mutual TLS with the webapp's certificate unless told otherwise. */
function fromClient(connection: TcpConnection, mtls = true): TcpConnection {
  connection.setProperty(["connection", "mtls"], mtls);
  if (mtls) {
    connection.setProperty(["connection", "uri_san_peer_certificate"], WEBAPP_ID);
    connection.setProperty(["connection", "uri_san_local_certificate"], CATALOG_ID);
  }
  return connection;
}

const close = (connection: TcpConnection) => {
  connection.closeDownstream();
  connection.closeUpstream();
};

describe("the TCP metadata exchange at the source", () => {
  it("puts Istio's frame in front of the first bytes to a sidecar, with its node metadata and id", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const connection = toUpstream(vm.tcp());
    connection.sendDownstreamData("SELECT 1;");
    connection.sendDownstreamData("SELECT 2;");
    const sent = decodeExchangeFrame(connection.downstream.receivedBytes);
    expect(sent).toMatchObject({ magic: 0x3d230467, typeUrl: "type.googleapis.com/google.protobuf.Struct" });
    expect(sent.struct).toEqual({
      "x-envoy-peer-metadata": {
        CLUSTER_ID: "Kubernetes",
        NAME: "webapp",
        NAMESPACE: "shop",
        WORKLOAD_NAME: "webapp",
        LABELS: { app: "webapp", version: "v1", "service.istio.io/canonical-name": "webapp", "service.istio.io/canonical-revision": "v1" },
      },
      "x-envoy-peer-metadata-id": "webapp.shop",
    });
    // Once, at the start: the second write passes as it is.
    expect(sent.rest.toString()).toBe("SELECT 1;SELECT 2;");
  });

  it("takes the destination's frame off what comes back and labels the destination from it", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const connection = toUpstream(vm.tcp());
    connection.sendDownstreamData("ping\n");
    connection.sendUpstreamData(Buffer.concat([exchangeFrame(CATALOG_V2), Buffer.from("pong\n")]));
    connection.sendUpstreamData("more\n");
    close(connection);
    expect(connection.upstream.received).toBe("pong\nmore\n");
    const opened = only(vm, "istio_tcp_connections_opened_total");
    expect(opened.labels).toMatchObject({
      reporter: "source",
      source_workload: "webapp",
      source_principal: WEBAPP_ID,
      destination_workload: "catalog-v2",
      destination_version: "v2",
      destination_principal: CATALOG_ID,
      destination_service: "catalog.shop.svc.cluster.local",
    });
    const tags = opened.name.slice(0, -"istio_tcp_connections_opened_total".length);
    // The application's bytes only, not the frames.
    expect(vm.metric(`${tags}istio_tcp_received_bytes_total`)).toBe(5);
    expect(vm.metric(`${tags}istio_tcp_sent_bytes_total`)).toBe(10);
  });

  it("reassembles a frame that arrives in pieces, passing nothing on until it is whole", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const connection = toUpstream(vm.tcp());
    connection.sendDownstreamData("ping\n");
    const reply = Buffer.concat([exchangeFrame(CATALOG_V2), Buffer.from("pong\n")]);
    for (const [from, to] of [[0, 1], [1, 6], [6, 20], [20, reply.length]]) connection.sendUpstreamData(reply.subarray(from, to));
    close(connection);
    expect(connection.upstream.received).toBe("pong\n");
    expect(only(vm, "istio_tcp_connections_opened_total").labels.destination_workload).toBe("catalog-v2");
  });

  it("passes a reply without a frame untouched, even one that starts like the magic, and falls back to the endpoint", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const connection = toUpstream(vm.tcp());
    connection.sendDownstreamData("ping\n");
    // 0x3d 0x23 are the magic's first bytes: held, then given back in front of the next bytes.
    connection.sendUpstreamData(Uint8Array.from([0x3d, 0x23]));
    connection.sendUpstreamData("xyz");
    close(connection);
    expect(Buffer.from(connection.upstream.receivedBytes)).toEqual(Buffer.from([0x3d, 0x23, ...Buffer.from("xyz")]));
    expect(only(vm, "istio_tcp_connections_opened_total").labels).toMatchObject({ destination_workload: "catalog-v1", destination_version: "v1" });
  });

  it("writes nothing over plain text, or over TLS with a certificate of its own (DestinationRule MUTUAL)", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    for (const upstream of [{ mtls: false }, { localCertificate: "https://client.example.com" }]) {
      const connection = toUpstream(vm.tcp(), upstream);
      connection.sendDownstreamData("ping\n");
      connection.sendUpstreamData(Uint8Array.from([0x3d, 0x23, 0x04, 0x67, 0, 0, 0, 0]));
      close(connection);
      expect(connection.downstream.received).toBe("ping\n");
      // Not expecting a frame, it takes nothing off the reply either.
      expect(connection.upstream.receivedBytes).toHaveLength(8);
    }
  });

  it("writes nothing with exchange off", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP, exchange: false });
    const connection = toUpstream(vm.tcp());
    connection.sendDownstreamData("ping\n");
    close(connection);
    expect(connection.downstream.received).toBe("ping\n");
  });
});

describe("the TCP metadata exchange at the destination", () => {
  it("takes the source's frame off a mutual TLS connection, labels the source from it, and answers with its own", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const connection = fromClient(vm.tcp());
    connection.sendDownstreamData(Buffer.concat([exchangeFrame(WEBAPP), Buffer.from("ping\n")]));
    connection.sendUpstreamData("pong\n");
    connection.sendUpstreamData("more\n");
    close(connection);
    expect(connection.downstream.received).toBe("ping\n");
    const answer = decodeExchangeFrame(connection.upstream.receivedBytes);
    expect(answer.struct).toMatchObject({ "x-envoy-peer-metadata": { WORKLOAD_NAME: "catalog-v2", NAMESPACE: "shop" }, "x-envoy-peer-metadata-id": "catalog-v2.shop" });
    expect(answer.rest.toString()).toBe("pong\nmore\n");
    const opened = only(vm, "istio_tcp_connections_opened_total");
    expect(opened.labels).toMatchObject({
      reporter: "destination",
      source_workload: "webapp",
      source_workload_namespace: "shop",
      source_app: "webapp",
      source_version: "v1",
      source_principal: WEBAPP_ID,
      destination_workload: "catalog-v2",
      destination_principal: CATALOG_ID,
      connection_security_policy: "mutual_tls",
    });
    const tags = opened.name.slice(0, -"istio_tcp_connections_opened_total".length);
    expect(vm.metric(`${tags}istio_tcp_received_bytes_total`)).toBe(5);
    expect(vm.metric(`${tags}istio_tcp_sent_bytes_total`)).toBe(10);
  });

  it("names each caller from its own frame, connection after connection (decoded payloads are reused)", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const callers = [WEBAPP, { ...WEBAPP, workload: "reports-v3", app: "reports", version: "v3" }, WEBAPP, WEBAPP];
    for (const caller of callers) {
      const connection = fromClient(vm.tcp());
      connection.sendDownstreamData(Buffer.concat([exchangeFrame(caller), Buffer.from("ping\n")]));
      close(connection);
      expect(connection.downstream.received).toBe("ping\n");
    }
    const opened = istioMetrics(vm, "istio_tcp_connections_opened_total").map((m) => [m.labels.source_workload, m.labels.source_version, vm.metric(m.name)]);
    expect(opened.sort()).toEqual([["reports-v3", "v3", 1], ["webapp", "v1", 3]]);
  });

  it("takes a frame that comes byte by byte", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const connection = fromClient(vm.tcp());
    const bytes = Buffer.concat([exchangeFrame(WEBAPP), Buffer.from("ping\n")]);
    for (let i = 0; i < bytes.length; i++) connection.sendDownstreamData(bytes.subarray(i, i + 1));
    close(connection);
    expect(connection.downstream.received).toBe("ping\n");
    expect(only(vm, "istio_tcp_connections_opened_total").labels.source_workload).toBe("webapp");
  });

  it("answers nothing to a client that sent no frame, and touches nothing over plain text", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const silent = fromClient(vm.tcp());
    silent.sendDownstreamData("ping\n");
    silent.sendUpstreamData("pong\n");
    close(silent);
    expect([silent.downstream.received, silent.upstream.received]).toEqual(["ping\n", "pong\n"]);
    const plain = fromClient(vm.tcp(), false);
    const framed = Buffer.concat([exchangeFrame(WEBAPP), Buffer.from("ping\n")]);
    plain.sendDownstreamData(framed);
    plain.sendUpstreamData("pong\n");
    close(plain);
    expect(Buffer.from(plain.downstream.receivedBytes)).toEqual(framed);
    expect(plain.upstream.received).toBe("pong\n");
  });

  it("cannot answer once its own application spoke first (a server-first protocol), but still takes the frame", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const connection = fromClient(vm.tcp());
    connection.sendUpstreamData("220 ready\n");
    connection.sendDownstreamData(Buffer.concat([exchangeFrame(WEBAPP), Buffer.from("HELO\n")]));
    connection.sendUpstreamData("250 ok\n");
    close(connection);
    expect(connection.upstream.received).toBe("220 ready\n250 ok\n");
    expect(connection.downstream.received).toBe("HELO\n");
    expect(only(vm, "istio_tcp_connections_opened_total").labels.source_workload).toBe("webapp");
  });

  it("with metrics off, still takes the frame and answers, and records nothing", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2, metrics: false });
    const connection = fromClient(vm.tcp());
    connection.sendDownstreamData(Buffer.concat([exchangeFrame(WEBAPP), Buffer.from("ping\n")]));
    connection.sendUpstreamData("pong\n");
    close(connection);
    expect(connection.downstream.received).toBe("ping\n");
    expect(decodeExchangeFrame(connection.upstream.receivedBytes).rest.toString()).toBe("pong\n");
    expect(vm.metrics.names().filter((name) => name.includes("istio_tcp"))).toEqual([]);
  });
});

describe("two istio-stats filters, source and destination, end to end in the emulator", () => {
  it("each side learns the other, and each application sees exactly its peer's bytes", async () => {
    const [client, server] = await Promise.all([load({ reporter: "source", ...WEBAPP }), load({ reporter: "destination", ...CATALOG_V2 })]);
    const out = toUpstream(client.tcp());
    const into = fromClient(server.tcp());
    out.sendDownstreamData("ping\n");
    into.sendDownstreamData(out.downstream.receivedBytes);
    into.sendUpstreamData("pong\n");
    out.sendUpstreamData(into.upstream.receivedBytes);
    close(out);
    close(into);
    expect([into.downstream.received, out.upstream.received]).toEqual(["ping\n", "pong\n"]);
    expect(only(server, "istio_tcp_connections_opened_total").labels).toMatchObject({ source_workload: "webapp", destination_workload: "catalog-v2" });
    expect(only(client, "istio_tcp_connections_opened_total").labels).toMatchObject({ source_workload: "webapp", destination_workload: "catalog-v2" });
  });
});
