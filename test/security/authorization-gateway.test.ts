// AuthorizationPolicy and RequestAuthentication on an ingress gateway (the book's "authorization at the edge"), against
// a real Envoy configured only by the control plane. Each case is one of Istio's documented behaviours
// (istio.io/latest/docs/reference/config/security/authorization-policy/ and .../request_authentication/, and the
// tasks "Authorization on Ingress Gateway", "JWT Authentication"), quoted beside it. JWTs are RS256, made here with
// Node's crypto; their key set is served by a test server (jwksUri, fetched by the control plane) or inline (jwks).
import { Agent, createServer, type Server } from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { send } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { signer } from "./jwt.js";
import { eventually, freePort, GATEWAY, gatewayRoute, type Mesh, serviceEntry, startMesh } from "../scenarios/mesh.js";

const HOST = "catalog.example.com";
const ISSUER = "https://issuer.example.com";

const policy = (name: string, spec: string, namespace = "default") => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec}
`;

describeE2E("authorization on the ingress gateway", () => {
  let mesh: Mesh;
  let upstream: Upstream;
  let jwksServer: Server;
  let jwksUri: string;
  let port: number;
  const issuer = signer("k1", ISSUER);
  const stranger = signer("k2", ISSUER);

  // A new connection per request: a listener update leaves open connections on the previous filters until they close.
  const fresh = new Agent({ keepAlive: false });
  /** Status of a request through the gateway. */
  const status = async (path: string, options: { method?: string; headers?: Record<string, string> } = {}) =>
    (await send(port, { path, method: options.method, headers: { host: HOST, ...options.headers }, agent: fresh })).status;

  /** Replaces the policies file, waits until the gateway has ACKed the listeners of the new snapshot, then checks
   * that `probe` gives what the new policies should give. */
  async function policies(yaml: string, probe: () => Promise<number>, expected: number): Promise<void> {
    const gateway = () => mesh.controlPlane.xds.status().find((stream) => stream.nodeId === GATEWAY.nodeId);
    const before = gateway()?.snapshotVersion ?? 0;
    mesh.write("policies.yaml", yaml);
    await eventually(async () => {
      const now = gateway();
      expect(now?.snapshotVersion).toBeGreaterThan(before);
      expect(now?.types.Listener?.status).toBe("SYNCED");
    }, 15_000);
    await eventually(async () => expect(await probe()).toBe(expected), 5000);
  }

  beforeAll(async () => {
    upstream = await startUpstream({ name: "catalog" });
    port = await freePort();
    jwksServer = createServer((_, response) => response.end(issuer.jwks));
    await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
    jwksUri = `http://127.0.0.1:${(jwksServer.address() as { port: number }).port}/jwks.json`;
    mesh = await startMesh({ "gateway.yaml": gatewayRoute(port, HOST, "catalog"), "services.yaml": serviceEntry("catalog", 3000, { v1: upstream.port }) }, GATEWAY);
    await eventually(async () => expect(await status("/")).toBe(200), 15_000);
  });

  afterAll(async () => {
    await mesh?.stop();
    await upstream?.stop();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  it("ALLOW by path: matched paths pass, everything else is refused (403, RBAC: access denied)", async () => {
    // "If there are any ALLOW policies for the workload, the request is allowed only if one of them matches."
    await policies(policy("public", `  selector: { matchLabels: { istio: ingressgateway } }\n  action: ALLOW\n  rules:\n  - to: [{ operation: { paths: ["/public/*"] } }]`), () => status("/private"), 403);
    expect(await status("/public/items")).toBe(200);
    const refused = await send(port, { path: "/private", headers: { host: HOST }, agent: fresh });
    expect(refused.body).toBe("RBAC: access denied");
  });

  it("DENY is evaluated before ALLOW: a DELETE to an allowed path is refused", async () => {
    // "If there are any DENY policies that match the request, deny the request" (before ALLOW policies).
    await policies(
      [policy("public", `  action: ALLOW\n  rules:\n  - to: [{ operation: { paths: ["/public/*"] } }]`), policy("no-delete", `  action: DENY\n  rules:\n  - to: [{ operation: { methods: ["DELETE"] } }]`)].join("---\n"),
      () => status("/public/items", { method: "DELETE" }),
      403,
    );
    expect(await status("/public/items", { method: "GET" })).toBe(200);
  });

  it("an ALLOW policy without rules allows nothing; a DENY rule that is empty matches everything", async () => {
    // "allow-nothing": spec {} (action ALLOW by default) with no rules matches no request.
    await policies(policy("allow-nothing", "  {}"), () => status("/public/items"), 403);
    // A DENY policy with an empty rule denies every request; with no rules at all it denies nothing.
    await policies(
      [policy("allow-all", "  rules:\n  - {}"), policy("deny-none", "  action: DENY")].join("---\n"),
      () => status("/anything"),
      200,
    );
    await policies([policy("allow-all", "  rules:\n  - {}"), policy("deny-all", "  action: DENY\n  rules:\n  - {}")].join("---\n"), () => status("/anything"), 403);
  });

  it("notPaths, notMethods: a DENY of everything but /public", async () => {
    await policies(policy("only-public", `  action: DENY\n  rules:\n  - to: [{ operation: { notPaths: ["/public/*"] } }]`), () => status("/private"), 403);
    expect(await status("/public/items")).toBe(200);
    await policies(policy("only-get", `  action: DENY\n  rules:\n  - to: [{ operation: { notMethods: ["GET", "HEAD"] } }]`), () => status("/x", { method: "POST" }), 403);
    expect(await status("/x", { method: "GET" })).toBe(200);
  });

  it("hosts, ports and when: request.headers, each field ANDed, values ORed", async () => {
    await policies(
      policy(
        "header",
        `  rules:\n  - to: [{ operation: { hosts: ["catalog.example.*"], ports: ["${port}"] } }]\n    when:\n    - { key: "request.headers[x-user]", values: ["alice", "bob"] }`,
      ),
      () => status("/", { headers: { "x-user": "carol" } }),
      403,
    );
    expect(await status("/", { headers: { "x-user": "alice" } })).toBe(200);
    expect(await status("/", { headers: { "x-user": "bob" } })).toBe(200);
    expect(await status("/")).toBe(403);
  });

  it("source ipBlocks and notIpBlocks (the client's address, 127.0.0.1 here)", async () => {
    await policies(policy("from-loopback", `  rules:\n  - from: [{ source: { ipBlocks: ["127.0.0.0/8"] } }]`), () => status("/"), 200);
    await policies(policy("not-loopback", `  rules:\n  - from: [{ source: { notIpBlocks: ["127.0.0.1"] } }]`), () => status("/"), 403);
  });

  it("root-namespace policies apply to every workload; a workload's own namespace adds to them", async () => {
    await policies(policy("mesh-deny-admin", `  action: DENY\n  rules:\n  - to: [{ operation: { paths: ["/admin*"] } }]`, "istio-system"), () => status("/admin"), 403);
    expect(await status("/public")).toBe(200);
    // A policy of another namespace does not apply to this gateway (namespace default).
    await policies(policy("elsewhere", `  action: DENY\n  rules:\n  - {}`, "shop"), () => status("/admin"), 200);
  });

  it("AUDIT changes no decision", async () => {
    await policies(policy("audit-all", "  action: AUDIT\n  rules:\n  - {}"), () => status("/anything"), 200);
  });

  it("RequestAuthentication (jwksUri): a bad token is refused (401), none passes; requestPrincipals then require one", async () => {
    const requestAuthentication = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: istio-system }
spec:
  jwtRules:
  - issuer: "${ISSUER}"
    jwksUri: "${jwksUri}"
`;
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    // "A request that contains an invalid token is rejected; one without a token is accepted" (without a policy).
    await policies(requestAuthentication, () => status("/", { headers: bearer(stranger.token({ sub: "alice" })) }), 401);
    expect(await status("/")).toBe(200);
    expect(await status("/", { headers: bearer(issuer.token({ sub: "alice" })) })).toBe(200);
    // requestPrincipals is "<iss>/<sub>"; with it required, a request without a token is denied.
    await policies(
      [requestAuthentication, policy("alice-only", `  rules:\n  - from: [{ source: { requestPrincipals: ["${ISSUER}/alice"] } }]`)].join("---\n"),
      () => status("/"),
      403,
    );
    expect(await status("/", { headers: bearer(issuer.token({ sub: "alice" })) })).toBe(200);
    expect(await status("/", { headers: bearer(issuer.token({ sub: "bob" })) })).toBe(403);
    // "*" requires any valid token (the task's "require a valid token").
    await policies(
      [requestAuthentication, policy("any-token", `  rules:\n  - from: [{ source: { requestPrincipals: ["*"] } }]`)].join("---\n"),
      () => status("/", { headers: bearer(issuer.token({ sub: "bob" })) }),
      200,
    );
    expect(await status("/")).toBe(403);
  });

  it("request.auth.claims (inline jwks): a claim value, or one element of a list claim", async () => {
    const requestAuthentication = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: default }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  jwtRules:
  - issuer: "${ISSUER}"
    jwks: '${issuer.jwks}'
`;
    const bearer = (claims: Record<string, unknown>) => ({ authorization: `Bearer ${issuer.token(claims)}` });
    await policies(
      [requestAuthentication, policy("admins", `  rules:\n  - when:\n    - { key: "request.auth.claims[groups]", values: ["admin"] }`)].join("---\n"),
      () => status("/", { headers: bearer({ sub: "carol", groups: ["dev"] }) }),
      403,
    );
    expect(await status("/", { headers: bearer({ sub: "alice", groups: ["dev", "admin"] }) })).toBe(200);
    expect(await status("/", { headers: bearer({ sub: "dave", groups: "admin" }) })).toBe(200);
    expect(await status("/")).toBe(403);
  });
});

it("validation names what Skiff refuses: CUSTOM, a provider, an unknown condition, an empty source", async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { loadConfigDir, formatConfigError } = await import("../../control/sources/index.js");
  const dir = mkdtempSync(join(tmpdir(), "skiff-authz-"));
  try {
    writeFileSync(
      join(dir, "policies.yaml"),
      [
        policy("ext", "  action: CUSTOM\n  provider: { name: opa }\n  rules:\n  - {}"),
        policy("bad-when", '  rules:\n  - when: [{ key: "request.time", values: ["now"] }]'),
        policy("empty-source", "  rules:\n  - from: [{ source: {} }]"),
      ].join("---\n"),
    );
    const errors = loadConfigDir(dir).errors.map(formatConfigError);
    expect(errors.some((e) => e.includes("AuthorizationPolicy default/ext: spec.action: action CUSTOM (an external authorizer, ext_authz) is not supported"))).toBe(true);
    expect(errors.some((e) => e.includes("AuthorizationPolicy default/bad-when: spec.rules[0].when[0].key: a supported attribute"))).toBe(true);
    expect(errors.some((e) => e.includes("AuthorizationPolicy default/empty-source: spec.rules[0].from[0].source: a source must set at least one field"))).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
