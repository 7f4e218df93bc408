// PeerAuthentication and DestinationRule `tls` beyond the mesh-mtls golden: what validation refuses as Istio does
// (pkg/config/validation ValidatePeerAuthentication), what it warns about, and what a proxy without workload
// certificates (a --plaintext control plane) gets where mutual TLS is required: no plain text, a note that says why.
import { afterAll, describe, expect, it } from "vitest";
import type { ProxyIdentity } from "../../control/resources.js";
import { configFolder, removeConfigFolders } from "./config.js";

afterAll(removeConfigFolders);

const peerAuthentication = (namespace: string, spec: string, name = "default") => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}`;

const reviews = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 198.18.0.5, serviceAccount: reviews, labels: { app: reviews } }]
`;

const reviewsPod: ProxyIdentity = { nodeId: "reviews", role: "sidecar", labels: { app: "reviews" }, namespace: "shop", ips: ["198.18.0.5"], interceptionMode: "REDIRECT" };

describe("PeerAuthentication validation (as Istio's)", () => {
  it("refuses portLevelMtls without a selector, and an empty portLevelMtls, naming the field", () => {
    const config = configFolder({
      "a.yaml": peerAuthentication("shop", "  mtls: { mode: STRICT }\n  portLevelMtls: { 8080: { mode: DISABLE } }"),
      "b.yaml": peerAuthentication("shop", "  selector: { matchLabels: { app: reviews } }\n  portLevelMtls: {}", "empty"),
    });
    expect(config.messages).toEqual([
      expect.stringMatching(/^a\.yaml: PeerAuthentication shop\/default: spec\.portLevelMtls: .*cannot have portLevelMtls/),
      expect.stringMatching(/^b\.yaml: PeerAuthentication shop\/empty: spec\.portLevelMtls: .*at least one port/),
    ]);
  });

  it("refuses an unknown mode and a port outside 1..65535", () => {
    const config = configFolder({
      "a.yaml": peerAuthentication("shop", "  mtls: { mode: OPTIONAL }"),
      "b.yaml": peerAuthentication("shop", "  selector: { matchLabels: { app: reviews } }\n  portLevelMtls: { 70000: { mode: STRICT } }", "ports"),
    });
    expect(config.messages).toEqual([
      expect.stringMatching(/^a\.yaml: PeerAuthentication shop\/default: spec\.mtls\.mode: .*STRICT/),
      "b.yaml: PeerAuthentication shop/ports: spec.portLevelMtls.70000: a port number in 1..65535",
    ]);
  });

  it("warns about policies Istio ignores: a second namespace-wide one, a selector in the root namespace", () => {
    const config = configFolder({
      "a.yaml": peerAuthentication("shop", "  mtls: { mode: STRICT }"),
      "b.yaml": peerAuthentication("shop", "  mtls: { mode: DISABLE }", "second"),
      "c.yaml": peerAuthentication("istio-system", "  selector: { matchLabels: { app: reviews } }\n  mtls: { mode: DISABLE }", "selected"),
    });
    expect(config.messages).toEqual([]);
    const warnings = config.warnings().join("\n");
    expect(warnings).toMatch(/PeerAuthentication shop\/second: another PeerAuthentication namespace-wide in shop comes first \(default\)/);
    expect(warnings).toMatch(/PeerAuthentication istio-system\/selected: spec\.selector: .*applies to no workload/);
  });
});

describe("DestinationRule tls", () => {
  it("refuses SIMPLE or MUTUAL naming files that do not exist (Envoy would refuse the cluster)", () => {
    const config = configFolder({
      "dr.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: shop }
spec:
  host: api.example.com
  trafficPolicy: { tls: { mode: MUTUAL, clientCertificate: certs/missing.crt, privateKey: certs/missing.key, caCertificates: certs/missing-ca.crt } }
`,
    });
    expect(config.messages).toEqual([
      expect.stringMatching(/dr\.yaml: DestinationRule shop\/api: spec\.trafficPolicy\.tls\.clientCertificate: file .*missing\.crt does not exist/),
      expect.stringMatching(/spec\.trafficPolicy\.tls\.privateKey: file .*missing\.key does not exist/),
      expect.stringMatching(/spec\.trafficPolicy\.tls\.caCertificates: file .*missing-ca\.crt does not exist/),
    ]);
  });

  it("checks a port's and a subset port's settings too, naming the port's entry", () => {
    const config = configFolder({
      "dr.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: shop }
spec:
  host: api.example.com
  trafficPolicy:
    portLevelSettings:
    - port: { number: 443 }
      tls: { mode: SIMPLE, caCertificates: certs/missing-ca.crt }
  subsets:
  - name: v1
    labels: { version: v1 }
    trafficPolicy:
      portLevelSettings:
      - port: { number: 443 }
        tls: { mode: MUTUAL, credentialName: missing-credential }
`,
    });
    expect(config.messages).toEqual([
      expect.stringMatching(/DestinationRule shop\/api: spec\.trafficPolicy\.portLevelSettings\[0\]\.tls\.caCertificates: file .*missing-ca\.crt does not exist/),
      expect.stringMatching(/spec\.subsets\[0\]\.trafficPolicy\.portLevelSettings\[0\]\.tls\.credentialName: file .*missing-credential\/tls\.crt does not exist/),
      expect.stringMatching(/spec\.subsets\[0\]\.trafficPolicy\.portLevelSettings\[0\]\.tls\.credentialName: file .*missing-credential\/tls\.key does not exist/),
      expect.stringMatching(/spec\.subsets\[0\]\.trafficPolicy\.portLevelSettings\[0\]\.tls\.credentialName: file .*missing-credential\/ca\.crt does not exist/),
    ]);
  });
});

describe("without workload certificates (--plaintext control plane)", () => {
  const strict = { "reviews.yaml": reviews, "pa.yaml": peerAuthentication("istio-system", "  mtls: { mode: STRICT }") };

  it("a STRICT port has no chain that accepts plain text, and a note says so", () => {
    const config = configFolder(strict);
    const chains = config.translate(reviewsPod, { workloadCertificates: false }).listeners.get("virtualInbound")!.filter_chains as Array<{ name: string }>;
    expect(chains.filter((chain) => chain.name === "0.0.0.0_9080")).toEqual([]);
    expect(config.notes(reviewsPod, { workloadCertificates: false }).join("\n")).toMatch(/mutual TLS is STRICT \(PeerAuthentication istio-system\/default\) on port\(s\) 9080, but this proxy has no workload certificate/);
    // With certificates: one chain, TLS only.
    const secured = config.translate(reviewsPod).listeners.get("virtualInbound")!.filter_chains as Array<{ name: string; filter_chain_match: { transport_protocol: string } }>;
    expect(secured.filter((chain) => chain.name === "0.0.0.0_9080").map((chain) => chain.filter_chain_match.transport_protocol)).toEqual(["tls"]);
  });

  it("an ISTIO_MUTUAL cluster gets no endpoints (503), never plain text, and auto-mTLS is off", () => {
    const config = configFolder({
      ...strict,
      "dr.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: shop }
spec:
  host: reviews.shop.svc.cluster.local
  subsets: [{ name: v1, labels: { app: reviews }, trafficPolicy: { tls: { mode: ISTIO_MUTUAL } } }]
`,
    });
    const client: ProxyIdentity = { ...reviewsPod, nodeId: "client", labels: { app: "client" }, ips: ["198.18.0.9"] };
    const plain = config.translate(client, { workloadCertificates: false });
    expect(plain.clusters.get("outbound|9080|v1|reviews.shop.svc.cluster.local")).toEqual({ name: "outbound|9080|v1|reviews.shop.svc.cluster.local", type: "STATIC", connect_timeout: "10s" });
    expect(plain.clusters.get("outbound|9080||reviews.shop.svc.cluster.local")!.transport_socket_matches).toBeUndefined();
    expect(config.notes(client, { workloadCertificates: false }).join("\n")).toMatch(/DestinationRule shop\/reviews asks for ISTIO_MUTUAL to reviews\.shop\.svc\.cluster\.local, but this proxy has no workload certificate/);
    expect(config.translate(client).clusters.get("outbound|9080||reviews.shop.svc.cluster.local")!.transport_socket_matches).toHaveLength(2);
  });
});
