// Mesh networks and pods on one machine: a bridge carrying the host's address, and per pod a network namespace joined
// to it by a veth pair, with its own address, a hosts file for service names, and optionally istio-init's capture
// rules. The network is closed: pods have a route to their mesh's subnets and nothing else (no default route, no NAT),
// and host rules drop anything a pod sends that is not for another pod or the host's bridge address.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bridgeName,
  checkHostName,
  checkName,
  FIRST_POD_OCTET,
  hostVethName,
  inSubnet,
  LAST_OCTET,
  LINK_PREFIX,
  MAX_MESHES,
  meshAddresses,
  NETNS_PREFIX,
  netnsName,
  podAddress,
  RULE_COMMENT_PREFIX,
  ruleComment,
  serviceAddress,
} from "./addresses.js";
import { type CaptureOptions, captureRules } from "./capture.js";
import { ensureMeshPrerequisites, requireNetAdmin, run, runIgnoringMissing, writeSysctl } from "./host.js";
import {
  claim,
  claimIndex,
  claimOctet,
  currentOwner,
  deletingExclusively,
  listMeshRecords,
  listPods,
  listServices,
  type MeshRecord,
  ownerAlive,
  type PodRecord,
  podRecordPath,
  publishMesh,
  readMesh,
  readPod,
  releaseIndex,
  releaseOctet,
  removeMeshRecord,
  type ServiceRecord,
  serviceRecordPath,
  subnetClaims,
} from "./state.js";

export type { MeshRecord, PodRecord, ServiceRecord } from "./state.js";

export interface CreateMeshOptions {
  /** "process": the mesh belongs to this process, and `skiff mesh cleanup` removes it once the process is gone (tests,
   * the demo). "none" (the CLI): it stays until deleted by name or by `cleanup --all`. */
  owner: "process" | "none";
  log?: (line: string) => void;
}

export interface AddPodOptions {
  /** The workload's namespace (default "default") and labels, for its sidecar's bootstrap. */
  namespace?: string;
  labels?: Record<string, string>;
  /** Install istio-init's capture rules (redirect to a sidecar on 15001/15006). */
  capture?: CaptureOptions | boolean;
}

/** Host rules of a mesh (filter table), each inserted first in its chain and tagged with the mesh's comment. */
function meshHostRules(record: MeshRecord): string[][] {
  const tag = ["-m", "comment", "--comment", ruleComment(record.name)];
  return [
    // Nothing from the pods is routed to the host's other interfaces, nor from them into the pods (bridged traffic
    // between pods passes FORWARD with the bridge as both interfaces when br_netfilter is on, and is left alone).
    ["FORWARD", "-i", record.bridge, "!", "-o", record.bridge, ...tag, "-j", "DROP"],
    ["FORWARD", "!", "-i", record.bridge, "-o", record.bridge, ...tag, "-j", "DROP"],
    // Of the host, pods reach only its address on the bridge.
    ["INPUT", "-i", record.bridge, "!", "-d", `${record.hostAddress}/32`, ...tag, "-j", "DROP"],
  ];
}

export function createMesh(name: string, options: CreateMeshOptions): MeshRecord {
  checkName("mesh", name);
  const log = options.log ?? (() => {});
  ensureMeshPrerequisites("skiff mesh create", log);
  const owner = options.owner === "process" ? currentOwner() : undefined;
  if (readMesh(name)) throw new Error(`mesh ${name} exists (see \`skiff mesh list\`)`);
  const used = usedAddresses();
  const index = claimIndex(name, owner, MAX_MESHES, (i) => {
    const { podSubnet, serviceSubnet } = meshAddresses(i);
    return used.some((address) => inSubnet(address, podSubnet) || inSubnet(address, serviceSubnet));
  });
  const record: MeshRecord = {
    name,
    index,
    bridge: bridgeName(index),
    ...meshAddresses(index),
    ...(owner ? { owner } : {}),
    ...(process.env.SKIFF_TEST_RUN ? { testRun: process.env.SKIFF_TEST_RUN } : {}),
    createdAt: new Date().toISOString(),
  };
  if (!publishMesh(record)) {
    releaseIndex(index, name);
    throw new Error(`mesh ${name} exists (see \`skiff mesh list\`)`);
  }
  try {
    // A stale bridge of a crashed mesh that was never cleaned up would make `ip link add` fail: remove it first.
    runIgnoringMissing(["ip", "link", "del", record.bridge]);
    run(["ip", "link", "add", record.bridge, "type", "bridge"]);
    writeSysctl(`ipv6/conf/${record.bridge}/disable_ipv6`, "1");
    writeSysctl(`ipv4/conf/${record.bridge}/forwarding`, "0");
    run(["ip", "addr", "add", `${record.hostAddress}/24`, "dev", record.bridge]);
    run(["ip", "link", "set", record.bridge, "up"]);
    for (const rule of meshHostRules(record)) run(["iptables", "-w", "-I", rule[0], "1", ...rule.slice(1)]);
  } catch (error) {
    deleteMesh(name);
    throw error;
  }
  log(`mesh ${name}: bridge ${record.bridge}, pods in ${record.podSubnet}, services in ${record.serviceSubnet}, host ${record.hostAddress}`);
  return record;
}

export function addPod(mesh: string, pod: string, options: AddPodOptions = {}): PodRecord {
  checkName("pod", pod);
  ensureMeshPrerequisites("skiff mesh pod add");
  const record = requireMesh(mesh);
  const octet = claimOctet(mesh, "pod", pod, FIRST_POD_OCTET, LAST_OCTET);
  const capture = options.capture === true ? {} : options.capture || undefined;
  const podRecord: PodRecord = {
    name: pod,
    address: podAddress(record.index, octet),
    octet,
    netns: netnsName(mesh, pod),
    hostVeth: hostVethName(record.index, octet),
    namespace: options.namespace ?? "default",
    labels: options.labels ?? {},
    ...(capture ? { capture } : {}),
  };
  if (!claim(podRecordPath(mesh, pod), JSON.stringify(podRecord, null, 2))) {
    releaseOctet(mesh, "pod", octet);
    throw new Error(`mesh ${mesh} already has a pod ${pod}`);
  }
  const { netns, hostVeth } = podRecord;
  try {
    removePodNetwork(podRecord); // Leftovers of a crashed pod of the same name.
    run(["ip", "netns", "add", netns]);
    // No IPv6 in pods: the closed world is IPv4 only (no link-local addresses, nothing to capture twice).
    run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
    run(["ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    writeSysctl(`ipv6/conf/${hostVeth}/disable_ipv6`, "1");
    run(["ip", "link", "set", hostVeth, "master", record.bridge, "up"]);
    run(["ip", "-n", netns, "addr", "add", `${podRecord.address}/24`, "dev", "eth0"]);
    run(["ip", "-n", netns, "link", "set", "lo", "up"]);
    run(["ip", "-n", netns, "link", "set", "eth0", "up"]);
    // The only routes: the pod subnet (on the bridge, from the address above) and the service subnet via the host,
    // which owns none of those addresses: only a capturing sidecar makes a connection to one work.
    run(["ip", "-n", netns, "route", "add", record.serviceSubnet, "via", record.hostAddress, "dev", "eth0"]);
    run(["ip", "netns", "exec", netns, "iptables-restore", "-w"], podRules(record, capture));
    writeHostsFiles(mesh);
  } catch (error) {
    removePod(mesh, pod);
    throw error;
  }
  return podRecord;
}

/** The pod's iptables rules: istio-init's capture (nat table) when asked for, and in every pod a filter rule that
 * refuses a connection to a service address that nothing captured (Kubernetes has kube-proxy there; without it the
 * connection would wait for a SYN answer that never comes). The filter table sees the destination after nat, so a
 * connection the sidecar captured is not refused. */
function podRules(mesh: MeshRecord, capture: CaptureOptions | undefined): string {
  const refuse = ["*filter", `-A OUTPUT -d ${mesh.serviceSubnet} -p tcp -j REJECT --reject-with tcp-reset`, `-A OUTPUT -d ${mesh.serviceSubnet} -j REJECT`, "COMMIT", ""];
  return `${capture ? captureRules(capture) : ""}${refuse.join("\n")}`;
}

export function removePod(mesh: string, pod: string): void {
  requireNetAdmin("skiff mesh pod delete");
  const record = readPod(mesh, pod);
  if (!record) throw new Error(`mesh ${mesh} has no pod ${pod}`);
  removePodNetwork(record);
  rmSync(podRecordPath(mesh, pod), { force: true });
  releaseOctet(mesh, "pod", record.octet);
  for (const service of listServices(mesh).filter((s) => s.address === record.address)) removeService(mesh, service.name);
  writeHostsFiles(mesh);
}

/** A name every pod of the mesh resolves: to `address`, to a pod's address, or to a new service address (VIP). */
export function addService(mesh: string, name: string, target: { address?: string; pod?: string } = {}): ServiceRecord {
  checkHostName(name);
  requireNetAdmin("skiff mesh service add");
  const record = requireMesh(mesh);
  let address = target.address;
  let claimed: number | undefined;
  if (target.pod) address = readPod(mesh, target.pod)?.address ?? fail(`mesh ${mesh} has no pod ${target.pod}`);
  if (!address) {
    claimed = claimOctet(mesh, "service", name, FIRST_POD_OCTET, LAST_OCTET);
    address = serviceAddress(record.index, claimed);
  }
  const service: ServiceRecord = { name, address };
  if (!claim(serviceRecordPath(mesh, name), JSON.stringify(service))) {
    if (claimed !== undefined) releaseOctet(mesh, "service", claimed);
    throw new Error(`mesh ${mesh} already has a service ${name}`);
  }
  writeHostsFiles(mesh);
  return service;
}

export function removeService(mesh: string, name: string): void {
  requireNetAdmin("skiff mesh service delete");
  const record = requireMesh(mesh);
  const service = listServices(mesh).find((s) => s.name === name);
  if (!service) throw new Error(`mesh ${mesh} has no service ${name}`);
  rmSync(serviceRecordPath(mesh, name), { force: true });
  if (inSubnet(service.address, record.serviceSubnet)) releaseOctet(mesh, "service", Number(service.address.split(".")[3]));
  writeHostsFiles(mesh);
}

/** The command line that runs `command` in a pod (`ip netns exec`, which also bind-mounts the pod's hosts file),
 * as another user when `uid` is given. */
export function podCommand(netns: string, command: string[], uid?: number): string[] {
  const user = uid === undefined ? [] : ["setpriv", "--reuid", String(uid), "--regid", String(uid), "--clear-groups", "--"];
  return ["ip", "netns", "exec", netns, ...user, ...command];
}

/** Removes a mesh and everything in it: processes in its pods, namespaces, links, host rules, files, records. Safe
 * when several processes remove the same mesh at once (one after the other, see deletingExclusively). */
export function deleteMesh(name: string): void {
  requireNetAdmin("skiff mesh delete");
  deletingExclusively(name, () => removeMeshNetwork(name));
}

function removeMeshNetwork(name: string): void {
  const record = readMesh(name);
  const claims = subnetClaims().filter((c) => c.mesh === name);
  for (const pod of record ? listPods(name) : []) removePodNetwork(pod);
  // Namespaces of pods whose record was never written (a crash in between) are found by their name.
  for (const netns of listNetns().filter((ns) => ns.startsWith(`${NETNS_PREFIX}${name}.`))) removeNetns(netns);
  removeHostRules((comment) => comment === ruleComment(name));
  // Links by the mesh index, known from the record or, after a crash during create, from the subnet claim alone.
  for (const index of new Set([...(record ? [record.index] : []), ...claims.map((c) => c.index)])) {
    // An index another mesh holds now names that mesh's links (after a crash, a record may outlive its claim).
    if (subnetClaims().some((c) => c.index === index && c.mesh !== name)) continue;
    for (const link of listLinks().filter((l) => l.startsWith(`${LINK_PREFIX.veth}${index}p`))) runIgnoringMissing(["ip", "link", "del", link]);
    runIgnoringMissing(["ip", "link", "del", bridgeName(index)]);
  }
  removeMeshRecord(name);
  for (const subnet of claims) releaseIndex(subnet.index, name);
}

export interface MeshStatus {
  record: MeshRecord;
  pods: PodRecord[];
  services: ServiceRecord[];
  /** False when the owning process is gone: the mesh is a leftover that `skiff mesh cleanup` removes. */
  ownerAlive: boolean;
}

export function listMeshes(): MeshStatus[] {
  return listMeshRecords().map((record) => ({
    record,
    pods: listPods(record.name),
    services: listServices(record.name),
    ownerAlive: ownerAlive(record.owner),
  }));
}

export interface CleanupReport {
  removedMeshes: string[];
  /** Namespaces, links and rules that no mesh record accounts for (removed only with `all`). */
  strays: string[];
  keptMeshes: string[];
}

/** Removes meshes whose owning process is gone (only those made by tests, with `onlyTestRuns`), or the meshes of one
 * test run whatever their owner's state (`testRun`: nothing else, so that a run's teardown never takes, nor reports as
 * its own, another run's or a crashed tool's mesh), or all of them (`all`), with `all` also anything Skiff's naming
 * marks as its own that no record accounts for. Meshes of running processes and of the CLI are kept. */
export function cleanupMeshes(options: { all?: boolean; testRun?: string; onlyTestRuns?: boolean } = {}): CleanupReport {
  requireNetAdmin("skiff mesh cleanup");
  const report: CleanupReport = { removedMeshes: [], strays: [], keptMeshes: [] };
  const meshes = listMeshRecords();
  for (const record of meshes) {
    const ownerGone = record.owner !== undefined && !ownerAlive(record.owner) && (!options.onlyTestRuns || record.testRun !== undefined);
    const remove = options.all || (options.testRun !== undefined ? record.testRun === options.testRun : ownerGone);
    if (remove) {
      deleteMesh(record.name);
      report.removedMeshes.push(record.name);
    } else {
      report.keptMeshes.push(record.name);
    }
  }
  // Subnet claims of meshes that never got published (a crash during create).
  for (const subnet of subnetClaims()) {
    if (!readMesh(subnet.mesh) && (options.all || (!options.onlyTestRuns && options.testRun === undefined && !ownerAlive(subnet.owner)))) {
      deleteMesh(subnet.mesh);
      if (!report.removedMeshes.includes(subnet.mesh)) report.removedMeshes.push(subnet.mesh);
    }
  }
  const known = listMeshRecords();
  const knownNetns = new Set(known.flatMap((record) => listPods(record.name).map((pod) => pod.netns)));
  const knownIndexes = new Set([...known.map((record) => record.index), ...subnetClaims().map((c) => c.index)]);
  const strayNetns = listNetns().filter((ns) => ns.startsWith(NETNS_PREFIX) && !knownNetns.has(ns) && !known.some((r) => ns.startsWith(`${NETNS_PREFIX}${r.name}.`)));
  const strayLinks = listLinks().filter((link) => {
    const match = /^sk[bv](\d+)/.exec(link);
    return match && !knownIndexes.has(Number(match[1]));
  });
  const knownComments = new Set(known.map((record) => ruleComment(record.name)));
  const strayRule = (comment: string) => comment.startsWith(RULE_COMMENT_PREFIX) && !knownComments.has(comment);
  const strayComments = [...new Set(hostRules().map((rule) => rule.comment).filter(strayRule))];
  report.strays = [...strayNetns.map((ns) => `netns ${ns}`), ...strayLinks.map((link) => `link ${link}`), ...strayComments.map((c) => `rules ${c}`)];
  if (options.all) {
    for (const netns of strayNetns) removeNetns(netns);
    for (const link of strayLinks) runIgnoringMissing(["ip", "link", "del", link]);
    removeHostRules(strayRule);
  }
  return report;
}

function requireMesh(name: string): MeshRecord {
  return readMesh(name) ?? fail(`no mesh ${name} (see \`skiff mesh list\`)`);
}

function fail(message: string): never {
  throw new Error(message);
}

function removePodNetwork(pod: PodRecord): void {
  removeNetns(pod.netns);
  // Deleting the namespace destroys its veth end and with it the pair; this catches a pair whose pod end never moved.
  runIgnoringMissing(["ip", "link", "del", pod.hostVeth]);
}

/** Kills every process in a namespace (a namespace outlives `ip netns del` while a process holds it), then removes it
 * and its /etc/netns folder. */
function removeNetns(netns: string): void {
  let pids: string[] = [];
  try {
    pids = run(["ip", "netns", "pids", netns]).split("\n").filter(Boolean);
  } catch {
    // No such namespace.
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  runIgnoringMissing(["ip", "netns", "del", netns]);
  rmSync(join("/etc/netns", netns), { recursive: true, force: true });
}

/** /etc/netns/<ns>/hosts of every pod: localhost, every pod by name, every service. `ip netns exec` bind-mounts each
 * file of that folder over its namesake in /etc. nsswitch.conf makes /etc/hosts the only source of host names, and
 * resolv.conf names no server: any other name fails at once (ENOTFOUND) instead of waiting for a DNS answer. */
function writeHostsFiles(mesh: string): void {
  const pods = listPods(mesh);
  const lines = [
    "127.0.0.1 localhost",
    ...pods.map((pod) => `${pod.address} ${pod.name}`),
    ...listServices(mesh).map((service) => `${service.address} ${service.name}`),
  ];
  const nsswitch = `${readFileSync("/etc/nsswitch.conf", "utf8").replace(/^hosts:.*$/m, "").trimEnd()}\nhosts: files\n`;
  for (const pod of pods) {
    const dir = join("/etc/netns", pod.netns);
    mkdirSync(dir, { recursive: true });
    writeAtomically(join(dir, "hosts"), `# skiff mesh ${mesh}, pod ${pod.name}\n${lines.join("\n")}\n`);
    writeAtomically(join(dir, "resolv.conf"), "# skiff mesh pod: names resolve from /etc/hosts only (the pod network has no DNS server)\noptions timeout:1 attempts:1\n");
    writeAtomically(join(dir, "nsswitch.conf"), nsswitch);
  }
}

function writeAtomically(path: string, content: string): void {
  writeFileSync(`${path}.${process.pid}`, content);
  renameSync(`${path}.${process.pid}`, path);
}

function listNetns(): string[] {
  try {
    return readdirSync("/run/netns");
  } catch {
    return [];
  }
}

function listLinks(): string[] {
  return run(["ip", "-o", "link", "show"])
    .split("\n")
    .flatMap((line) => {
      const match = /^\d+: ([^:@]+)/.exec(line);
      return match ? [match[1]] : [];
    });
}

/** Addresses the machine already uses (its interfaces and routes), so a mesh never takes a subnet in use. */
function usedAddresses(): string[] {
  const text = `${run(["ip", "-o", "-4", "addr", "show"])}\n${run(["ip", "-4", "route", "show", "table", "all"])}`;
  return [...text.matchAll(/\b(198\.1[89]\.\d+\.\d+)\b/g)].map((match) => match[1]);
}

/** Host filter rules tagged by a mesh, each as the arguments that append it (`iptables -S`, comments unquoted). */
function hostRules(): Array<{ comment: string; args: string[] }> {
  return run(["iptables", "-w", "-S"])
    .split("\n")
    .filter((line) => line.includes(RULE_COMMENT_PREFIX))
    .map((line) => {
      const args = (line.match(/"[^"]*"|\S+/g) ?? []).map((token) => token.replace(/^"(.*)"$/, "$1"));
      return { comment: args[args.indexOf("--comment") + 1], args };
    });
}

function removeHostRules(matches: (comment: string) => boolean): void {
  for (const rule of hostRules()) {
    // Delete with the arguments that appended it, "-A" becoming "-D".
    if (matches(rule.comment)) runIgnoringMissing(["iptables", "-w", "-D", ...rule.args.slice(1)]);
  }
}
