// `skiff components`: build the pinned components of control/components/catalog.ts (Envoy's API descriptors,
// etcd, kube-apiserver, Prometheus, Jaeger, an OCI registry) from the Go module proxy, and say where they are.
import { existsSync } from "node:fs";
import { Command } from "commander";
import { COMPONENTS } from "../components/catalog.js";
import { buildComponent, componentDir, componentPath } from "../components/build.js";

export function componentsCommand(): Command {
  const command = new Command("components").description("build and find the components Skiff builds from Go modules (etcd, kube-apiserver, ...)");

  command
    .command("build")
    .description("build the named components (all when none is named) into .components/, reusing what is built")
    .argument("[names...]", `any of: ${COMPONENTS.map((entry) => entry.name).join(", ")}`)
    .action((names: string[]) => {
      for (const name of names.length > 0 ? names : COMPONENTS.map((entry) => entry.name)) {
        const result = buildComponent(name, (line) => console.error(`[${name}] ${line}`));
        console.log(`${name}: ${result.path}${result.built ? ` (built in ${result.seconds} s)` : " (already built)"}`);
      }
    });

  command
    .command("which")
    .description("print the path of a built component; exits 1 naming the command that builds it when it is not built")
    .argument("<name>")
    .action((name: string) => console.log(componentPath(name)));

  command
    .command("list")
    .description("the catalog: each component, its pinned module and version, and whether it is built")
    .action(() => {
      for (const entry of COMPONENTS) {
        const built = existsSync(componentDir(entry)) ? "built" : "not built";
        console.log(`${entry.name.padEnd(15)} ${`${entry.module}@${entry.version}`.padEnd(62)} ${built.padEnd(10)} ${entry.description}`);
      }
    });

  return command;
}
