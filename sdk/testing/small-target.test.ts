// The preset's `small` target (`--runtime minimal -Oz`): nothing collects garbage by itself there, so the SDK collects
// after every 64 finished contexts. Many streams through the probe module must behave as under the default runtime
// and leave the guest's memory bounded.
import { beforeAll, expect, it } from "vitest";
import { fixtureModule } from "../tools/fixtures.js";
import { Emulator } from "./index.js";

let small: string;

beforeAll(async () => {
  small = await fixtureModule("probe", "small");
});

const GET = { ":method": "GET", ":path": "/", ":authority": "a" };

function exercise(vm: Emulator, rounds: number): void {
  for (let i = 0; i < rounds; i++) {
    const local = vm.http();
    local.sendRequestHeaders({ ...GET, "x-probe": "local" }, { endOfStream: true });
    expect(local.localResponse?.status).toBe(403);

    const callout = vm.http();
    callout.sendRequestHeaders({ ...GET, "x-probe": "callout" }, { endOfStream: true });
    expect(callout.requestHeaders.get("x-callout-body")).toBe(`answer ${i}`);
    callout.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });

    const body = vm.http();
    body.sendRequestHeaders({ ...GET, ":method": "POST", "x-probe": "replace-body" });
    body.sendRequestBody(`chunk-${i}`, { endOfStream: true });
    expect(body.requestBody).toBe(`replaced:chunk-${i}`);
    body.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
  }
}

it("serves thousands of streams correctly with memory that stops growing", async () => {
  const vm = await Emulator.load(small, { pluginConfig: { greeting: "small" }, logLevel: "warn" });
  let answers = 0;
  vm.onHttpCall(() => ({ status: 200, body: `answer ${answers++}` }));
  const memory = () => vm.worker(0).exports.memory.buffer.byteLength;
  exercise(vm, 500);
  const afterWarmUp = memory();
  answers = 0;
  exercise(vm, 2000);
  expect(memory()).toBe(afterWarmUp);
  expect(vm.metric("skiff_probe.requests")).toBe(7500);
});
