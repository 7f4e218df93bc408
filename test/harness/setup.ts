// Runs in every test worker: prints the log tail of each running Envoy when a test fails, and at the end stops
// whatever a test file left running, failing the file so the leak is fixed rather than hidden.
import { afterAll, afterEach } from "vitest";
import { runningThings, takeLogTails } from "./processes.js";

// Registered first, so it runs after the test file's own afterEach hooks (which may already have stopped Envoy).
afterEach((context) => {
  const tails = takeLogTails();
  if (context.task.result?.state !== "fail") return;
  for (const { description, tail } of tails) console.error(`--- last lines of ${description} ---\n${tail}`);
});

afterAll(async () => {
  const left = runningThings();
  await Promise.all(left.map((thing) => thing.stop()));
  if (left.length > 0) {
    throw new Error(`test file left running (now stopped): ${left.map((thing) => thing.description).join("; ")}`);
  }
});

// A worker that dies mid-test must not leave Envoys behind.
process.once("exit", () => {
  for (const thing of runningThings()) void thing.stop();
});
