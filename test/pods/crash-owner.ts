// A process that makes a mesh (owned by itself), pods with capture rules, a service, and a process in a pod that
// outlives it, then waits to be killed: what a crashed demo or tool leaves behind (cleanup.test.ts). The mesh carries
// no test-run marker, so other test runs starting meanwhile leave it to `skiff mesh cleanup` (global-setup.ts removes
// only test leftovers).
import { spawn } from "node:child_process";
import { addPod, addService, createMesh, podCommand } from "../../control/mesh/mesh.js";

delete process.env.SKIFF_TEST_RUN;
const mesh = createMesh(`crash${process.pid}`, { owner: "process" });
const pods = [addPod(mesh.name, "a", { capture: true }), addPod(mesh.name, "b")];
addService(mesh.name, "catalog");
const [binary, ...args] = podCommand(pods[0].netns, ["sleep", "600"]);
const orphan = spawn(binary, args, { detached: true, stdio: "ignore" });
orphan.unref();
process.stdout.write(`${JSON.stringify({ mesh, pods, orphan: orphan.pid })}\n`);
setInterval(() => {}, 60_000);
