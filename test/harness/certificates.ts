// Test certificates, made with openssl (Debian's, as the scenarios use): PEM text, nothing left on disk.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

export interface TestAuthority {
  /** The CA's certificate (PEM). */
  cert: string;
  /** A certificate this CA signs for `cn`, with `dnsNames` as its SANs (none: a client certificate), and its key. */
  issue(cn: string, dnsNames?: string[]): { cert: string; key: string };
}

/** A CA valid for a day; its key stays in memory for `issue`. */
export function certificateAuthority(name: string): TestAuthority {
  const inTemp = <T>(work: (dir: string, openssl: (...args: string[]) => void) => T): T => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-cert-"));
    try {
      return work(dir, (...args) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const ca = inTemp((dir, openssl) => {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", `/CN=${name}`, "-keyout", "ca.key", "-out", "ca.crt");
    return { cert: readFileSync(join(dir, "ca.crt"), "utf8"), key: readFileSync(join(dir, "ca.key"), "utf8") };
  });
  return {
    cert: ca.cert,
    issue: (cn, dnsNames = []) =>
      inTemp((dir, openssl) => {
        writeFileSync(join(dir, "ca.crt"), ca.cert);
        writeFileSync(join(dir, "ca.key"), ca.key, { mode: 0o600 });
        writeFileSync(join(dir, "ext.cnf"), dnsNames.length > 0 ? `subjectAltName=${dnsNames.map((dns) => `DNS:${dns}`).join(",")}\n` : "basicConstraints=CA:FALSE\n");
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`, "-keyout", "tls.key", "-out", "tls.csr");
        openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "tls.crt");
        return { cert: readFileSync(join(dir, "tls.crt"), "utf8"), key: readFileSync(join(dir, "tls.key"), "utf8") };
      }),
  };
}
