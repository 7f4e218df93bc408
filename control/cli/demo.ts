// `skiff demo`: a demo service behind Envoy with the hello filter, on the ports of envoy-configs/static-hello.yaml.
// Ctrl-C stops everything.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { join } from "node:path";
import { locateEnvoy, PROJECT_ROOT } from "../envoy-binary/locate.js";

export async function runDemo(): Promise<void> {
  const service = createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ service: "demo", path: req.url, headers: req.headers }, null, 2) + "\n");
  });
  await new Promise<void>((resolve) => service.listen(8080, "127.0.0.1", resolve));

  const envoy = locateEnvoy();
  const child = spawn(envoy.path, ["-c", join("envoy-configs", "static-hello.yaml"), "--disable-hot-restart", "--log-level", "warn"], {
    cwd: PROJECT_ROOT,
    stdio: "inherit",
  });
  const stop = () => {
    child.kill("SIGTERM");
    service.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  console.log(`Envoy ${envoy.version} is proxying 127.0.0.1:10000 to a demo service on 127.0.0.1:8080 through the hello filter.`);
  console.log("Try:  curl -si http://127.0.0.1:10000/ | grep x-skiff-hello");
  console.log("Ctrl-C stops it.");
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  service.close();
  if (code !== 0 && code !== null) process.exitCode = code;
}
