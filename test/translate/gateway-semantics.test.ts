// Istio's Gateway semantics that goldens would bury (issue 13, cases 5-7): plain HTTP beside HTTPS on one port,
// the `namespace/` part of server hosts, and TLS settings Istio refuses or that would do nothing.
import { afterAll, describe, expect, it } from "vitest";
import { configFolder, gatewayProxy, removeConfigFolders } from "./config.js";

afterAll(removeConfigFolders);

const services = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: webapp, namespace: shop }
spec:
  hosts: [webapp.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 8080, name: http }]
  endpoints: [{ address: 127.0.0.1 }]
`;

function virtualService(name: string, namespace: string, host: string, gateway = "istio-system/gw"): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: ["${host}"]
  gateways: [${gateway}]
  http:
  - route: [{ destination: { host: webapp.shop.svc.cluster.local } }]
`;
}

function gateway(servers: string): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
${servers}`;
}

const CERT_FILES = { "certs/tls.crt": "placeholder", "certs/tls.key": "placeholder", "certs/ca.crt": "placeholder" };

describe("case 5: HTTP and HTTPS servers on one port", () => {
  for (const order of ["HTTP first", "HTTPS first"]) {
    it(`serves both, the plain one on the raw_buffer chain (${order})`, () => {
      const http = `  - port: { number: 8443, name: http, protocol: HTTP }\n    hosts: ["plain.example.com"]\n`;
      const https = `  - port: { number: 8443, name: https, protocol: HTTPS }\n    hosts: ["secure.example.com"]\n    tls: { mode: SIMPLE, serverCertificate: certs/tls.crt, privateKey: certs/tls.key }\n`;
      const config = configFolder({
        "gw.yaml": gateway(order === "HTTP first" ? http + https : https + http),
        "vs.yaml": [virtualService("plain", "shop", "plain.example.com"), virtualService("secure", "shop", "secure.example.com")].join("---\n"),
        "services.yaml": services,
        ...CERT_FILES,
      });
      expect(config.messages).toEqual([]);
      const out = config.translate(gatewayProxy());
      const chains = out.listeners.get("127.0.0.1_8443")!.filter_chains as Array<Record<string, any>>;
      expect(chains.map((chain) => chain.filter_chain_match)).toEqual([{ server_names: ["secure.example.com"] }, { transport_protocol: "raw_buffer" }]);
      const plain = chains[1]!;
      expect(plain.transport_socket).toBeUndefined();
      expect(plain.filters[0].typed_config.rds.route_config_name).toBe("http.8443");
      expect(out.routes.get("http.8443")!.virtual_hosts.map((vh: { name: string }) => vh.name)).toEqual(["plain.example.com:8443"]);
      expect(out.routes.get("https.8443.https.gw.istio-system")!.virtual_hosts.map((vh: { name: string }) => vh.name)).toEqual(["secure.example.com:8443"]);
    });
  }
});

describe("case 6: the namespace part of server hosts", () => {
  const servers = `  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["shop/*.shop.example.com", "./*.gw.example.com", "*/*.any.example.com", "plain.example.com"]
`;
  const hosts = (vsNamespace: string, host: string) => {
    const config = configFolder({ "gw.yaml": gateway(servers), "vs.yaml": virtualService("vs", vsNamespace, host), "services.yaml": services });
    expect(config.messages).toEqual([]);
    return config.translate(gatewayProxy()).routes.get("http.8080")!.virtual_hosts.map((vh: { name: string }) => vh.name);
  };

  it("binds a VirtualService of the named namespace", () => {
    expect(hosts("shop", "a.shop.example.com")).toEqual(["a.shop.example.com:8080"]);
  });

  it("does not bind a VirtualService of another namespace (404 placeholder)", () => {
    expect(hosts("other", "a.shop.example.com")).toEqual(["blackhole:8080"]);
  });

  it("reads ./ as the Gateway's own namespace", () => {
    expect(hosts("istio-system", "a.gw.example.com")).toEqual(["a.gw.example.com:8080"]);
    expect(hosts("shop", "a.gw.example.com")).toEqual(["blackhole:8080"]);
  });

  it("reads */ and no prefix as any namespace", () => {
    expect(hosts("other", "a.any.example.com")).toEqual(["a.any.example.com:8080"]);
    expect(hosts("other", "plain.example.com")).toEqual(["plain.example.com:8080"]);
  });

  it("takes the more specific of a wildcard VirtualService host and a server host, as Istio intersects them", () => {
    expect(hosts("shop", "*.example.com")).toEqual(["*.shop.example.com:8080", "*.any.example.com:8080", "plain.example.com:8080"]);
  });
});

describe("case 7: TLS settings that Istio refuses or that would do nothing", () => {
  it("refuses tls.mode on a plain HTTP server, naming the field (Istio: no TLS settings on plain text HTTP ports)", () => {
    const config = configFolder({
      "gw.yaml": gateway(`  - port: { number: 8080, name: http, protocol: HTTP }
    hosts: ["*"]
    tls: { mode: MUTUAL, serverCertificate: certs/tls.crt, privateKey: certs/tls.key, caCertificates: certs/ca.crt }
`),
      ...CERT_FILES,
    });
    expect(config.messages).toEqual([
      "gw.yaml: Gateway istio-system/gw: spec.servers[0].tls.mode: a plain HTTP server takes no TLS settings but httpsRedirect (Istio refuses them too); use protocol HTTPS to terminate TLS",
    ]);
  });

  it("refuses caCertificates with SIMPLE, which verifies no client certificate", () => {
    const config = configFolder({
      "gw.yaml": gateway(`  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: SIMPLE, serverCertificate: certs/tls.crt, privateKey: certs/tls.key, caCertificates: certs/ca.crt }
`),
      ...CERT_FILES,
    });
    expect(config.messages).toEqual([
      "gw.yaml: Gateway istio-system/gw: spec.servers[0].tls.caCertificates: SIMPLE TLS verifies no client certificate, so caCertificates would do nothing (Istio ignores it); use mode MUTUAL or OPTIONAL_MUTUAL to verify clients against it",
    ]);
  });

  it("OPTIONAL_MUTUAL verifies a client certificate when one is presented, without requiring it", () => {
    const config = configFolder({
      "gw.yaml": gateway(`  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: OPTIONAL_MUTUAL, serverCertificate: certs/tls.crt, privateKey: certs/tls.key, caCertificates: certs/ca.crt }
`),
      ...CERT_FILES,
    });
    expect(config.messages).toEqual([]);
    const chain = (config.translate(gatewayProxy()).listeners.get("127.0.0.1_8443")!.filter_chains as Array<Record<string, any>>)[0]!;
    const tls = chain.transport_socket.typed_config;
    expect(tls.require_client_certificate).toBe(false);
    expect(tls.common_tls_context.validation_context_sds_secret_config.name).toBe(`file-root:${config.dir}/certs/ca.crt`);
  });
});
