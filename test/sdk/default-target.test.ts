// The preset's default build target is `small` (AssemblyScript's minimal runtime: nothing collects unless the SDK
// asks, which it does every 64 finished contexts). Every filter of the repository, as `skiff build` makes it, serves
// many streams with the configuration its benchmark uses, and its linear memory stops growing: the guest side of the
// soak behind that choice (bench/RESULTS.md, "Soak of the build targets").
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { DEFAULT_TARGET, filterModule, projectFilters } from "../../sdk/tools/compile.js";
import { Emulator } from "../../sdk/testing/index.js";
import { BENCHES } from "../../bench/filters/run.js";
import { join } from "node:path";

const REQUEST = {
  ":method": "GET", ":path": "/", ":authority": "bench", ":scheme": "http", "x-user-id": "user-4711", "x-cohort": "internal",
};

describe(`filters built with the default target (${DEFAULT_TARGET})`, () => {
  const configurations = new Map<string, unknown>([["hello", "soak"], ...BENCHES.map((b): [string, unknown] => [b.filter, b.configuration])]);
  const headers = new Map(BENCHES.map((b) => [b.filter, b.variant.requestHeaders ?? {}]));

  it("covers every filter in filters/", () => {
    expect(projectFilters(PROJECT_ROOT).map((f) => f.name).sort()).toEqual([...configurations.keys()].sort());
  });

  for (const [name, configuration] of configurations) {
    it(`${name}: 12,000 streams leave the guest memory where 2,000 left it`, async () => {
      const vm = await Emulator.load(join(PROJECT_ROOT, filterModule(name)), { pluginConfig: configuration as never, logLevel: "warn" });
      const memory = () => vm.worker(0).exports.memory.buffer.byteLength;
      const streams = (count: number) => {
        for (let i = 0; i < count; i++) {
          const stream = vm.http();
          stream.sendRequestHeaders({ ...REQUEST, ...headers.get(name) }, { endOfStream: true });
          stream.sendResponseHeaders({ ":status": "200", "content-type": "application/json" }, { endOfStream: true });
          expect(stream.finished).toBe(true);
        }
      };
      streams(2000);
      const afterWarmUp = memory();
      streams(10000);
      expect(memory()).toBe(afterWarmUp);
    }, 120_000);
  }
});
