// VirtualService route features through a real sidecar, configured only by YAML (issue 13): the book's chaos
// testing (fault delay and abort with percentages), rewrites, redirects, direct responses, header manipulation
// (route and destination), CORS, several mirrors with percentages, a delegate, and the match fields.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send, sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { startUpstream, type Upstream } from "../harness/upstream.js";
import { eventually, freePort, type Mesh, SIDECAR, startMesh } from "./mesh.js";

describeE2E("scenario: VirtualService route features", () => {
  const upstreams: Record<string, Upstream> = {};
  let mesh: Mesh;
  let port: number;
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") => send(port, { method, path, headers: { host: "catalog", ...headers } });
  const lastRequest = (name: string) => upstreams[name]!.requests.at(-1)!;

  beforeAll(async () => {
    for (const name of ["v1", "v2", "shadow", "reviews"]) upstreams[name] = await startUpstream({ name });
    port = await freePort();
    const endpoint = (name: string, labels = "") => `{ address: 127.0.0.1, ports: { http: ${upstreams[name]!.port} }${labels} }`;
    mesh = await startMesh(
      {
        "services.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog.shop.svc.cluster.local]
  ports: [{ number: ${port}, name: http }]
  resolution: STATIC
  endpoints: [${endpoint("v1", ", labels: { version: v1 }")}, ${endpoint("v2", ", labels: { version: v2 }")}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shadow, namespace: shop }
spec:
  hosts: [shadow.shop.svc.cluster.local]
  ports: [{ number: ${port}, name: http }]
  resolution: STATIC
  endpoints: [${endpoint("shadow")}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.svc.cluster.local]
  ports: [{ number: ${port}, name: http }]
  resolution: STATIC
  endpoints: [${endpoint("reviews")}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: catalog, namespace: shop }
spec:
  host: catalog
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`,
        "catalog-vs.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: catalog, namespace: shop }
spec:
  hosts: [catalog]
  http:
  - name: abort-all
    match: [{ headers: { x-chaos: { exact: abort } } }]
    fault: { abort: { httpStatus: 503, percentage: { value: 100 } } }
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: abort-half
    match: [{ headers: { x-chaos: { exact: abort-half } } }]
    fault: { abort: { httpStatus: 500, percentage: { value: 50 } } }
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: delay-all
    match: [{ headers: { x-chaos: { exact: delay } } }]
    fault: { delay: { fixedDelay: 50ms, percentage: { value: 100 } } }
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: rewrite
    match: [{ uri: { prefix: /api/v1 } }]
    rewrite: { uri: /v1, authority: catalog-api.internal }
    headers:
      request: { set: { x-route: api }, add: { x-via: skiff }, remove: [x-internal] }
      response: { set: { cache-control: no-store }, remove: [x-upstream-secret] }
    route:
    - destination: { host: catalog, subset: v1 }
      headers: { request: { set: { x-subset: v1 } }, response: { add: { x-served-from: v1 } } }
  - name: regex-rewrite
    match: [{ uri: { regex: "/items/([0-9]+)" } }]
    rewrite: { uriRegexRewrite: { match: "^/items/([0-9]+)$", rewrite: "/item?id=\\\\1" } }
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: moved
    match: [{ uri: { prefix: /old } }]
    redirect: { prefixRewrite: /new, authority: shop.example.com, redirectCode: 308 }
  - name: teapot
    match: [{ uri: { exact: /teapot }, queryParams: { brew: { exact: tea } } }]
    directResponse: { status: 418, body: { string: "I'm a teapot" } }
  - name: cors
    match: [{ uri: { prefix: /browser } }]
    corsPolicy:
      allowOrigins: [{ exact: "https://shop.example.com" }]
      allowMethods: [GET, POST]
      allowHeaders: [x-user]
      maxAge: 1h
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: mirrored
    match: [{ uri: { prefix: /mirrored } }]
    mirrors:
    - destination: { host: catalog, subset: v2 }
    - destination: { host: shadow }
      percentage: { value: 50 }
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: only-without-legacy
    match: [{ uri: { prefix: /modern }, withoutHeaders: { x-legacy: { exact: "true" } } }]
    route: [{ destination: { host: catalog, subset: v2 } }]
  - name: by-authority
    match: [{ uri: { prefix: /modern }, authority: { prefix: catalog } }]
    route: [{ destination: { host: catalog, subset: v1 } }]
  - name: reviews
    match: [{ uri: { prefix: /reviews } }]
    delegate: { name: reviews-routes }
  - route: [{ destination: { host: catalog, subset: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-routes, namespace: shop }
spec:
  http:
  - match: [{ uri: { prefix: /reviews/top } }]
    route: [{ destination: { host: reviews } }]
    headers: { response: { set: { x-delegate: top } } }
`,
      },
      { ...SIDECAR, namespace: "shop" },
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await Promise.all(Object.values(upstreams).map((upstream) => upstream.stop()));
  });

  describe("fault injection", () => {
    it("aborts every request at 100%, without reaching the service", async () => {
      const before = upstreams.v1!.requests.length;
      const tally = await eventually(async () => {
        const result = await sendMany(port, { count: 20, request: () => ({ headers: { host: "catalog", "x-chaos": "abort" } }) });
        expect(result.byStatus).toEqual({ 503: 20 });
        return result;
      });
      // No response came from an upstream (the harness tallies those as "none").
      expect(tally.byUpstream).toEqual({ none: 20 });
      expect(upstreams.v1!.requests.length).toBe(before);
    });

    it("aborts about half of the requests at 50%", async () => {
      const tally = await sendMany(port, { count: 400, concurrency: 8, request: () => ({ headers: { host: "catalog", "x-chaos": "abort-half" } }) });
      expect((tally.byStatus[500] ?? 0) + (tally.byStatus[200] ?? 0)).toBe(400);
      // Binomial(400, 0.5): 3.5 standard deviations is +-35.
      expect(tally.byStatus[500]).toBeGreaterThan(165);
      expect(tally.byStatus[500]).toBeLessThan(235);
    });

    it("delays every request at 100% (Envoy counts each injected delay)", async () => {
      const before = (await mesh.envoy.stat("http.outbound_127.0.0.1_" + port + ".fault.delays_injected")) ?? 0;
      const tally = await sendMany(port, { count: 10, request: () => ({ headers: { host: "catalog", "x-chaos": "delay" } }) });
      expect(tally.byStatus).toEqual({ 200: 10 });
      await eventually(async () => expect(await mesh.envoy.stat("http.outbound_127.0.0.1_" + port + ".fault.delays_injected")).toBe(before + 10));
    });
  });

  it("rewrites the path and authority and manipulates headers, route and destination alike", async () => {
    const response = await get("/api/v1/items", { "x-internal": "secret" });
    expect(response.status).toBe(200);
    const request = lastRequest("v1");
    expect(request.path).toBe("/v1/items");
    expect(request.headers.host).toBe("catalog-api.internal");
    expect(request.headers).toMatchObject({ "x-route": "api", "x-via": "skiff", "x-subset": "v1" });
    expect(request.headers["x-internal"]).toBeUndefined();
    expect(response.headers).toMatchObject({ "cache-control": "no-store", "x-served-from": "v1" });
  });

  it("rewrites the path by regex", async () => {
    expect((await get("/items/42")).status).toBe(200);
    expect(lastRequest("v1").path).toBe("/item?id=42");
  });

  it("redirects with the prefix rewritten, the new authority and the code asked for", async () => {
    const response = await get("/old/page");
    expect(response.status).toBe(308);
    expect(response.headers.location).toMatch(/^http:\/\/shop\.example\.com(:\d+)?\/new\/page$/);
  });

  it("answers directly when the query parameter matches, and routes otherwise", async () => {
    expect(await get("/teapot?brew=tea")).toMatchObject({ status: 418, body: "I'm a teapot" });
    expect((await get("/teapot?brew=coffee")).headers["x-upstream"]).toBe("v1");
  });

  it("answers CORS preflights for allowed origins and leaves other origins without CORS headers", async () => {
    const preflight = { origin: "https://shop.example.com", "access-control-request-method": "POST" };
    const allowed = await get("/browser", preflight, "OPTIONS");
    expect(allowed.headers).toMatchObject({ "access-control-allow-origin": "https://shop.example.com", "access-control-allow-methods": "GET,POST", "access-control-max-age": "3600" });
    const other = await get("/browser", { ...preflight, origin: "https://evil.example.com" }, "OPTIONS");
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("mirrors to several destinations, each at its own percentage, answering from the route", async () => {
    const [v2Before, shadowBefore] = [upstreams.v2!.requests.length, upstreams.shadow!.requests.length];
    const tally = await sendMany(port, { count: 200, concurrency: 4, request: (i) => ({ path: `/mirrored/${i}`, headers: { host: "catalog" } }) });
    expect(tally.byUpstream).toEqual({ v1: 200 });
    await eventually(async () => expect(upstreams.v2!.requests.length - v2Before).toBe(200));
    const shadowed = upstreams.shadow!.requests.length - shadowBefore;
    // Binomial(200, 0.5): 3.5 standard deviations is +-25.
    expect(shadowed).toBeGreaterThan(75);
    expect(shadowed).toBeLessThan(125);
  });

  it("matches on a missing header and on the authority", async () => {
    expect((await get("/modern")).headers["x-upstream"]).toBe("v2");
    expect((await get("/modern", { "x-legacy": "true" })).headers["x-upstream"]).toBe("v1");
  });

  it("routes a delegated prefix by the delegate's routes", async () => {
    const response = await get("/reviews/top");
    expect(response.headers["x-upstream"]).toBe("reviews");
    expect(response.headers["x-delegate"]).toBe("top");
  });
});
