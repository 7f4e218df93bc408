// The TLS Secrets that Gateways and DestinationRules name in `credentialName`, and only those: one informer per Secret,
// by name (`fieldSelector=metadata.name=<name>` in the namespace), in the namespaces of the proxies that use them, as
// istiod's SecretGen looks a credential up in the proxy's own namespace (index.ts decides which). A renewed Secret
// (cert-manager replaces tls.crt and tls.key in place) reaches the proxies as a changed SDS resource.
import { type CoreV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { CA_SECRET_SUFFIX, type TlsCredential } from "../model.js";
import { Informer } from "./informer.js";

export class CredentialWatcher {
  private readonly informers = new Map<string, Informer<V1Secret>>();

  constructor(
    private readonly config: KubeConfig,
    private readonly core: CoreV1Api,
    private readonly onChange: () => void,
    private readonly log: (line: string) => void,
  ) {}

  /** Watches exactly the Secrets `secrets` (`<namespace>/<name>`: each credential and its `-cacert` companion); stops
   * watching the ones no longer named. */
  watch(secrets: Iterable<string>): void {
    const wanted = new Set<string>();
    for (const secret of secrets) for (const key of [secret, secret + CA_SECRET_SUFFIX]) wanted.add(key);
    for (const [key, informer] of this.informers) {
      if (wanted.has(key)) continue;
      void informer.stop();
      this.informers.delete(key);
      this.onChange();
    }
    for (const key of wanted) {
      if (this.informers.has(key)) continue;
      const [namespace, name] = key.split("/") as [string, string];
      const fieldSelector = `metadata.name=${name}`;
      const informer = new Informer<V1Secret>(this.config, {
        description: `secret ${key}`,
        kind: "Secret",
        path: `/api/v1/namespaces/${namespace}/secrets`,
        fieldSelector,
        list: () => this.core.listNamespacedSecret({ namespace, fieldSelector }),
        onChange: this.onChange,
        log: this.log,
      });
      this.informers.set(key, informer.start());
    }
  }

  /** Resolves once every Secret now watched has been listed once. */
  synced(): Promise<void> {
    return Promise.all([...this.informers.values()].map((informer) => informer.synced)).then(() => {});
  }

  /** The credentials found, by `namespace/name` (a Secret without a usable certificate, key or CA gives nothing). */
  credentials(): Record<string, TlsCredential> {
    const out: Record<string, TlsCredential> = {};
    const keys = [...this.informers.keys()].sort();
    for (const key of keys) {
      const secret = this.informers.get(key)!.objects()[0];
      if (!secret) continue;
      const credential = tlsCredential(secret);
      if (credential) out[key] = credential;
    }
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.informers.values()].map((informer) => informer.stop()));
    this.informers.clear();
  }
}

/** A Secret's certificate, key and CA, in the layouts Istio reads (pilot/pkg/credentials/kube/secrets.go):
 * `kubernetes.io/tls` (tls.crt, tls.key, optional ca.crt), or generic with `cert`, `key`, `cacert` (or only a CA:
 * `ca.crt` / `cacert`, as the `-cacert` companion holds). */
export function tlsCredential(secret: V1Secret): TlsCredential | undefined {
  const data = secret.data ?? {};
  const text = (...keys: string[]) => {
    const key = keys.find((candidate) => data[candidate]);
    return key ? Buffer.from(data[key]!, "base64").toString("utf8") : undefined;
  };
  const certificate = text("tls.crt", "cert");
  const privateKey = text("tls.key", "key");
  const caCertificate = text("ca.crt", "cacert");
  if (!(certificate && privateKey) && !caCertificate) return undefined;
  return { ...(certificate && privateKey ? { certificate, privateKey } : {}), ...(caCertificate ? { caCertificate } : {}) };
}
