// Teardown leaves nothing behind (issue 8 item 7): stopping a mesh removes every namespace, link, host rule, file and
// process of it; after a crash, `skiff mesh cleanup` does the same for meshes whose owner is gone, and leaves the
// meshes of running processes alone.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { run } from "../../control/mesh/host.js";
import { cleanupMeshes, deleteMesh, type MeshRecord, type PodRecord, podCommand } from "../../control/mesh/mesh.js";
import { claim, currentOwner, deletingExclusively, type Owner, processStartTime, readMesh, releaseIndex, STATE_DIR, subnetClaims } from "../../control/mesh/state.js";
import { CHILD_MARKER, testRunId } from "../harness/processes.js";
import { describePods } from "../harness/e2e.js";
import { type MeshNetwork, startMeshNetwork } from "../harness/pods.js";

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** Everything of a mesh that still exists on the machine. */
function leftovers(mesh: MeshRecord, pods: PodRecord[], pids: number[] = []): string[] {
  const found: string[] = [];
  for (const ns of readdirSync("/run/netns").filter((n) => n.startsWith(`skiff.${mesh.name}.`))) found.push(`netns ${ns}`);
  const links = run(["ip", "-o", "link", "show"]);
  for (const link of [mesh.bridge, ...pods.map((pod) => pod.hostVeth)]) if (links.includes(` ${link}:`) || links.includes(` ${link}@`)) found.push(`link ${link}`);
  for (const rule of run(["iptables", "-w", "-S"]).split("\n").filter((line) => line.includes(`skiff-mesh:${mesh.name}"`))) found.push(`rule ${rule}`);
  for (const pod of pods) if (existsSync(join("/etc/netns", pod.netns))) found.push(`files /etc/netns/${pod.netns}`);
  if (existsSync(join(STATE_DIR, "meshes", mesh.name))) found.push("state record");
  if (existsSync(join(STATE_DIR, "subnets", String(mesh.index)))) {
    const claim = JSON.parse(readFileSync(join(STATE_DIR, "subnets", String(mesh.index)), "utf8")) as { mesh: string };
    if (claim.mesh === mesh.name) found.push(`subnet claim ${mesh.index}`);
  }
  for (const pid of pids.filter(alive)) found.push(`process ${pid}`);
  return found;
}

function skiff(...args: string[]): string {
  const result = spawnSync(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), ...args], { cwd: PROJECT_ROOT, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`skiff ${args.join(" ")} failed: ${result.stderr}`);
  return result.stdout;
}

describePods("mesh cleanup", () => {
  let live: MeshNetwork;
  beforeAll(() => {
    live = startMeshNetwork();
  });
  let crashedMesh: string | undefined;
  afterAll(async () => {
    await live.stop();
    // Should the test fail before its cleanup ran: the crashed mesh has no test-run marker, so remove it here.
    if (crashedMesh && readMesh(crashedMesh)) deleteMesh(crashedMesh);
  });

  it("stop() removes every namespace, link, rule, file and process, also ones the test never tracked", async () => {
    const mesh = startMeshNetwork();
    const captured = mesh.addPod("captured", { capture: true });
    const plain = mesh.addPod("plain");
    mesh.addService("catalog");
    await captured.startApp();
    await plain.startApp();
    const [binary, ...args] = podCommand(plain.netns, ["sleep", "600"]);
    const untracked = spawn(binary, args, { stdio: "ignore", env: { ...process.env, [CHILD_MARKER]: testRunId() } });
    const pids = [...run(["ip", "netns", "pids", captured.netns]).split("\n"), ...run(["ip", "netns", "pids", plain.netns]).split("\n")].filter(Boolean).map(Number);
    expect(pids).toContain(untracked.pid);
    expect(leftovers(mesh.record, [captured.record, plain.record], pids)).not.toEqual([]);

    await mesh.stop();
    expect(leftovers(mesh.record, [captured.record, plain.record], pids)).toEqual([]);
  });

  it("after a crash, `skiff mesh cleanup` removes the dead owner's mesh and leaves running owners' meshes alone", async () => {
    // Its own process group, so that killing it also kills its helpers (tsx's esbuild) but not the pod's process.
    const owner = spawn(process.execPath, ["--import", "tsx", join(PROJECT_ROOT, "test/pods/crash-owner.ts")], {
      cwd: PROJECT_ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, [CHILD_MARKER]: testRunId() },
    });
    const exited = new Promise((resolve) => owner.once("exit", resolve));
    let crashed: { mesh: MeshRecord; pods: PodRecord[]; orphan: number };
    try {
      const line = await Promise.race([
        new Promise<string>((resolve) => createInterface({ input: owner.stdout! }).once("line", resolve)),
        exited.then((code) => Promise.reject(new Error(`crash-owner exited with ${code}`))),
      ]);
      crashed = JSON.parse(line) as typeof crashed;
      crashedMesh = crashed.mesh.name;
      const kinds = leftovers(crashed.mesh, crashed.pods, [crashed.orphan]).map((thing) => thing.split(" ")[0]);
      // Two pods' namespaces and hosts files, the bridge and two veths, three host rules, the records, the process.
      expect(kinds.sort()).toEqual(["files", "files", "link", "link", "link", "netns", "netns", "process", "rule", "rule", "rule", "state", "subnet"]);
      expect(skiff("mesh", "list")).toContain(`${crashed.mesh.name}  bridge`);
    } finally {
      process.kill(-owner.pid!, "SIGKILL");
      await exited;
    }
    expect(alive(crashed.orphan)).toBe(true); // The crash left a process in a pod.
    const listed = skiff("mesh", "list");
    if (listed.includes(crashed.mesh.name)) expect(listed).toMatch(new RegExp(`${crashed.mesh.name} .*gone`)); // (unless cleaned meanwhile)

    // Another test run's teardown removes only its own run's meshes: never a crashed tool's (nor reports it as its own).
    expect(cleanupMeshes({ testRun: `another-run-${randomBytes(4).toString("hex")}` }).removedMeshes).toEqual([]);

    // Other runs on this machine may run a cleanup meanwhile (the same code): then this one finds nothing to remove,
    // and what counts is that nothing of the crashed mesh is left either way.
    const output = skiff("mesh", "cleanup");
    expect(output).not.toMatch(new RegExp(`kept .*\\b${crashed.mesh.name}\\b`));
    expect(output).toMatch(new RegExp(`kept .*\\b${live.name}\\b`));
    expect(leftovers(crashed.mesh, crashed.pods, [crashed.orphan])).toEqual([]);

    // The running owner's mesh still works.
    const a = live.addPod("a");
    const b = live.addPod("b");
    const server = await b.startApp();
    await server.listen(8080);
    expect((await (await a.startApp()).request("b", 8080)).status).toBe(200);
  });

  it("removes one mesh once at a time: a second removal waits for the first, a dead remover's lock is taken over", () => {
    const name = `lock${randomBytes(3).toString("hex")}`;
    const lock = join(STATE_DIR, "deleting", name);
    const released = join(STATE_DIR, "deleting", `${name}.released-by-holder`);
    // A live process holding the removal lock: it finishes its "removal" a moment after the lock exists.
    const holder = spawn("sh", ["-c", `while [ ! -e ${lock} ]; do sleep 0.05; done; sleep 1; touch ${released}; rm -f ${lock}; exec sleep 600`], {
      stdio: "ignore",
      env: { ...process.env, [CHILD_MARKER]: testRunId() },
    });
    try {
      expect(claim(lock, JSON.stringify({ pid: holder.pid!, startTime: processStartTime(holder.pid!)!, command: "holder" } satisfies Owner))).toBe(true);
      let ranAfterHolder: boolean | undefined;
      deletingExclusively(name, () => {
        ranAfterHolder = existsSync(released);
        expect(JSON.parse(readFileSync(lock, "utf8"))).toEqual(currentOwner());
      });
      expect(ranAfterHolder).toBe(true);
      expect(existsSync(lock)).toBe(false);

      // A remover that died holding the lock (a pid that has exited): the next removal takes the lock over at once.
      const dead = spawnSync("true").pid;
      expect(claim(lock, JSON.stringify({ pid: dead, startTime: 1, command: "crashed remover" } satisfies Owner))).toBe(true);
      let ran = false;
      deletingExclusively(name, () => (ran = true));
      expect(ran).toBe(true);
      expect(existsSync(lock)).toBe(false);
    } finally {
      holder.kill("SIGKILL");
      for (const path of [lock, released]) spawnSync("rm", ["-f", path]);
    }
  });

  it("never gives away a subnet another mesh holds now", () => {
    // A late removal of a mesh that had index i must not drop the claim of the mesh that holds i now.
    releaseIndex(live.record.index, `gone${randomBytes(3).toString("hex")}`);
    expect(subnetClaims().find((c) => c.index === live.record.index)?.mesh).toBe(live.name);
  });
});
