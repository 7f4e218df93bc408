// A real OCI registry for tests: `distribution` (the components builder's `registry`) on 127.0.0.1, with filesystem
// storage in a temp folder and, when users are given, htpasswd (Basic) auth. `push` uploads a Wasm module as an image
// in one of the layouts Istio pulls (the Wasm image spec's "oci" variant, and the "compat" variant as an OCI or a
// Docker image), through the distribution API, and returns the image digest.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { componentPath } from "../../control/components/build.js";
import { waitFor } from "./envoy.js";
import { CHILD_MARKER, type Stoppable, testRunId, track, untrack } from "./processes.js";

export type ImageLayout = "wasm" | "compat-oci" | "compat-docker";

export class Registry implements Stoppable {
  readonly description: string;
  private log = "";

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly port: number,
    private readonly users: Record<string, string>,
  ) {
    this.description = `registry pid ${child.pid} (127.0.0.1:${port})`;
    child.stdout!.on("data", (chunk: Buffer) => (this.log += chunk.toString()));
    child.stderr!.on("data", (chunk: Buffer) => (this.log += chunk.toString()));
  }

  /** Starts the registry; with `users` ({name: password}) every request needs Basic auth. */
  static async start(options: { users?: Record<string, string> } = {}): Promise<Registry> {
    const users = options.users ?? {};
    const dir = mkdtempSync(join(tmpdir(), "skiff-registry-"));
    const binary = componentPath("registry");
    const lines = Object.entries(users).map(([user, password]) => {
      const made = spawnSync(binary, ["htpasswd", user], { input: `${password}\n`, encoding: "utf8" });
      if (made.status !== 0) throw new Error(`registry htpasswd failed: ${made.stderr}`);
      return made.stdout;
    });
    writeFileSync(join(dir, "htpasswd"), lines.join(""));
    const port = await freePort();
    const auth = lines.length ? `auth:\n  htpasswd:\n    realm: skiff-test\n    path: ${join(dir, "htpasswd")}\n` : "";
    writeFileSync(
      join(dir, "config.yml"),
      `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
    );
    const child = spawn(binary, ["serve", join(dir, "config.yml")], { env: { ...process.env, [CHILD_MARKER]: testRunId() }, stdio: ["ignore", "pipe", "pipe"] });
    const registry = new Registry(child, dir, port, users);
    track(registry);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined)) !== undefined, "the registry answering /v2/");
    } catch (error) {
      await registry.stop();
      throw new Error(`${(error as Error).message}\n${registry.log}`);
    }
    return registry;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  logTail(lines = 40): string {
    return this.log.split("\n").slice(-lines).join("\n");
  }

  /** Pushes `module` as `repository:tag` in the given layout; returns the image digest (sha256 hex of the manifest). */
  async push(repository: string, tag: string, module: Uint8Array, layout: ImageLayout): Promise<string> {
    const docker = layout === "compat-docker";
    const layer = layout === "wasm" ? Buffer.from(module) : gzipSync(tarWith("plugin.wasm", module));
    const config = Buffer.from(layout === "wasm" ? "{}" : JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
    const configType = layout === "wasm" ? "application/vnd.module.wasm.config.v1+json" : docker ? "application/vnd.docker.container.image.v1+json" : "application/vnd.oci.image.config.v1+json";
    const layerType = layout === "wasm" ? "application/vnd.module.wasm.content.layer.v1+wasm" : docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip" : "application/vnd.oci.image.layer.v1.tar+gzip";
    const manifestType = docker ? "application/vnd.docker.distribution.manifest.v2+json" : "application/vnd.oci.image.manifest.v1+json";
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: manifestType,
        config: { mediaType: configType, digest: await this.upload(repository, config), size: config.length },
        layers: [{ mediaType: layerType, digest: await this.upload(repository, layer), size: layer.length }],
      }),
    );
    const response = await this.fetch(`/v2/${repository}/manifests/${tag}`, { method: "PUT", headers: { "content-type": manifestType }, body: new Uint8Array(manifest) });
    if (response.status !== 201) throw new Error(`manifest upload: ${response.status} ${await response.text()}`);
    return createHash("sha256").update(manifest).digest("hex");
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      this.child.kill("SIGTERM");
      await exited;
    }
    untrack(this, this.logTail());
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async upload(repository: string, blob: Buffer): Promise<string> {
    const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
    const started = await this.fetch(`/v2/${repository}/blobs/uploads/`, { method: "POST" });
    if (started.status !== 202) throw new Error(`blob upload: ${started.status} ${await started.text()}`);
    const location = new URL(started.headers.get("location")!, `http://${this.address}`);
    location.searchParams.set("digest", digest);
    const done = await this.fetch(location.pathname + location.search, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array(blob) });
    if (done.status !== 201) throw new Error(`blob upload: ${done.status} ${await done.text()}`);
    return digest;
  }

  private fetch(path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    const [user, password] = Object.entries(this.users)[0] ?? [];
    if (user) headers.set("authorization", `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`);
    return fetch(`http://${this.address}${path}`, { ...init, headers });
  }
}

/** A one-file ustar archive. */
function tarWith(name: string, content: Uint8Array): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${content.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  header.fill(" ", 148, 156);
  const checksum = header.reduce((sum, byte) => sum + byte, 0);
  header.write(`${checksum.toString(8).padStart(6, "0")}\0 `, 148);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
