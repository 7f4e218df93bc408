// Istio's TCP metadata exchange between two real sidecars (istio-stats, filters/istio-stats/tcp-exchange.ts), on a
// secured mesh: the webapp pod's app opens TCP connections to the db service; its sidecar originates mesh mTLS (auto
// mTLS, ALPN istio-peer-exchange) and puts Istio's exchange frame in front of the stream; db's sidecar takes it off,
// answers with its own, and each side's istio_tcp_* metrics name the other from the frames. db's ServiceEntry endpoint
// has no labels, so the endpoint metadata alone would name it `db` version `latest`: `db-v1` on the webapp side can
// only come from the exchange. A server-first protocol passes untouched; a server without a sidecar (legacy) gets
// exactly the bytes the app sent.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describePods } from "../harness/e2e.js";
import { waitFor } from "../harness/envoy.js";
import { metricValue, parseMetrics } from "../harness/metrics-text.js";
import { type MeshControlPlane, type MeshNetwork, type PodApp, startMeshNetwork, type TestPod } from "../harness/pods.js";
import { type SecuredSidecar, startSecuredSidecar } from "../harness/secured-sidecar.js";

const DB = "db.shop.svc.cluster.local";
const LEGACY = "legacy.shop.svc.cluster.local";
const DB_PORT = 5432;
const LEGACY_PORT = 5433;
/** db's server-first port: it greets and closes before the client says anything. */
const GREET_PORT = 5434;
/** The application's bytes start like an exchange frame (magic 0x3D230467): only the sidecars' own frames may go. */
const PAYLOAD = Buffer.concat([Buffer.from([0x3d, 0x23, 0x04, 0x67, 0, 0, 0, 4]), Buffer.from("ping\n"), Buffer.alloc(3000, 7)]);

const services = (db: string, legacy: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: shop }
spec:
  hosts: [${DB}]
  location: MESH_INTERNAL
  ports: [{ number: ${DB_PORT}, name: tcp, protocol: TCP }, { number: ${GREET_PORT}, name: tcp-greet, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: ${db}, serviceAccount: db }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: legacy, namespace: shop }
spec:
  hosts: [${LEGACY}]
  location: MESH_INTERNAL
  ports: [{ number: ${LEGACY_PORT}, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: ${legacy}, labels: { app: legacy, version: v0 } }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: shop }
spec: { mtls: { mode: STRICT } }
`;

describePods("Istio's TCP metadata exchange between sidecars (istio-stats)", () => {
  let mesh: MeshNetwork;
  let dataDir: string;
  let controlPlane: MeshControlPlane;
  let dbApp: PodApp;
  let legacyApp: PodApp;
  let webappApp: PodApp;
  let dbSidecar: SecuredSidecar;
  let webappSidecar: SecuredSidecar;
  let legacy: TestPod;

  const metrics = async (sidecar: SecuredSidecar) => parseMetrics(await sidecar.envoy.admin("/stats/prometheus"));

  beforeAll(async () => {
    mesh = startMeshNetwork();
    dataDir = mkdtempSync(join(tmpdir(), "skiff-tcp-exchange-"));
    const db = mesh.addPod("db", { capture: true, namespace: "shop", labels: { app: "db", version: "v1" } });
    const webapp = mesh.addPod("webapp", { capture: true, namespace: "shop", labels: { app: "webapp", version: "v1" } });
    legacy = mesh.addPod("legacy", { namespace: "legacy" });
    controlPlane = await mesh.startControlPlane({ "services.yaml": services(db.address, legacy.address) }, { security: { dataDir } });
    mesh.addService(DB);
    mesh.addService(LEGACY);
    [dbApp, legacyApp, webappApp] = await Promise.all([db.startApp(), legacy.startApp(), webapp.startApp()]);
    await Promise.all([dbApp.echoTcp(DB_PORT), dbApp.greet(GREET_PORT, "db greets first"), legacyApp.echoTcp(LEGACY_PORT)]);
    [dbSidecar, webappSidecar] = await Promise.all([
      startSecuredSidecar(db, controlPlane, { serviceAccount: "db" }),
      startSecuredSidecar(webapp, controlPlane, { serviceAccount: "webapp" }),
    ]);
    await waitFor(
      async () => (await webappApp.converse(DB, DB_PORT, PAYLOAD).catch(() => Buffer.alloc(0))).equals(PAYLOAD),
      "the webapp's TCP call reaches db through both sidecars",
      60_000,
    );
  }, 300_000);

  afterAll(async () => {
    await mesh?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("gives each application exactly the other's bytes, the frames taken off by the sidecars", async () => {
    const before = (await dbApp.echoed(DB_PORT)).length;
    const answer = await webappApp.converse(DB, DB_PORT, PAYLOAD);
    expect(answer.equals(PAYLOAD), `the answer has ${answer.length} bytes, the payload ${PAYLOAD.length}`).toBe(true);
    const received = (await dbApp.echoed(DB_PORT)).slice(before);
    expect(received.map((bytes) => bytes.equals(PAYLOAD))).toEqual([true]);
    expect(await webappSidecar.envoy.stat(`cluster.outbound|${DB_PORT}||${DB}.ssl.handshake`)).toBeGreaterThan(0);
  });

  it("the server's istio_tcp_* metrics name the caller from the exchange: workload, principal, app, version", async () => {
    const labels = {
      reporter: "destination",
      source_workload: "webapp-v1",
      source_workload_namespace: "shop",
      source_principal: webappSidecar.identity,
      source_app: "webapp",
      source_version: "v1",
      destination_workload: "db-v1",
      destination_principal: dbSidecar.identity,
      connection_security_policy: "mutual_tls",
      request_protocol: "tcp",
    };
    const before = await metrics(dbSidecar);
    await webappApp.converse(DB, DB_PORT, PAYLOAD);
    await waitFor(async () => {
      const after = await metrics(dbSidecar);
      const added = (name: string) => metricValue(after, name, labels) - metricValue(before, name, labels);
      return added("istio_tcp_connections_opened_total") === 1 && added("istio_tcp_received_bytes_total") === PAYLOAD.length;
    }, "db's sidecar counts the connection with the webapp's labels", 30_000);
    const after = await metrics(dbSidecar);
    expect(metricValue(after, "istio_tcp_sent_bytes_total", labels) - metricValue(before, "istio_tcp_sent_bytes_total", labels)).toBe(PAYLOAD.length);
  });

  it("the client's metrics name db from the exchange, not from the endpoint's metadata", async () => {
    const labels = { reporter: "source", source_workload: "webapp-v1", destination_service: DB, request_protocol: "tcp" };
    await waitFor(async () => metricValue(await metrics(webappSidecar), "istio_tcp_connections_closed_total", labels) > 0, "the webapp's sidecar counted a closed connection", 30_000);
    const toDb = (await metrics(webappSidecar)).filter((sample) => sample.name === "istio_tcp_connections_opened_total" && sample.labels.destination_service === DB);
    expect(toDb.map((sample) => [sample.labels.destination_workload, sample.labels.destination_version, sample.labels.destination_principal])).toEqual([
      ["db-v1", "v1", dbSidecar.identity],
    ]);
  });

  it("a server-first protocol through both sidecars: the greeting arrives exactly (the client never spoke, so no frame either way)", async () => {
    expect((await webappApp.greeting(DB, GREET_PORT)).said).toBe("db greets first");
  });

  it("a server without a sidecar gets exactly the app's bytes and is named from its endpoint", async () => {
    const answer = await webappApp.converse(LEGACY, LEGACY_PORT, PAYLOAD);
    expect(answer.equals(PAYLOAD)).toBe(true);
    const received = await legacyApp.echoed(LEGACY_PORT);
    expect(received.length).toBeGreaterThan(0);
    expect(received.every((bytes) => bytes.equals(PAYLOAD)), "every connection to legacy brought exactly the payload").toBe(true);
    const labels = { reporter: "source", destination_service: LEGACY, destination_workload: "legacy-v0", destination_version: "v0" };
    await waitFor(async () => metricValue(await metrics(webappSidecar), "istio_tcp_connections_opened_total", labels) > 0, "the webapp's sidecar names legacy from its endpoint", 30_000);
  });
});
