// The preset's `small` target (minimal runtime, the SDK collecting garbage itself) inside Envoy with two workers:
// hundreds of mixed requests through the probe module all come out right, and the VM never fails.
import { afterAll, beforeAll, expect, it } from "vitest";
import { sendMany } from "../harness/client.js";
import { describeE2E } from "../harness/e2e.js";
import { type Envoy, startEnvoy } from "../harness/envoy.js";
import { type Upstream, startUpstream } from "../harness/upstream.js";
import { probeBootstrap } from "./probe.js";

describeE2E("the small target in Envoy (--concurrency 2)", () => {
  let backend: Upstream;
  let callout: Upstream;
  let envoy: Envoy;

  beforeAll(async () => {
    backend = await startUpstream({ name: "backend" });
    callout = await startUpstream({ name: "callout-svc", script: () => ({ status: 200, body: "granted" }) });
    envoy = await startEnvoy({ bootstrap: await probeBootstrap({ backend: backend.port, callout: callout.port }, { configuration: { greeting: "small" } }, "small"), concurrency: 2 });
  });

  afterAll(async () => {
    await envoy?.stop();
    await callout?.stop();
    await backend?.stop();
  });

  it("answers 400 mixed requests correctly", async () => {
    const ops = ["mutate", "callout", "local", "replace-body"];
    const tally = await sendMany(await envoy.listenerPort("ingress"), {
      count: 400,
      concurrency: 8,
      request: (i) => ({ method: "POST", path: `/small/${i}`, headers: { "x-probe": ops[i % 4], "x-remove-me": "1" }, body: `body-${i}` }),
    });
    expect(tally.byStatus).toEqual({ 200: 300, 403: 100 });
    expect(tally.responses.every((r) => r.headers["x-probe-greeting"] === "small")).toBe(true);
    const seen = new Map(backend.requests.filter((r) => r.path.startsWith("/small/")).map((r) => [Number(r.path.split("/")[2]), r]));
    for (const [i, request] of seen) {
      const op = ops[i % 4];
      if (op === "mutate") expect(request.headers["x-added"]).toBe("one, two");
      if (op === "callout") expect(request.headers["x-callout-body"]).toBe("granted");
      if (op === "replace-body") expect(request.body).toBe(`replaced:body-${i}`);
    }
    expect(seen.size).toBe(300);
    expect(await envoy.stat("wasmcustom.skiff_probe.requests")).toBe(400);
    expect(envoy.log()).not.toMatch(/Wasm VM failed|abort:|Failed to load Wasm/i);
  });
});
