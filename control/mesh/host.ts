// What the pod tooling needs from the machine: privileges (CAP_NET_ADMIN for links and rules, CAP_SYS_ADMIN for the
// bind mounts `ip netns` makes), the Debian tools it drives (iproute2, iptables, util-linux's setpriv), and running
// them with errors that say which command failed and what it printed.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

export class MeshPermissionError extends Error {}

/** Whether this process may create namespaces, links and rules. */
export function hasNetAdmin(): boolean {
  try {
    const line = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (!line) return false;
    const capabilities = BigInt(`0x${line[1]}`);
    return [CAP_NET_ADMIN, CAP_SYS_ADMIN].every((bit) => (capabilities >> BigInt(bit)) & 1n);
  } catch {
    return false;
  }
}

export function requireNetAdmin(what: string): void {
  if (process.platform !== "linux") throw new MeshPermissionError(`${what} needs Linux (network namespaces, veth pairs, iptables)`);
  if (!hasNetAdmin()) {
    throw new MeshPermissionError(
      `${what} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, to manage network namespaces, bridges, veth pairs and iptables rules): run it as root, e.g. with sudo`,
    );
  }
}

/** Makes sure a Debian-packaged tool is on PATH, installing it with apt-get when it is missing (needs root). */
export function ensureAptTool(binary: string, debianPackage: string, log: (line: string) => void): void {
  try {
    execFileSync("which", [binary], { stdio: "ignore" });
    return;
  } catch {
    // Not installed.
  }
  if (process.getuid?.() !== 0) throw new Error(`${binary} is not installed: run \`apt-get install ${debianPackage}\` (as root) and retry`);
  log(`installing ${debianPackage} with apt-get`);
  execFileSync("apt-get", ["update"], { stdio: "ignore" });
  execFileSync("apt-get", ["install", "-y", debianPackage], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
}

/** Checks privileges and installs what is missing: iproute2 (`ip`), iptables, procps (`sysctl`), util-linux
 * (`setpriv`). */
export function ensureMeshPrerequisites(what: string, log: (line: string) => void = () => {}): void {
  requireNetAdmin(what);
  ensureAptTool("ip", "iproute2", log);
  ensureAptTool("iptables-restore", "iptables", log);
  ensureAptTool("sysctl", "procps", log);
  ensureAptTool("setpriv", "util-linux", log);
}

export class CommandError extends Error {
  constructor(
    readonly command: string[],
    readonly stderr: string,
  ) {
    super(`\`${command.join(" ")}\` failed: ${stderr.trim() || "no message"}`);
  }
}

/** Runs a command, returns its stdout; throws CommandError with its stderr when it fails. */
export function run(command: string[], input?: string): string {
  try {
    return execFileSync(command[0], command.slice(1), { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new CommandError(command, failed.stderr || failed.message);
  }
}

/** Runs a removal, ignoring "it is not there" (cleanup is idempotent: it may follow a crash at any point). */
export function runIgnoringMissing(command: string[]): void {
  try {
    run(command);
  } catch (error) {
    const message = error instanceof CommandError ? error.stderr : String(error);
    if (/cannot find|does not exist|no such|not found|bad rule|cannot open network namespace/i.test(message)) return;
    throw error;
  }
}

/** Writes a sysctl under /proc/sys/net (e.g. `ipv6/conf/skb3/disable_ipv6`). */
export function writeSysctl(path: string, value: string): void {
  writeFileSync(`/proc/sys/net/${path}`, value);
}
