// Seed scenario "traffic mirroring": all catalog traffic is answered by v1 while a copy of each request goes to v2;
// clients never see v2's answers (here: v2 fails every request).
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import type { Upstream } from "../harness/upstream.js";
import { type CatalogVersions, eventually, freePort, meshVirtualService, type Mesh, SIDECAR, startCatalogVersions, startMesh } from "./mesh.js";

describeE2E("scenario: mirroring to v2", () => {
  let catalog: CatalogVersions;
  let v1: Upstream;
  let v2: Upstream;
  let mesh: Mesh;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    catalog = await startCatalogVersions(port, { script: () => ({ status: 500, body: "v2 is broken" }) });
    ({ v1, v2 } = catalog);
    mesh = await startMesh(
      {
        "catalog.yaml": catalog.yaml,
        "catalog-vs.yaml": meshVirtualService(
          "catalog",
          `  - route:
    - destination: { host: catalog, subset: version-v1 }
      weight: 100
    mirror:
      host: catalog
      subset: version-v2
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

  it("answers from v1 while v2 receives a copy of every request", async () => {
    const tally = await sendMany(port, { count: 50, request: (i) => ({ path: `/items/${i}`, headers: { host: "catalog" } }) });
    expect(tally.byStatus).toEqual({ 200: 50 });
    expect(tally.byUpstream).toEqual({ "catalog-v1": 50 });
    // Mirrored requests are fire-and-forget, so they may land a moment after the responses.
    await eventually(async () => expect(v2.requests).toHaveLength(50));
    expect(v2.requests.map((r) => r.path).sort()).toEqual(v1.requests.map((r) => r.path).sort());
    // Envoy marks the copy by suffixing the authority with -shadow.
    expect(new Set(v2.requests.map((r) => r.headers.host))).toEqual(new Set(["catalog-shadow"]));
  });
});
