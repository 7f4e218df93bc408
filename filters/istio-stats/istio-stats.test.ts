// istio-stats in the host emulator: Istio's metric names and labels for the source (outbound sidecar, gateway) and
// the destination (inbound sidecar), the metadata exchange headers in Istio's format (checked by decoding them with
// a real protobuf library), the endpoint-metadata fallback for a peer without a sidecar, response flags, gRPC status,
// request and response sizes, and the TCP metrics. test/observability/istio-stats.test.ts runs it in Envoy.
import { fromBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";
import { endpointMetadata, istioMetrics, load, only, peerHeader, WASM } from "./testing.js";

const CATALOG_V2 = { workload: "catalog-v2", namespace: "shop", app: "catalog", version: "v2" };
const WEBAPP = { workload: "webapp", namespace: "shop", app: "webapp", version: "v1" };

describe("istio-stats configuration", () => {
  it("rejects an unknown reporter or field, naming it", async () => {
    for (const [config, message] of [
      [{ reporter: "sideways" }, "reporter"],
      [{ workloadName: "x" }, "workloadName: unknown field"],
      [{ drop: ["istio_requests"] }, "drop[0]: expected one of istio_requests_total, "],
      [{ tagsToRemove: [{ metric: "requests", tags: ["response_code"] }] }, "tagsToRemove[0].metric: expected one of istio_requests_total, "],
    ] as const) {
      const vm = await Emulator.load(WASM, { pluginConfig: config, logLevel: "info" });
      expect(vm.configAccepted).toBe(false);
      expect(vm.logMessages("error")[0]).toContain(`istio-stats: configuration rejected: ${message}`);
    }
  });
});

describe("istio-stats as the source (outbound sidecar, gateway)", () => {
  it("sends its metadata in Istio's headers: a base64 google.protobuf.Struct and an id", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const stream = vm.http();
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/items", ":authority": "catalog" }, { endOfStream: true });
    expect(stream.requestHeaders.get("x-envoy-peer-metadata-id")).toBe("webapp.shop");
    const struct = fromBinary(StructSchema, Buffer.from(stream.requestHeaders.get("x-envoy-peer-metadata")!, "base64"));
    expect(struct.fields.NAMESPACE?.kind).toEqual({ case: "stringValue", value: "shop" });
    expect(struct.fields.WORKLOAD_NAME?.kind).toEqual({ case: "stringValue", value: "webapp" });
    const labels = struct.fields.LABELS?.kind.value as { fields: Record<string, { kind: { value: unknown } }> };
    expect(labels.fields.app?.kind.value).toBe("webapp");
    expect(labels.fields["service.istio.io/canonical-revision"]?.kind.value).toBe("v1");
  });

  it("labels istio_requests_total with both sides, the destination from its response headers, which it removes", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const stream = vm.http();
    stream.setProperty(["xds", "cluster_name"], "outbound|80|version-v2|catalog.shop.svc.cluster.local");
    stream.setProperty(["request", "total_size"], 120);
    stream.setProperty(["response", "total_size"], 3456);
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/items", ":authority": "catalog" }, { endOfStream: true });
    vm.advance(25);
    stream.sendResponseHeaders(
      { ":status": "200", "x-envoy-peer-metadata-id": "catalog-v2.shop", "x-envoy-peer-metadata": peerHeader(CATALOG_V2) },
      { endOfStream: true },
    );
    expect(stream.responseHeaders.has("x-envoy-peer-metadata")).toBe(false);
    expect(stream.responseHeaders.has("x-envoy-peer-metadata-id")).toBe(false);
    const requests = only(vm, "istio_requests_total");
    expect(requests.labels).toEqual({
      reporter: "source",
      source_workload: "webapp",
      source_workload_namespace: "shop",
      source_principal: "unknown",
      source_app: "webapp",
      source_version: "v1",
      source_canonical_service: "webapp",
      source_canonical_revision: "v1",
      source_cluster: "Kubernetes",
      destination_workload: "catalog-v2",
      destination_workload_namespace: "shop",
      destination_principal: "unknown",
      destination_app: "catalog",
      destination_version: "v2",
      destination_service: "catalog.shop.svc.cluster.local",
      destination_service_name: "catalog",
      destination_service_namespace: "shop",
      destination_canonical_service: "catalog",
      destination_canonical_revision: "v2",
      destination_cluster: "Kubernetes",
      request_protocol: "http",
      connection_security_policy: "unknown",
      response_code: "200",
      grpc_response_status: "",
      response_flags: "-",
    });
    expect(vm.metric(requests.name)).toBe(1);
    const tags = requests.name.slice(0, -"istio_requests_total".length);
    expect(vm.histogram(`${tags}istio_request_duration_milliseconds`)).toEqual([25]);
    expect(vm.histogram(`${tags}istio_request_bytes`)).toEqual([120]);
    expect(vm.histogram(`${tags}istio_response_bytes`)).toEqual([3456]);
  });

  it("counts requests with the same labels in one series, and another response code in another", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    for (const status of ["200", "200", "503"]) {
      const stream = vm.http();
      stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog:8080" }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": status }, { endOfStream: true });
    }
    const series = istioMetrics(vm, "istio_requests_total").map((m) => [m.labels.response_code, m.labels.destination_service, vm.metric(m.name)]);
    expect(series.sort()).toEqual([
      ["200", "catalog", 2],
      ["503", "catalog", 1],
    ]);
  });

  it("keeps one series per label set: a request differing in any one label gets its own", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const send = (change: { cluster?: string; san?: string; metadata?: string; flags?: number; grpcStatus?: string } = {}) => {
      const stream = vm.http();
      stream.setProperty(["xds", "cluster_name"], change.cluster ?? "outbound|80||catalog.shop.svc.cluster.local");
      if (change.san) stream.setProperty(["upstream", "uri_san_peer_certificate"], change.san);
      if (change.metadata) stream.setProperty(["xds", "upstream_host_metadata"], endpointMetadata(change.metadata));
      if (change.flags) stream.setProperty(["response", "flags"], change.flags);
      const grpc = change.grpcStatus !== undefined;
      stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog", ...(grpc ? { "content-type": "application/grpc" } : {}) }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": "200", ...(grpc ? { "grpc-status": change.grpcStatus } : {}) }, { endOfStream: true });
    };
    send();
    send({ cluster: "outbound|80||reviews.shop.svc.cluster.local" });
    send({ san: "spiffe://cluster.local/ns/shop/sa/catalog" });
    send({ metadata: "catalog-v1;shop;catalog;v1;Kubernetes" });
    send({ metadata: "catalog-v2;shop;catalog;v2;Kubernetes" });
    send({ flags: 1 << 2 });
    send({ grpcStatus: "0" });
    send({ grpcStatus: "2" });
    send();
    send({ metadata: "catalog-v2;shop;catalog;v2;Kubernetes" });
    const series = istioMetrics(vm, "istio_requests_total").map((m) => [
      m.labels.destination_service_name, m.labels.destination_principal, m.labels.destination_workload, m.labels.response_flags,
      m.labels.request_protocol, m.labels.grpc_response_status, vm.metric(m.name),
    ]);
    expect(series.sort()).toEqual([
      ["catalog", "spiffe://cluster.local/ns/shop/sa/catalog", "unknown", "-", "http", "", 1],
      ["catalog", "unknown", "catalog-v1", "-", "http", "", 1],
      ["catalog", "unknown", "catalog-v2", "-", "http", "", 2],
      ["catalog", "unknown", "unknown", "-", "grpc", "0", 1],
      ["catalog", "unknown", "unknown", "-", "grpc", "2", 1],
      ["catalog", "unknown", "unknown", "-", "http", "", 2],
      ["catalog", "unknown", "unknown", "UT", "http", "", 1],
      ["reviews", "unknown", "unknown", "-", "http", "", 1],
    ]);
  });

  it("falls back to istiod's endpoint metadata for a destination without a sidecar", async () => {
    const vm = await load({ reporter: "source", workload: "istio-ingressgateway", namespace: "istio-system", app: "istio-ingressgateway" });
    const stream = vm.http();
    stream.setProperty(["xds", "upstream_host_metadata"], endpointMetadata("catalog-v1;shop;catalog;v1;Kubernetes"));
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog.istioinaction.io" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(only(vm, "istio_requests_total").labels).toMatchObject({
      source_workload: "istio-ingressgateway",
      source_version: "unknown",
      destination_workload: "catalog-v1",
      destination_app: "catalog",
      destination_version: "v1",
      destination_service: "catalog.istioinaction.io",
    });
  });

  it("writes Envoy's response flags as Istio does, and gRPC's status from the trailers", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const failed = vm.http();
    failed.setProperty(["response", "flags"], (1 << 1) | (1 << 5)); // NoHealthyUpstream, UpstreamConnectionFailure
    failed.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog" }, { endOfStream: true });
    failed.sendResponseHeaders({ ":status": "503" }, { endOfStream: true });
    const grpc = vm.http();
    grpc.sendRequestHeaders({ ":method": "POST", ":path": "/catalog.Items/List", ":authority": "catalog", "content-type": "application/grpc" }, { endOfStream: true });
    grpc.sendResponseHeaders({ ":status": "200", "content-type": "application/grpc" });
    grpc.sendResponseTrailers({ "grpc-status": "14" });
    const byCode = Object.fromEntries(istioMetrics(vm, "istio_requests_total").map((m) => [m.labels.response_code, m.labels]));
    expect(byCode["503"]).toMatchObject({ response_flags: "UH,UF", request_protocol: "http", grpc_response_status: "" });
    expect(byCode["200"]).toMatchObject({ response_flags: "-", request_protocol: "grpc", grpc_response_status: "14" });
  });
});

describe("istio-stats as the destination (inbound sidecar)", () => {
  it("reads the source from the request headers, hides them from the app, and answers with its own", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const stream = vm.http();
    stream.setProperty(["connection", "mtls"], true);
    stream.setProperty(["connection", "uri_san_peer_certificate"], "spiffe://cluster.local/ns/shop/sa/webapp");
    stream.setProperty(["connection", "uri_san_local_certificate"], "spiffe://cluster.local/ns/shop/sa/catalog");
    stream.sendRequestHeaders(
      { ":method": "GET", ":path": "/items", ":authority": "catalog", "x-envoy-peer-metadata-id": "webapp.shop", "x-envoy-peer-metadata": peerHeader(WEBAPP) },
      { endOfStream: true },
    );
    expect(stream.requestHeaders.has("x-envoy-peer-metadata")).toBe(false);
    expect(stream.requestHeaders.has("x-envoy-peer-metadata-id")).toBe(false);
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.get("x-envoy-peer-metadata-id")).toBe("catalog-v2.shop");
    const answered = fromBinary(StructSchema, Buffer.from(stream.responseHeaders.get("x-envoy-peer-metadata")!, "base64"));
    expect(answered.fields.WORKLOAD_NAME?.kind.value).toBe("catalog-v2");
    expect(only(vm, "istio_requests_total").labels).toMatchObject({
      reporter: "destination",
      source_workload: "webapp",
      source_version: "v1",
      source_principal: "spiffe://cluster.local/ns/shop/sa/webapp",
      destination_workload: "catalog-v2",
      destination_version: "v2",
      destination_principal: "spiffe://cluster.local/ns/shop/sa/catalog",
      connection_security_policy: "mutual_tls",
    });
  });

  it("tells nothing about itself to a client that sent no metadata, and reports it unknown over plain text", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const stream = vm.http();
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(stream.responseHeaders.has("x-envoy-peer-metadata")).toBe(false);
    expect(only(vm, "istio_requests_total").labels).toMatchObject({ source_workload: "unknown", connection_security_policy: "none" });
  });

  it("ignores a peer header that is not a base64 Struct", async () => {
    const vm = await load({ reporter: "destination", ...CATALOG_V2 });
    const stream = vm.http();
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "catalog", "x-envoy-peer-metadata": "%%%not base64" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    expect(only(vm, "istio_requests_total").labels.source_workload).toBe("unknown");
  });
});

describe("istio-stats over TCP", () => {
  it("counts the connection and its bytes each way when it closes", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP });
    const connection = vm.tcp();
    connection.sendDownstreamData("hello");
    connection.sendUpstreamData("hello back!");
    connection.closeDownstream();
    connection.closeUpstream();
    const opened = only(vm, "istio_tcp_connections_opened_total");
    expect(opened.labels).toMatchObject({ reporter: "source", request_protocol: "tcp", source_workload: "webapp" });
    expect(opened.labels).not.toHaveProperty("response_code");
    const tags = opened.name.slice(0, -"istio_tcp_connections_opened_total".length);
    expect(vm.metric(opened.name)).toBe(1);
    expect(vm.metric(`${tags}istio_tcp_connections_closed_total`)).toBe(1);
    expect(vm.metric(`${tags}istio_tcp_received_bytes_total`)).toBe(5);
    expect(vm.metric(`${tags}istio_tcp_sent_bytes_total`)).toBe(11);
  });
});

describe("istio-stats with metrics dropped (Telemetry metric overrides)", () => {
  it("never defines a dropped metric and records the others as before, over HTTP and TCP", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP, drop: ["istio_requests_total", "istio_response_bytes", "istio_tcp_sent_bytes_total"] });
    const stream = vm.http();
    stream.setProperty(["request", "total_size"], 120);
    stream.sendRequestHeaders({ ":method": "GET", ":path": "/items", ":authority": "catalog" }, { endOfStream: true });
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    const connection = vm.tcp();
    connection.sendDownstreamData("hello");
    connection.sendUpstreamData("hello back!");
    connection.closeDownstream();
    expect(istioMetrics(vm, "istio_requests_total")).toEqual([]);
    expect(istioMetrics(vm, "istio_response_bytes")).toEqual([]);
    expect(istioMetrics(vm, "istio_tcp_sent_bytes_total")).toEqual([]);
    expect(only(vm, "istio_request_duration_milliseconds").labels).toMatchObject({ reporter: "source", response_code: "200" });
    expect(only(vm, "istio_request_bytes").labels.source_workload).toBe("webapp");
    expect(vm.metric(only(vm, "istio_tcp_received_bytes_total").name)).toBe(5);
    expect(vm.metric(only(vm, "istio_tcp_connections_opened_total").name)).toBe(1);
  });
});

describe("istio-stats with labels removed (Telemetry tagOverrides REMOVE)", () => {
  it("leaves the labels out of that metric's name only, so series that differed in them add up in one", async () => {
    const vm = await load({ reporter: "source", ...WEBAPP, tagsToRemove: [{ metric: "istio_requests_total", tags: ["response_code", "reporter", "connection_security_policy"] }] });
    for (const status of ["200", "503"]) {
      const stream = vm.http();
      stream.sendRequestHeaders({ ":method": "GET", ":path": "/items", ":authority": "catalog" }, { endOfStream: true });
      stream.sendResponseHeaders({ ":status": status }, { endOfStream: true });
    }
    const requests = only(vm, "istio_requests_total");
    expect(requests.labels).not.toHaveProperty("response_code");
    expect(requests.labels).not.toHaveProperty("reporter");
    expect(requests.labels).not.toHaveProperty("connection_security_policy");
    expect(requests.labels).toMatchObject({ source_workload: "webapp", response_flags: "-", request_protocol: "http" });
    expect(vm.metric(requests.name)).toBe(2);
    // The other metrics keep every label: one series per response code.
    expect(istioMetrics(vm, "istio_request_duration_milliseconds").map((m) => m.labels.response_code).sort()).toEqual(["200", "503"]);
  });
});
