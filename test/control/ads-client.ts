// A raw ADS client for protocol tests: speaks DiscoveryRequest/Response (and the delta forms) as proto3 JSON over a
// @grpc/grpc-js stream, so a test can send exactly the ACKs, NACKs, nonces and subscriptions it means to.
import { fromBinary, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { type ChannelCredentials, type ChannelOptions, type ClientDuplexStream, Client, credentials } from "@grpc/grpc-js";
import { envoyRegistry } from "../../control/protos/registry.js";

const PACKAGE = "envoy.service.discovery.v3";

export interface AnyJson {
  "@type": string;
  name?: string;
  cluster_name?: string;
  [field: string]: unknown;
}

export interface Response {
  version_info?: string;
  system_version_info?: string;
  type_url: string;
  nonce: string;
  resources?: AnyJson[] | Array<{ name: string; version: string; resource: AnyJson }>;
  removed_resources?: string[];
}

export class AdsClient {
  private readonly client: Client;
  private readonly stream: ClientDuplexStream<object, Response>;
  private readonly queue: Response[] = [];
  private waiters: Array<(response: Response) => void> = [];
  closed?: Error;

  /** `channel`: credentials and options for a TLS server (default plain text). */
  constructor(port: number, readonly delta = false, channel?: { credentials: ChannelCredentials; options?: ChannelOptions }) {
    this.client = new Client(`127.0.0.1:${port}`, channel?.credentials ?? credentials.createInsecure(), channel?.options);
    const [request, response] = delta ? ["DeltaDiscoveryRequest", "DeltaDiscoveryResponse"] : ["DiscoveryRequest", "DiscoveryResponse"];
    const registry = envoyRegistry();
    const requestType = registry.getMessage(`${PACKAGE}.${request}`)!;
    const responseType = registry.getMessage(`${PACKAGE}.${response}`)!;
    this.stream = this.client.makeBidiStreamRequest(
      `/${PACKAGE}.AggregatedDiscoveryService/${delta ? "DeltaAggregatedResources" : "StreamAggregatedResources"}`,
      (message: object) => Buffer.from(toBinary(requestType, fromJson(requestType, message as never, { registry }))),
      (bytes: Buffer) => toJson(responseType, fromBinary(responseType, bytes), { registry, useProtoFieldName: true }) as unknown as Response,
    );
    this.stream.on("data", (message: Response) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.queue.push(message);
    });
    this.stream.on("error", (error: Error) => (this.closed = error));
  }

  send(request: Record<string, unknown>): void {
    this.stream.write(request);
  }

  /** The next response on the stream (waits for it). */
  next(): Promise<Response> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Responses received and not yet read. */
  get unread(): number {
    return this.queue.length;
  }

  close(): void {
    this.stream.cancel();
    this.client.close();
  }
}

/** Resource names in a response, state of the world or delta. */
export function names(response: Response): string[] {
  return (response.resources ?? [])
    .map((resource) => {
      if ("resource" in resource && typeof resource.resource === "object") return String(resource.name);
      const body = resource as AnyJson;
      return body.name ?? body.cluster_name ?? "";
    })
    .sort();
}
