// Test certificates, made with openssl (Debian's, as the scenarios use): PEM text, nothing left on disk.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A self-signed server certificate for `host` (its CN and only DNS name), valid for a day, with its key. */
export function selfSignedCertificate(host: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "skiff-cert-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`, "-keyout", "tls.key", "-out", "tls.crt"], {
      cwd: dir,
      stdio: "ignore",
    });
    return { cert: readFileSync(join(dir, "tls.crt"), "utf8"), key: readFileSync(join(dir, "tls.key"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
