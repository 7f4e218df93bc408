// The optional validating admission webhook (`skiff control-plane --kubernetes --admission-webhook`), as istiod's
// (pkg/webhooks/validation/server/server.go): the API server sends each create or update of an Istio object as an
// AdmissionReview (admission.k8s.io/v1) to POST /validate, and an object Skiff would refuse is refused before it is
// stored, with the message `skiff validate` and the status written by the kubernetes source give (parse.ts
// parseObject: the kind's schema and its own checks), naming resource, field and problem. Checks that need the whole
// mesh (EnvoyFilter patches against the proxies they select) are not made here, as istiod's webhook checks one object;
// the status of the stored object reports those.
//
// HTTPS with a certificate of the control plane's CA for CONTROL_PLANE_NAME (the Service the API server calls, see
// examples/kubernetes/admission-webhook.yaml) and the listening IP (for a `clientConfig.url`), renewed at half its
// lifetime without a restart; the API server trusts it by the webhook's caBundle (the mesh root). Like istiod's port
// 15017 it answers anyone: it tells whether an object is valid, nothing of the mesh.
import { createServer, type Server } from "node:https";
import { isIP } from "node:net";
import type { CertificateAuthority } from "../../ca/authority.js";
import { servingCertificate } from "../../ca/serving.js";
import { formatConfigError } from "../model.js";
import { parseObject } from "../parse.js";
import { KINDS } from "../schema/index.js";

/** Istio's webhook port (istiod serves validation on 15017). */
export const ADMISSION_WEBHOOK_PORT = 15017;
export const ADMISSION_WEBHOOK_PATH = "/validate";
/** An AdmissionReview holds the object and, for an update, the old one: at most twice etcd's 1.5 MiB, with room. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface AdmissionWebhookOptions {
  ca: CertificateAuthority;
  host: string;
  port: number;
  certificateTtlSeconds: number;
  /** The folder relative WasmPlugin `file://` urls are taken against, as for the kubernetes source. */
  moduleDir: string;
  log: (line: string) => void;
}

interface AdmissionRequest {
  uid: string;
  operation?: string;
  namespace?: string;
  object?: { kind?: string; metadata?: { namespace?: string; name?: string; generateName?: string } } & Record<string, unknown>;
}

/** An AdmissionReview request -> its response: allowed, or refused with every problem of the object. */
export function review(body: unknown, moduleDir: string): Record<string, unknown> {
  const request = (body as { request?: AdmissionRequest }).request;
  if (!request?.uid) throw new Error("not an AdmissionReview request (request.uid missing)");
  const answer = (allowed: boolean, message?: string) => ({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: { uid: request.uid, allowed, ...(message ? { status: { code: 400, reason: "BadRequest", message } } : {}) },
  });
  // Deletes carry no new object; only creates and updates are checked (the webhook's rules ask only for those).
  if (!request.object || (request.operation !== "CREATE" && request.operation !== "UPDATE")) return answer(true);
  // Istio kinds Skiff does not read (WorkloadGroup, ProxyConfig) are not its to refuse.
  if (!Object.hasOwn(KINDS, String(request.object.kind))) return answer(true);
  // On create the object may leave its namespace to the request's path, and its name to generateName.
  const metadata = { ...request.object.metadata, namespace: request.object.metadata?.namespace ?? request.namespace, name: request.object.metadata?.name ?? request.object.metadata?.generateName ?? "" };
  const object = { ...request.object, metadata };
  const parsed = parseObject(object, { dir: moduleDir, file: "", document: "", defaultNamespace: request.namespace ?? "default", credentials: "secrets" });
  if (parsed.errors.length === 0) return answer(true);
  return answer(false, `Skiff refuses it: ${parsed.errors.map((error) => formatConfigError(error)).join("; ")}`);
}

export class AdmissionWebhook {
  private timer?: NodeJS.Timeout;
  private stopped = false;

  private constructor(
    private readonly server: Server,
    private readonly options: AdmissionWebhookOptions,
  ) {}

  static async start(options: AdmissionWebhookOptions): Promise<AdmissionWebhook> {
    const ips = isIP(options.host) && options.host !== "0.0.0.0" && options.host !== "::" ? [options.host] : [];
    const first = await servingCertificate(options.ca, ips, options.certificateTtlSeconds);
    const server = createServer({ key: first.key, cert: first.cert });
    const webhook = new AdmissionWebhook(server, options);
    server.on("request", (req, res) => {
      const reply = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      if (req.method !== "POST" || req.url?.split("?")[0] !== ADMISSION_WEBHOOK_PATH) return reply(404, { error: `POST ${ADMISSION_WEBHOOK_PATH} only` });
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) req.destroy();
        else chunks.push(chunk);
      });
      req.on("end", () => {
        try {
          reply(200, review(JSON.parse(Buffer.concat(chunks).toString("utf8")), options.moduleDir));
        } catch (error) {
          reply(400, { error: (error as Error).message });
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    webhook.renewIn(first.lifetime, ips);
    return webhook;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private renewIn(lifetime: number, ips: string[]): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      servingCertificate(this.options.ca, ips, this.options.certificateTtlSeconds)
        .then(({ key, cert, lifetime: next }) => {
          this.server.setSecureContext({ key, cert });
          this.renewIn(next, ips);
        })
        .catch((error: Error) => this.options.log(`admission webhook certificate renewal failed: ${error.message}`));
    }, Math.max(1000, lifetime / 2));
    this.timer.unref();
  }
}
