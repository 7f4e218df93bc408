// oci:// Wasm modules from a real OCI registry (distribution, built by the components builder, on 127.0.0.1 with
// htpasswd auth): each image layout Istio pulls gives back the module byte for byte; a sha256 pin is checked (the
// image digest or the module's; a wrong one is refused, naming spec.sha256); missing or wrong pull credentials are
// refused without the credentials ever appearing in the error.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { ModulePullError, parseImageReference, pullModule } from "../../control/modules/oci.js";
import { type ImageLayout, Registry } from "../harness/registry.js";

const HELLO = readFileSync(`${PROJECT_ROOT}/build/filters/hello.wasm`);
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const dockerConfig = (registry: string, user: string, password: string) =>
  JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${user}:${password}`).toString("base64") } } });

describe("oci:// modules from a real registry", () => {
  let registry: Registry;
  const digests = new Map<ImageLayout, string>();
  const PASSWORD = "s3cret-pull-password";

  beforeAll(async () => {
    registry = await Registry.start({ users: { puller: PASSWORD } });
    for (const layout of ["wasm", "compat-oci", "compat-docker"] as const) digests.set(layout, await registry.push(`skiff/hello-${layout}`, "v1", HELLO, layout));
  });
  afterAll(async () => registry?.stop());

  const pull = (url: string, options: Parameters<typeof pullModule>[1] = {}) =>
    pullModule(url, { dockerConfig: dockerConfig(registry.address, "puller", PASSWORD), ...options });

  for (const layout of ["wasm", "compat-oci", "compat-docker"] as const) {
    it(`pulls the ${layout} layout, byte for byte, with its image digest`, async () => {
      const pulled = await pull(`oci://${registry.address}/skiff/hello-${layout}:v1`);
      expect(Buffer.from(pulled.bytes).equals(HELLO)).toBe(true);
      expect(pulled.sha256).toBe(sha256(HELLO));
      expect(pulled.imageDigest).toBe(digests.get(layout));
    });
  }

  it("pulls by digest, and takes a pin of the image digest or of the module", async () => {
    const digest = digests.get("wasm")!;
    expect((await pull(`oci://${registry.address}/skiff/hello-wasm@sha256:${digest}`)).sha256).toBe(sha256(HELLO));
    expect((await pull(`oci://${registry.address}/skiff/hello-wasm:v1`, { sha256: digest })).imageDigest).toBe(digest);
    expect((await pull(`oci://${registry.address}/skiff/hello-compat-docker:v1`, { sha256: sha256(HELLO) })).sha256).toBe(sha256(HELLO));
  });

  it("refuses a wrong sha256 pin, naming spec.sha256", async () => {
    const wrong = "0".repeat(64);
    const error = await pull(`oci://${registry.address}/skiff/hello-wasm:v1`, { sha256: wrong }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(ModulePullError);
    expect(error).toMatchObject({ field: "spec.sha256", message: expect.stringContaining(`sha256 ${wrong} matches neither the image digest`) });
    await expect(pull(`oci://${registry.address}/skiff/hello-wasm@sha256:${wrong}`)).rejects.toThrow(/not found \(404\)/);
  });

  it("refuses without credentials and with wrong ones, never showing them", async () => {
    const url = `oci://${registry.address}/skiff/hello-wasm:v1`;
    await expect(pullModule(url)).rejects.toThrow("no pull credentials for this registry (imagePullSecret)");
    const wrong = await pullModule(url, { dockerConfig: dockerConfig(registry.address, "puller", "not-the-password") }).then(() => new Error("pulled"), (thrown: Error) => thrown);
    expect(wrong.message).toContain("the pull credentials were not accepted");
    expect(wrong.message).not.toMatch(/not-the-password|puller|cHVsbGVy/);
  });

  it("says what is wrong with a missing image, a non-Wasm image and a malformed reference", async () => {
    await expect(pull(`oci://${registry.address}/skiff/nothing:v1`)).rejects.toThrow(/skiff\/nothing:v1: not found \(404\)/);
    await registry.push("skiff/not-wasm", "v1", Buffer.from("#!/bin/sh\necho hi\n"), "wasm");
    await expect(pull(`oci://${registry.address}/skiff/not-wasm:v1`)).rejects.toThrow("the image holds no Wasm module");
    expect(() => parseImageReference("oci://registry-only")).toThrow("expected oci://<registry>/<repository>");
    expect(() => parseImageReference("oci://r.example/Upper/Case:v1")).toThrow("not a valid repository name");
    expect(parseImageReference("oci://r.example:5000/a/b")).toEqual({ registry: "r.example:5000", repository: "a/b", tag: "latest", digest: undefined });
  });

  it("reports an unreachable registry", async () => {
    await expect(pullModule("oci://127.0.0.1:1/skiff/hello:v1", { timeoutMs: 5_000 })).rejects.toThrow(/cannot reach the registry/);
  });
});
