// Seed scenario "traffic shifting": a mesh VirtualService sends 90% of catalog traffic to v1 and 10% to v2; over
// 2000 requests through a sidecar the split is within 3 points of that.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type CatalogVersions, freePort, meshVirtualService, type Mesh, SIDECAR, startCatalogVersions, startMesh } from "./mesh.js";

describeE2E("scenario: a 90/10 traffic shift", () => {
  let catalog: CatalogVersions;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    catalog = await startCatalogVersions(port);
    mesh = await startMesh(
      {
        "catalog.yaml": catalog.yaml,
        "catalog-vs.yaml": meshVirtualService(
          "catalog",
          `  - route:
    - destination: { host: catalog, subset: version-v1 }
      weight: 90
    - destination: { host: catalog, subset: version-v2 }
      weight: 10
`,
        ),
      },
      SIDECAR,
    );
  });

  afterAll(async () => {
    await mesh?.stop();
    await catalog?.stop();
  });

  it("splits 2000 requests 90/10 within +-3%", async () => {
    const tally = await sendMany(port, { count: 2000, concurrency: 8, request: () => ({ headers: { host: "catalog" } }) });
    expect(tally.byStatus).toEqual({ 200: 2000 });
    const v1Share = (tally.byUpstream["catalog-v1"] ?? 0) / 2000;
    expect(v1Share).toBeGreaterThanOrEqual(0.87);
    expect(v1Share).toBeLessThanOrEqual(0.93);
    expect((tally.byUpstream["catalog-v1"] ?? 0) + (tally.byUpstream["catalog-v2"] ?? 0)).toBe(2000);
  });

  it("answers 502 for a host outside the registry (REGISTRY_ONLY)", async () => {
    const tally = await sendMany(port, { count: 3, request: () => ({ headers: { host: "unknown.example.com" } }) });
    expect(tally.byStatus).toEqual({ 502: 3 });
  });
});
