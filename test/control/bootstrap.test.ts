// `skiff bootstrap`: the YAML it prints names only the ADS server, Envoy accepts it, and the examples in
// envoy-configs/ are exactly its output.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { locateEnvoy, PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { describeE2E } from "../harness/e2e.js";

function skiff(...args: string[]) {
  return spawnSync(process.execPath, ["--import", "tsx", "control/cli/main.ts", ...args], { cwd: PROJECT_ROOT, encoding: "utf8" });
}

describe("skiff bootstrap", () => {
  it("prints a bootstrap with the node's identity and ADS to the control plane on 127.0.0.1", () => {
    const run = skiff("bootstrap", "--node", "webapp-7", "--role", "sidecar", "--label", "app=webapp", "--label", "version=v2", "--xds-port", "18123", "--admin-port", "9911");
    expect(run.status).toBe(0);
    const bootstrap = parse(run.stdout);
    // node.cluster is Istio's service cluster, <app>.<namespace>: the service name of the proxy's spans.
    expect(bootstrap.node).toEqual({ id: "webapp-7", cluster: "webapp.default", metadata: { ROLE: "sidecar", LABELS: { app: "webapp", version: "v2" }, NAMESPACE: "default", INTERCEPTION_MODE: "REDIRECT" } });
    expect(bootstrap.dynamic_resources.ads_config).toMatchObject({ api_type: "GRPC", grpc_services: [{ envoy_grpc: { cluster_name: "skiff-xds" } }] });
    expect(bootstrap.dynamic_resources.cds_config).toEqual({ ads: {}, resource_api_version: "V3" });
    expect(bootstrap.dynamic_resources.lds_config).toEqual({ ads: {}, resource_api_version: "V3" });
    expect(bootstrap.static_resources.clusters).toHaveLength(1);
    expect(bootstrap.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: "127.0.0.1", port_value: 18123 });
    expect(bootstrap.admin.address.socket_address).toEqual({ address: "127.0.0.1", port_value: 9911 });
    expect(bootstrap.static_resources.listeners).toBeUndefined();
  });

  it("carries namespace, service account, addresses and locality as istio-agent does", () => {
    const run = skiff("bootstrap", "--node", "r", "--role", "sidecar", "--namespace", "shop", "--service-account", "reviews", "--ip", "198.18.0.7", "--locality", "eu/eu-1/rack-3");
    expect(parse(run.stdout).node).toEqual({
      id: "r",
      // Without an app label, the node id stands for the app.
      cluster: "r.shop",
      metadata: { ROLE: "sidecar", LABELS: {}, NAMESPACE: "shop", SERVICE_ACCOUNT: "reviews", INSTANCE_IPS: "198.18.0.7", INTERCEPTION_MODE: "REDIRECT" },
      locality: { region: "eu", zone: "eu-1", sub_zone: "rack-3" },
    });
  });

  it("points ADS at another address with --xds-address (a sidecar in a pod reaches the host's bridge address), or at several replicas", () => {
    const address = (...args: string[]) =>
      parse(skiff("bootstrap", "--node", "n", "--role", "sidecar", ...args).stdout).static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(address("--xds-address", "198.18.3.1:18001")).toEqual({ address: "198.18.3.1", port_value: 18001 });
    expect(address("--xds-address", "198.18.3.1", "--xds-port", "18002")).toEqual({ address: "198.18.3.1", port_value: 18002 });
    const bad = skiff("bootstrap", "--node", "n", "--role", "sidecar", "--xds-address", "catalog:80");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--xds-address.*expected an IPv4 address/);
    // Repeated: one endpoint per control plane replica in the xDS cluster.
    const replicas = parse(skiff("bootstrap", "--node", "n", "--role", "gateway", "--xds-address", "127.0.0.1:18001", "--xds-address", "127.0.0.2").stdout).static_resources.clusters[0];
    expect(replicas.load_assignment.endpoints[0].lb_endpoints.map((endpoint: { endpoint: { address: unknown } }) => endpoint.endpoint.address)).toEqual([
      { socket_address: { address: "127.0.0.1", port_value: 18001 } },
      { socket_address: { address: "127.0.0.2", port_value: 18000 } },
    ]);
  });

  it("says how the sidecar's traffic reaches it: REDIRECT (Istio's default) or NONE (no capture)", () => {
    expect(parse(skiff("bootstrap", "--node", "n", "--role", "sidecar", "--interception-mode", "NONE").stdout).node.metadata.INTERCEPTION_MODE).toBe("NONE");
    expect(parse(skiff("bootstrap", "--node", "n", "--role", "gateway").stdout).node.metadata.INTERCEPTION_MODE).toBeUndefined();
    const run = skiff("bootstrap", "--node", "n", "--role", "sidecar", "--interception-mode", "TPROXY");
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/--interception-mode.*expected REDIRECT or NONE/);
  });

  it("uses delta xDS with --delta", () => {
    expect(parse(skiff("bootstrap", "--node", "n", "--role", "gateway", "--delta").stdout).dynamic_resources.ads_config.api_type).toBe("DELTA_GRPC");
  });

  it("refuses a role other than gateway or sidecar, naming the option", () => {
    const run = skiff("bootstrap", "--node", "n", "--role", "ingress");
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/--role.*expected gateway or sidecar/);
  });

  it("is what envoy-configs/xds-gateway.yaml and xds-sidecar.yaml hold", () => {
    const gateway = skiff("bootstrap", "--node", "gateway-1", "--role", "gateway", "--label", "istio=ingressgateway").stdout;
    const sidecar = skiff("bootstrap", "--node", "webapp-1", "--role", "sidecar", "--label", "app=webapp", "--label", "version=v1", "--interception-mode", "NONE", "--admin-port", "9902").stdout;
    expect(readFileSync(join(PROJECT_ROOT, "envoy-configs/xds-gateway.yaml"), "utf8")).toBe(gateway);
    expect(readFileSync(join(PROJECT_ROOT, "envoy-configs/xds-sidecar.yaml"), "utf8")).toBe(sidecar);
  });
});

describeE2E("skiff bootstrap in Envoy", () => {
  it("is accepted by Envoy (--mode validate)", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-bootstrap-"));
    try {
      const file = join(dir, "bootstrap.yaml");
      writeFileSync(file, skiff("bootstrap", "--node", "gw", "--role", "gateway").stdout);
      const run = spawnSync(locateEnvoy().path, ["--mode", "validate", "-c", file, "--disable-hot-restart"], { encoding: "utf8", timeout: 30_000 });
      expect(run.stdout + run.stderr).toMatch(/configuration .* OK/);
      expect(run.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
