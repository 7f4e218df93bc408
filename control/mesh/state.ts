// What exists, recorded under /run/skiff/mesh (a tmpfs: it vanishes at reboot together with the namespaces and links it
// describes), so that any process, also after the one that made a mesh crashed, can find and remove all of it.
//
//   subnets/<i>                        claim of mesh index i: { mesh, owner } (created exclusively: the claim is atomic)
//   meshes/<name>/mesh.json            the mesh (MeshRecord); the folder appears by an atomic rename, complete
//   meshes/<name>/pods/<pod>.json      a pod (PodRecord), created exclusively (pod names are unique in a mesh)
//   meshes/<name>/addresses/<octet>    claim of a pod or service address (198.18.i.<octet> / 198.19.i.<octet>)
//   meshes/<name>/services/<name>.json a service name and its address (ServiceRecord)
//   deleting/<name>                    the process removing that mesh (Owner): one at a time, see deletingExclusively
//
// Every claim is a file created with O_EXCL, so engineers and parallel test files sharing the machine never get the
// same subnet, name or address, without a lock; only removing a mesh takes one (per mesh, see deletingExclusively).
import { randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CaptureOptions } from "./capture.js";

export const STATE_DIR = "/run/skiff/mesh";

/** The process a mesh belongs to; a mesh without one was made from the command line and stays until deleted. */
export interface Owner {
  pid: number;
  /** Start time of that process (field 22 of /proc/<pid>/stat), so a reused pid is not mistaken for the owner. */
  startTime: number;
  /** How it was started, for `skiff mesh list`. */
  command: string;
}

export interface MeshRecord {
  name: string;
  index: number;
  bridge: string;
  hostAddress: string;
  podSubnet: string;
  serviceSubnet: string;
  owner?: Owner;
  /** The test run that made it (SKIFF_TEST_RUN), so the suite can check it left nothing behind. */
  testRun?: string;
  createdAt: string;
}

export interface PodRecord {
  name: string;
  address: string;
  octet: number;
  netns: string;
  hostVeth: string;
  /** The workload's namespace and labels, which its sidecar's bootstrap carries (skiff bootstrap --namespace/--label). */
  namespace: string;
  labels: Record<string, string>;
  /** The capture rules installed in the pod, if any. */
  capture?: CaptureOptions;
}

export interface ServiceRecord {
  /** The host name that resolves in every pod of the mesh. */
  name: string;
  address: string;
}

export function meshDir(name: string): string {
  return join(STATE_DIR, "meshes", name);
}

/** The owner record of this process. */
export function currentOwner(): Owner {
  return { pid: process.pid, startTime: processStartTime(process.pid)!, command: process.argv.slice(1).join(" ") };
}

export function ownerAlive(owner: Owner | undefined): boolean {
  if (!owner) return true;
  return processStartTime(owner.pid) === owner.startTime;
}

/** When a process started (clock ticks after boot): with its pid, it tells the process from a later one given the pid. */
export function processStartTime(pid: number): number | undefined {
  try {
    // The command (field 2) may contain spaces and parentheses: fields after its closing parenthesis start at 3.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
}

/** Creates `path` with `content` only if it does not exist yet; false when someone else has it. */
export function claim(path: string, content: string): boolean {
  mkdirSync(join(path, ".."), { recursive: true });
  try {
    writeFileSync(path, content, { flag: "wx" });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

/** Claims the lowest free mesh index; `inUse` vetoes indexes whose subnet the machine already uses. */
export function claimIndex(mesh: string, owner: Owner | undefined, max: number, inUse: (index: number) => boolean): number {
  for (let index = 0; index < max; index++) {
    if (inUse(index)) continue;
    if (claim(join(STATE_DIR, "subnets", String(index)), JSON.stringify({ mesh, owner }))) return index;
  }
  throw new Error(`no free mesh subnet: all ${max} are taken (see \`skiff mesh list\`, and \`skiff mesh cleanup\` for leftovers)`);
}

export interface SubnetClaim {
  index: number;
  mesh: string;
  owner?: Owner;
}

export function subnetClaims(): SubnetClaim[] {
  return readJsonDir<Omit<SubnetClaim, "index">>(join(STATE_DIR, "subnets")).map(([file, claimed]) => ({ index: Number(file), ...claimed }));
}

/** Gives mesh index `index` back, if `mesh` still holds it (after a release, another mesh may hold it already). */
export function releaseIndex(index: number, mesh: string): void {
  const path = join(STATE_DIR, "subnets", String(index));
  if (readJson<{ mesh: string }>(path)?.mesh === mesh) rmSync(path, { force: true });
}

/** How long a removal waits for another process removing the same mesh (it runs a few dozen `ip` commands). */
const DELETION_WAIT_MS = 120_000;

/** Runs `remove` for `mesh` while no other process removes it. Two removals at once (`skiff mesh cleanup` in two test
 * runs, both finding the same dead owner's mesh) would otherwise both release its subnet index: the second release
 * could drop the claim of a new mesh that took the index meanwhile, or delete that mesh's bridge and veths (named by
 * the index). A removal waits for one in progress to finish, then runs itself (finding little or nothing left); a lock
 * whose holder died mid-removal is taken over. */
export function deletingExclusively(mesh: string, remove: () => void): void {
  const lock = join(STATE_DIR, "deleting", mesh);
  const deadline = Date.now() + DELETION_WAIT_MS;
  while (!claim(lock, JSON.stringify(currentOwner()))) {
    const holder = readJson<Owner>(lock);
    if (holder && !ownerAlive(holder)) takeOverStaleLock(lock, holder);
    else if (holder && Date.now() > deadline) throw new Error(`mesh ${mesh} is being removed by pid ${holder.pid} (${holder.command}) for over ${DELETION_WAIT_MS / 1000} s`);
    else if (holder) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50); // Mesh operations are synchronous.
  }
  try {
    remove();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Removes a dead process's lock. Moved aside first, so that of two processes taking it over only one removes it; if
 * what was moved is by then a live process's lock (taken over and locked again in between), it goes back. */
function takeOverStaleLock(lock: string, stale: Owner): void {
  const aside = `${lock}.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    renameSync(lock, aside);
  } catch {
    return; // Someone else moved or released it.
  }
  const moved = readJson<Owner>(aside);
  if (moved && (moved.pid !== stale.pid || moved.startTime !== stale.startTime)) {
    try {
      linkSync(aside, lock);
    } catch {
      // Locked again meanwhile by a third process: it holds the lock now.
    }
  }
  rmSync(aside, { force: true });
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined; // Absent, or being written.
  }
}

/** Writes a mesh's folder complete, then moves it into place; false if a mesh of that name exists. */
export function publishMesh(record: MeshRecord): boolean {
  const staging = join(STATE_DIR, "meshes", `.${record.name}.${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  writeFileSync(join(staging, "mesh.json"), JSON.stringify(record, null, 2));
  try {
    renameSync(staging, meshDir(record.name));
    return true;
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if (["EEXIST", "ENOTEMPTY"].includes((error as NodeJS.ErrnoException).code ?? "")) return false;
    throw error;
  }
}

export function readMesh(name: string): MeshRecord | undefined {
  try {
    return JSON.parse(readFileSync(join(meshDir(name), "mesh.json"), "utf8")) as MeshRecord;
  } catch {
    return undefined;
  }
}

export function listMeshRecords(): MeshRecord[] {
  let names: string[];
  try {
    names = readdirSync(join(STATE_DIR, "meshes")).filter((name) => !name.startsWith("."));
  } catch {
    return [];
  }
  return names.flatMap((name) => readMesh(name) ?? []);
}

export function removeMeshRecord(name: string): void {
  rmSync(meshDir(name), { recursive: true, force: true });
}

export function listPods(mesh: string): PodRecord[] {
  return readJsonDir<PodRecord>(join(meshDir(mesh), "pods")).map(([, pod]) => pod);
}

export function readPod(mesh: string, pod: string): PodRecord | undefined {
  return listPods(mesh).find((record) => record.name === pod);
}

export function listServices(mesh: string): ServiceRecord[] {
  return readJsonDir<ServiceRecord>(join(meshDir(mesh), "services")).map(([, service]) => service);
}

/** Claims the lowest free octet (2-254) of the mesh's pod or service subnet. */
export function claimOctet(mesh: string, kind: "pod" | "service", owner: string, first: number, last: number): number {
  for (let octet = first; octet <= last; octet++) {
    if (claim(join(meshDir(mesh), "addresses", `${kind}-${octet}`), owner)) return octet;
  }
  throw new Error(`mesh ${mesh} has no free ${kind} address left`);
}

export function releaseOctet(mesh: string, kind: "pod" | "service", octet: number): void {
  rmSync(join(meshDir(mesh), "addresses", `${kind}-${octet}`), { force: true });
}

export function podRecordPath(mesh: string, pod: string): string {
  return join(meshDir(mesh), "pods", `${pod}.json`);
}

export function serviceRecordPath(mesh: string, service: string): string {
  return join(meshDir(mesh), "services", `${service}.json`);
}

function readJsonDir<T>(dir: string): Array<[string, T]> {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  return files.flatMap((file): Array<[string, T]> => {
    try {
      return [[file.replace(/\.json$/, ""), JSON.parse(readFileSync(join(dir, file), "utf8")) as T]];
    } catch {
      return []; // Removed meanwhile, or being written.
    }
  });
}
