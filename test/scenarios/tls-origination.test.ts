// TLS origination by a sidecar (Istio in Action's egress chapter): the application speaks plain HTTP and its
// sidecar opens TLS to the upstream as the DestinationRule's client TLS settings say, at each level where they can be
// set: the rule's `trafficPolicy.tls`, a port's `portLevelSettings[].tls`, a subset's, and a subset's port's. Client
// certificates come from files or, for a rule with a workloadSelector, from a `credentials/<credentialName>/` folder.
// The upstreams are real TLS servers: one that accepts only clients with a certificate from the clients' CA and says
// which certificate and SNI it saw, and one whose certificate comes from a CA the sidecar is not given.
import { expect, it, beforeAll, afterAll } from "vitest";
import { send } from "../harness/client.js";
import { certificateAuthority } from "../harness/certificates.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

/** The names the partner server's certificate carries (SANs): auto_san_validation checks the request's host. */
const PARTNER_NAMES = ["rule-files.partner.example", "rule-credential.partner.example", "ports.partner.example", "subsets.partner.example", "sni.partner.example", "pinned.partner.example"];

describeE2E("scenario: TLS origination from a sidecar's DestinationRule (every level)", () => {
  let mesh: Mesh;
  let partner: Upstream;
  let rogue: Upstream;
  let first: number;
  let second: number;

  /** One request through the sidecar's listener for `port` to `host`; the partner server's view of it. */
  async function call(host: string, port: number, headers: Record<string, string> = {}) {
    const before = partner.requests.length;
    const response = await send(port, { headers: { host, ...headers } });
    const seen = partner.requests.length > before ? partner.requests.at(-1) : undefined;
    return { status: response.status, upstream: response.headers["x-upstream"], clientCertificate: seen?.clientCertificate, serverName: seen?.serverName };
  }

  beforeAll(async () => {
    const partnerCa = certificateAuthority("partner-ca");
    const clientsCa = certificateAuthority("clients-ca");
    const otherCa = certificateAuthority("other-ca");
    partner = await startUpstream({ name: "partner", tls: { ...partnerCa.issue("partner", PARTNER_NAMES), ca: clientsCa.cert } });
    rogue = await startUpstream({ name: "rogue", tls: otherCa.issue("rogue", ["rogue.partner.example", "trusting.partner.example"]) });
    [first, second] = [await freePort(), await freePort()];
    const credential = (cn: string) => {
      const { cert, key } = clientsCa.issue(cn);
      return { "tls.crt": cert, "tls.key": key, "ca.crt": partnerCa.cert };
    };
    const folder = (name: string, files: Record<string, string>) => Object.fromEntries(Object.entries(files).map(([file, text]) => [`credentials/${name}/${file}`, text]));
    const filesClient = clientsCa.issue("files-client");
    const entry = (host: string, server: Upstream, ports = [first]) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${host.split(".")[0]}, namespace: default }
spec:
  hosts: [${host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
${ports.map((port, index) => `  - { number: ${port}, name: http-${index}, protocol: HTTP }`).join("\n")}
  endpoints:
  - address: 127.0.0.1
    labels: { version: v1 }
    ports: { ${ports.map((_, index) => `http-${index}: ${server.port}`).join(", ")} }
`;
    const rule = (host: string, body: string, selected = false) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host.split(".")[0]}, namespace: default }
spec:
  host: ${host}
${selected ? "  workloadSelector: { matchLabels: { app: webapp } }\n" : ""}${body}`;
    const mutualFiles = "{ mode: MUTUAL, clientCertificate: certs/files-client.crt, privateKey: certs/files-client.key, caCertificates: certs/partner-ca.crt }";
    mesh = await startMesh(
      {
        "certs/partner-ca.crt": partnerCa.cert,
        "certs/files-client.crt": filesClient.cert,
        "certs/files-client.key": filesClient.key,
        ...folder("rule-credential", credential("rule-credential-client")),
        ...folder("ports-credential", credential("ports-credential-client")),
        ...folder("subset-credential", credential("subset-credential-client")),
        "services.yaml": [
          entry("rule-files.partner.example", partner),
          entry("rule-credential.partner.example", partner),
          entry("ports.partner.example", partner, [first, second]),
          entry("subsets.partner.example", partner, [first, second]),
          entry("pinned.partner.example", partner),
          entry("rogue.partner.example", rogue),
          entry("trusting.partner.example", rogue),
        ].join("---\n"),
        "destination-rules.yaml": [
          rule("rule-files.partner.example", `  trafficPolicy:\n    tls: ${mutualFiles}\n`),
          rule("rule-credential.partner.example", "  trafficPolicy:\n    tls: { mode: MUTUAL, credentialName: rule-credential }\n", true),
          // The rule's own plain text would fail against a TLS server: each port's settings replace it.
          rule(
            "ports.partner.example",
            `  trafficPolicy:
    tls: { mode: DISABLE }
    portLevelSettings:
    - port: { number: ${first} }
      tls: { mode: MUTUAL, clientCertificate: certs/files-client.crt, privateKey: certs/files-client.key, caCertificates: certs/partner-ca.crt, sni: sni.partner.example, subjectAltNames: [sni.partner.example] }
    - port: { number: ${second} }
      tls: { mode: MUTUAL, credentialName: ports-credential }
`,
            true,
          ),
          rule(
            "subsets.partner.example",
            `  trafficPolicy:
    tls: { mode: DISABLE }
  subsets:
  - name: files
    labels: { version: v1 }
    trafficPolicy:
      tls: ${mutualFiles}
  - name: credential
    labels: { version: v1 }
    trafficPolicy:
      tls: { mode: MUTUAL, credentialName: subset-credential }
  - name: by-port
    labels: { version: v1 }
    trafficPolicy:
      portLevelSettings:
      - port: { number: ${first} }
        tls: ${mutualFiles}
      - port: { number: ${second} }
        tls: { mode: MUTUAL, credentialName: ports-credential }
`,
            true,
          ),
          rule("pinned.partner.example", "  trafficPolicy:\n    tls: { mode: SIMPLE, caCertificates: certs/partner-ca.crt, subjectAltNames: [someone-else.partner.example] }\n"),
          rule("rogue.partner.example", "  trafficPolicy:\n    tls: { mode: SIMPLE, caCertificates: certs/partner-ca.crt }\n"),
          rule("trusting.partner.example", "  trafficPolicy:\n    tls: { mode: SIMPLE, insecureSkipVerify: true }\n"),
        ].join("---\n"),
        "virtual-services.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: subsets, namespace: default }
spec:
  hosts: [subsets.partner.example]
  http:
${["files", "credential", "by-port"].map((subset) => `  - match: [{ headers: { x-subset: { exact: ${subset} } } }]\n    route: [{ destination: { host: subsets.partner.example, subset: ${subset} } }]`).join("\n")}
`,
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await partner?.stop();
    await rogue?.stop();
  });

  it("the rule's tls: mutual TLS with the client certificate from files, or from its credentialName folder", async () => {
    expect(await eventually(() => call("rule-files.partner.example", first).then(ok))).toEqual({ status: 200, upstream: "partner", clientCertificate: "files-client", serverName: "rule-files.partner.example" });
    expect(await eventually(() => call("rule-credential.partner.example", first).then(ok))).toMatchObject({ status: 200, clientCertificate: "rule-credential-client" });
  });

  it("a port's tls replaces the rule's: files with its own SNI and SAN on one port, a credentialName on the other", async () => {
    expect(await eventually(() => call("ports.partner.example", first).then(ok))).toEqual({ status: 200, upstream: "partner", clientCertificate: "files-client", serverName: "sni.partner.example" });
    expect(await eventually(() => call("ports.partner.example", second).then(ok))).toMatchObject({ status: 200, clientCertificate: "ports-credential-client", serverName: "ports.partner.example" });
  });

  it("a subset's tls, and a subset port's, replace the rule's for the routes to that subset", async () => {
    const subset = (name: string, port: number) => eventually(() => call("subsets.partner.example", port, { "x-subset": name }).then(ok));
    expect(await subset("files", first)).toMatchObject({ status: 200, clientCertificate: "files-client" });
    expect(await subset("credential", first)).toMatchObject({ status: 200, clientCertificate: "subset-credential-client" });
    expect(await subset("by-port", first)).toMatchObject({ status: 200, clientCertificate: "files-client" });
    expect(await subset("by-port", second)).toMatchObject({ status: 200, clientCertificate: "ports-credential-client" });
  });

  it("refuses a server its CA did not sign or whose name is not the one pinned, and trusts any with insecureSkipVerify", async () => {
    // Wait until the sidecar has the routes (the trusted one answers), then the refusals are the TLS checks'.
    expect(await eventually(() => call("trusting.partner.example", first).then(ok))).toMatchObject({ status: 200, upstream: "rogue" });
    const rogueBefore = rogue.requests.length;
    expect((await call("rogue.partner.example", first)).status).toBe(503);
    expect(rogue.requests.length).toBe(rogueBefore);
    const partnerBefore = partner.requests.length;
    expect((await call("pinned.partner.example", first)).status).toBe(503);
    expect(partner.requests.length).toBe(partnerBefore);
    const stats = await mesh.envoy.stats();
    expect(stats.get(`cluster.outbound|${first}||rogue.partner.example.ssl.fail_verify_error`)).toBeGreaterThan(0);
    expect(stats.get(`cluster.outbound|${first}||pinned.partner.example.ssl.fail_verify_san`)).toBeGreaterThan(0);
  });
});

/** Passes a 200 through; anything else throws, so `eventually` retries until the pushed config is in place. */
function ok<T extends { status: number }>(result: T): T {
  if (result.status !== 200) throw new Error(`status ${result.status}`);
  return result;
}
