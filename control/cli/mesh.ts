// `skiff mesh`: pod networks on one machine (control/mesh/): create a mesh, add pods with istio-init's capture
// rules, name services, run commands in pods, and remove all of it again, also what a crashed run left behind.
import { spawnSync } from "node:child_process";
import { Command, InvalidArgumentError } from "commander";
import { captureRules, SIDECAR_OWN_PORTS } from "../mesh/capture.js";
import { addPod, addService, cleanupMeshes, createMesh, deleteMesh, listMeshes, podCommand, removePod, removeService } from "../mesh/mesh.js";
import { readPod } from "../mesh/state.js";
import { requireNetAdmin } from "../mesh/host.js";
import { label } from "./options.js";

function ports(value: string): number[] {
  return value
    .split(",")
    .filter(Boolean)
    .map((part) => {
      const port = Number(part);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`"${part}" is not a port`);
      return port;
    });
}

function cidrs(value: string): string[] {
  const list = value.split(",").filter(Boolean);
  for (const cidr of list) if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(cidr)) throw new InvalidArgumentError(`"${cidr}" is not an IPv4 range`);
  return list;
}

interface PodOptions {
  namespace: string;
  label: Record<string, string>;
  capture?: boolean;
  includeInboundPorts?: string;
  excludeInboundPorts?: number[];
  excludeOutboundPorts?: number[];
  excludeOutboundIpRanges?: string[];
}

export function meshCommand(): Command {
  const mesh = new Command("mesh").description(
    "pods on this machine: network namespaces on a bridge, addresses from 198.18.0.0/15, istio-init's capture rules (needs root)",
  );

  mesh
    .command("create")
    .description("create a mesh network: a bridge with the host's address on it, and a subnet of its own for pods and services")
    .argument("<mesh>", "a name: lowercase letters, digits, dashes")
    .action((name: string) => {
      const record = createMesh(name, { owner: "none" });
      console.log(`mesh ${name}: bridge ${record.bridge}, host address ${record.hostAddress}, pods ${record.podSubnet}, services ${record.serviceSubnet}`);
      console.log(`  control plane for its sidecars: skiff control-plane --listen ${record.hostAddress}:18000 ...`);
    });

  mesh
    .command("delete")
    .description("remove a mesh: its pods (and every process in them), links, host rules and records")
    .argument("<mesh>")
    .action((name: string) => {
      deleteMesh(name);
      console.log(`mesh ${name} removed`);
    });

  mesh
    .command("list")
    .description("the meshes on this machine, their owners, pods and services")
    .action(() => {
      const meshes = listMeshes();
      if (meshes.length === 0) console.log("no meshes");
      for (const { record, pods, services, ownerAlive } of meshes) {
        const owner = record.owner ? `pid ${record.owner.pid}${ownerAlive ? "" : " (gone: `skiff mesh cleanup` removes it)"}` : "cli";
        console.log(`${record.name}  bridge ${record.bridge}  host ${record.hostAddress}  owner ${owner}`);
        for (const pod of pods) {
          console.log(`  pod ${pod.name}  ${pod.address}  netns ${pod.netns}${pod.capture ? "  capture" : ""}`);
        }
        for (const service of services) console.log(`  service ${service.name}  ${service.address}`);
      }
    });

  const pod = mesh.command("pod").description("add or remove pods");
  pod
    .command("add")
    .description("add a pod: a network namespace on the mesh bridge, an address, the mesh's names in its /etc/hosts")
    .argument("<mesh>")
    .argument("<pod>")
    .option("--namespace <ns>", "the workload's namespace (for its sidecar's bootstrap)", "default")
    .option("--label <key=value...>", "workload label, repeatable", label, {} as Record<string, string>)
    .option("--capture", "install istio-init's capture rules: outbound TCP to 15001, inbound to 15006, uid 1337 excluded")
    .option("--include-inbound-ports <ports>", 'inbound ports to capture: "*" (default) or a comma-separated list')
    .option("--exclude-inbound-ports <ports>", `inbound ports not to capture, besides the sidecar's own (${SIDECAR_OWN_PORTS.join(",")})`, ports)
    .option("--exclude-outbound-ports <ports>", "outbound ports not to capture", ports)
    .option("--exclude-outbound-ip-ranges <cidrs>", "outbound destinations not to capture", cidrs)
    .action((meshName: string, podName: string, options: PodOptions) => {
      const capture = options.capture
        ? {
            includeInboundPorts: options.includeInboundPorts && options.includeInboundPorts !== "*" ? ports(options.includeInboundPorts) : ("*" as const),
            excludeInboundPorts: options.excludeInboundPorts,
            excludeOutboundPorts: options.excludeOutboundPorts,
            excludeOutboundIpRanges: options.excludeOutboundIpRanges,
          }
        : undefined;
      const record = addPod(meshName, podName, { namespace: options.namespace, labels: options.label, capture });
      console.log(`pod ${podName}: ${record.address}, netns ${record.netns}${capture ? ", traffic captured (`skiff mesh rules ${meshName} ${podName}` shows the rules)" : ""}`);
    });
  pod
    .command("delete")
    .description("remove a pod and every process in it")
    .argument("<mesh>")
    .argument("<pod>")
    .action((meshName: string, podName: string) => {
      removePod(meshName, podName);
      console.log(`pod ${podName} removed`);
    });

  const service = mesh.command("service").description("names every pod of a mesh resolves (its /etc/hosts)");
  service
    .command("add")
    .description("add a name: for a new service address (a VIP only a capturing sidecar answers), a pod, or a given address")
    .argument("<mesh>")
    .argument("<name>", "a host name, e.g. catalog or catalog.default.svc.cluster.local")
    .option("--pod <pod>", "resolve to this pod's address (like a headless service)")
    .option("--address <ip>", "resolve to this address")
    .action((meshName: string, name: string, options: { pod?: string; address?: string }) => {
      const record = addService(meshName, name, options);
      console.log(`${name} -> ${record.address}`);
    });
  service
    .command("delete")
    .argument("<mesh>")
    .argument("<name>")
    .action((meshName: string, name: string) => removeService(meshName, name));

  mesh
    .command("exec")
    .description("run a command in a pod (as root, or --uid), e.g. skiff mesh exec demo webapp -- curl -s http://catalog/")
    .argument("<mesh>")
    .argument("<pod>")
    .argument("<command...>")
    .option("--uid <uid>", "run as this uid and gid (e.g. 1337, the sidecar's, whose traffic is not captured)", Number)
    .action((meshName: string, podName: string, command: string[], options: { uid?: number }) => {
      requireNetAdmin("skiff mesh exec");
      const record = readPod(meshName, podName);
      if (!record) throw new Error(`mesh ${meshName} has no pod ${podName}`);
      const [binary, ...args] = podCommand(record.netns, command, options.uid);
      const result = spawnSync(binary, args, { stdio: "inherit" });
      process.exitCode = result.status ?? 1;
    });

  mesh
    .command("rules")
    .description("print the capture rules `pod add --capture` installs (iptables-restore input), or a pod's live nat table")
    .argument("[mesh]")
    .argument("[pod]")
    .action((meshName?: string, podName?: string) => {
      if (!meshName || !podName) {
        process.stdout.write(captureRules());
        return;
      }
      requireNetAdmin("skiff mesh rules");
      const record = readPod(meshName, podName);
      if (!record) throw new Error(`mesh ${meshName} has no pod ${podName}`);
      const [binary, ...args] = podCommand(record.netns, ["iptables-save", "-t", "nat"]);
      spawnSync(binary, args, { stdio: "inherit" });
    });

  mesh
    .command("cleanup")
    .description("remove meshes whose owning process is gone (a crashed test or demo); --all removes every mesh and leftover")
    .option("--all", "also meshes of running processes and of the command line, and stray namespaces, links and rules")
    .action((options: { all?: boolean }) => {
      const report = cleanupMeshes({ all: options.all });
      console.log(report.removedMeshes.length ? `removed: ${report.removedMeshes.join(", ")}` : "nothing to remove");
      if (report.keptMeshes.length) console.log(`kept (owner running, or made with \`skiff mesh create\`): ${report.keptMeshes.join(", ")}`);
      if (report.strays.length && !options.all) console.log(`not Skiff-recorded (\`--all\` removes them): ${report.strays.join(", ")}`);
    });

  return mesh;
}
