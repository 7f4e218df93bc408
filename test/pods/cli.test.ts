// `skiff mesh` as a user runs it: a mesh, pods, names and capture rules from the command line, commands run in a pod,
// and `skiff mesh delete` removing it all; without root, every command says that it needs root.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { run } from "../../control/mesh/host.js";
import { STATE_DIR } from "../../control/mesh/state.js";
import { describePods } from "../harness/e2e.js";

function skiff(args: string[], options: { asUid?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const command = [process.execPath, "--import", "tsx", join(PROJECT_ROOT, "control/cli/main.ts"), ...args];
  const asUser = options.asUid === undefined ? [] : ["setpriv", "--reuid", String(options.asUid), "--regid", String(options.asUid), "--clear-groups", "--"];
  const [binary, ...rest] = [...asUser, ...command];
  return spawnSync(binary, rest, { cwd: PROJECT_ROOT, encoding: "utf8" });
}

describePods("skiff mesh", () => {
  it("makes a mesh with pods, names and capture rules, runs commands in pods, and deletes all of it", () => {
    const mesh = `cli${randomBytes(3).toString("hex")}`;
    try {
      const created = skiff(["mesh", "create", mesh]);
      expect(created.status, created.stderr).toBe(0);
      const hostAddress = /host address (\S+),/.exec(created.stdout)![1];
      expect(skiff(["mesh", "pod", "add", mesh, "web", "--capture", "--exclude-outbound-ports", "5432"]).stdout).toMatch(/^pod web: 198\.18\.\d+\.2, netns skiff\..*\.web, traffic captured/);
      expect(skiff(["mesh", "pod", "add", mesh, "db"]).status).toBe(0);
      expect(skiff(["mesh", "service", "add", mesh, "catalog.default.svc.cluster.local"]).stdout).toMatch(/^catalog\.default\.svc\.cluster\.local -> 198\.19\.\d+\.2$/m);

      // One command in the pod shows its names and its routes (each `skiff` start costs a second or more).
      const inPod = skiff(["mesh", "exec", mesh, "db", "--", "sh", "-c", "cat /etc/hosts; ip -4 route"]).stdout;
      expect(inPod).toMatch(/^198\.18\.\d+\.2 web$/m);
      expect(inPod).toMatch(/^198\.19\.\d+\.2 catalog\.default\.svc\.cluster\.local$/m);
      expect(inPod).toContain(`via ${hostAddress} dev eth0`);
      expect(inPod).not.toMatch(/^default /m);
      const rules = skiff(["mesh", "rules", mesh, "web"]).stdout;
      expect(rules).toContain("-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN");
      expect(rules).toContain("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001");
      expect(skiff(["mesh", "list"]).stdout).toMatch(new RegExp(`^${mesh} .* owner cli$`, "m"));
    } finally {
      expect(skiff(["mesh", "delete", mesh]).stdout).toContain(`mesh ${mesh} removed`);
    }
    expect(existsSync(join(STATE_DIR, "meshes", mesh))).toBe(false);
    expect(run(["ip", "netns", "list"])).not.toContain(`skiff.${mesh}.`);
    expect(run(["iptables", "-w", "-S"])).not.toContain(`skiff-mesh:${mesh}"`);
  }); // Nine `skiff` starts: `skiff mesh` loads only its own code (main.ts), about 2 s each at load average 35.

  it("says that it needs root when run without it", () => {
    for (const args of [["mesh", "create", "x"], ["mesh", "cleanup"]]) {
      const result = skiff(args, { asUid: 65534 });
      expect(result.status, args.join(" ")).toBe(1);
      expect(result.stderr).toMatch(/^skiff mesh \S+ needs root \(CAP_NET_ADMIN and CAP_SYS_ADMIN/);
    }
  });
});
