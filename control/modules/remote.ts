// The modules the control plane pulls from OCI registries for the WasmPlugins that name them. Pulls run in the
// background and never hold up translation: until a module is there, translation sends the plugin's failStrategy
// stand-in (see control/translate/wasm.ts), so a listener never waits for a registry (istio/istio#53279: a bad image
// url must not block a proxy). A failed pull is retried with backoff (1 s doubling to 60 s) while a plugin still
// names it. A plugin whose new image cannot be pulled keeps the module it last had, as a bad file edit keeps the last
// good configuration. `onChange` fires when a pull succeeds, so the control plane translates again.
import { readFileSync } from "node:fs";
import type { ModuleImage } from "../sources/model.js";
import { ModulePullError, type PulledModule, pullModule } from "./oci.js";

export interface ImageRequest {
  /** Who asks: "<kind>/<namespace>/<name>" (a plugin keeps its last good module across url changes). */
  owner: string;
  module: ModuleImage;
}

export interface PullFailure {
  owner: string;
  image: string;
  field: ModulePullError["field"];
  message: string;
}

interface Pull {
  image: ModuleImage;
  module?: PulledModule;
  error?: ModulePullError;
  attempts: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

const MAX_BACKOFF_MS = 60_000;

export class RemoteModules {
  private pulls = new Map<string, Pull>();
  private wanted = new Map<string, string>();
  private readonly lastGood = new Map<string, PulledModule>();
  private stopped = false;

  constructor(
    private readonly options: {
      onChange: () => void;
      log?: (line: string) => void;
      /** Plain HTTP to registries (tests); loopback registries fall back to it anyway. */
      insecure?: boolean;
    },
  ) {}

  /** The images the current configuration names: starts pulls for new ones, forgets the others. */
  want(requests: ImageRequest[]): void {
    this.wanted = new Map(requests.map((request) => [request.owner, key(request.module)]));
    for (const { module } of requests) {
      if (!this.pulls.has(key(module))) this.start(key(module), { image: module, attempts: 0 });
    }
    for (const [pullKey, pull] of this.pulls) {
      if ([...this.wanted.values()].includes(pullKey)) continue;
      clearTimeout(pull.timer);
      this.pulls.delete(pullKey);
    }
    for (const owner of this.lastGood.keys()) if (!this.wanted.has(owner)) this.lastGood.delete(owner);
  }

  /** The module for an owner: its image's, once pulled, else the last one it had; undefined when it has none. */
  module(owner: string): PulledModule | undefined {
    const pulled = this.pulls.get(this.wanted.get(owner) ?? "")?.module;
    if (pulled) this.lastGood.set(owner, pulled);
    return pulled ?? this.lastGood.get(owner);
  }

  /** Current pull failures, by owner (for logs, status and validate). */
  failures(): PullFailure[] {
    return [...this.wanted].flatMap(([owner, pullKey]) => {
      const pull = this.pulls.get(pullKey);
      return pull?.error ? [{ owner, image: pull.image.image, field: pull.error.field, message: pull.error.message }] : [];
    });
  }

  /** Resolves once every wanted image has been tried at least once (for tests and `skiff validate`). */
  async settled(): Promise<void> {
    await Promise.all([...this.pulls.values()].map((pull) => pull.running));
  }

  stop(): void {
    this.stopped = true;
    for (const pull of this.pulls.values()) clearTimeout(pull.timer);
  }

  private start(pullKey: string, pull: Pull): void {
    this.pulls.set(pullKey, pull);
    pull.running = this.attempt(pullKey, pull);
  }

  private async attempt(pullKey: string, pull: Pull): Promise<void> {
    pull.attempts += 1;
    try {
      const dockerConfig = pull.image.pullSecret ? readFileSync(pull.image.pullSecret, "utf8") : undefined;
      const module = await pullModule(pull.image.image, { dockerConfig, sha256: pull.image.sha256, insecure: this.options.insecure });
      if (this.pulls.get(pullKey) !== pull || this.stopped) return;
      pull.module = module;
      pull.error = undefined;
      this.options.log?.(`module ${pull.image.image}: pulled (image sha256:${module.imageDigest}, module sha256:${module.sha256}, ${module.bytes.length} bytes)`);
      this.options.onChange();
    } catch (thrown) {
      if (this.pulls.get(pullKey) !== pull || this.stopped) return;
      const error = thrown instanceof ModulePullError ? thrown : new ModulePullError(`${pull.image.image}: ${(thrown as Error).message}`);
      if (error.message !== pull.error?.message) this.options.log?.(`module pull failed (retrying): ${error.message}`);
      pull.error = error;
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (pull.attempts - 1));
      pull.timer = setTimeout(() => (pull.running = this.attempt(pullKey, pull)), delay);
      pull.timer.unref();
    }
  }
}

/** Pulls are shared by plugins that name the same image with the same pin and credentials. */
function key(image: ModuleImage): string {
  return JSON.stringify([image.image, image.sha256 ?? "", image.pullSecret ?? ""]);
}
