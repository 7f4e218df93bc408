// The SDK's probe module (sdk/fixtures/probe) as an Envoy HTTP filter, and the bootstrap the SDK's e2e and
// differential tests share: the probe in front of a `backend` cluster, with a `callout` cluster for its HTTP calls.
import { staticBootstrap, wasmFilter } from "../harness/bootstrap.js";
import { fixtureModule } from "../../sdk/tools/fixtures.js";

export interface ProbeOptions {
  configuration?: unknown;
  vmConfiguration?: string;
  /** Envoy's PluginConfig.allow_on_headers_stop_iteration (1.35+). */
  allowOnHeadersStopIteration?: boolean;
}

/** An HTTP filter running the probe module built for `target` (see sdk/tools/fixtures.ts), named and rooted "probe". */
export async function probeFilter(options: ProbeOptions = {}, target = "release"): Promise<Record<string, unknown>> {
  const filter = wasmFilter("probe", { configuration: options.configuration ?? "" }) as {
    typed_config: { config: { vm_config: { code: { local: { filename: string } }; configuration?: unknown }; allow_on_headers_stop_iteration?: boolean } };
  };
  if (options.allowOnHeadersStopIteration) filter.typed_config.config.allow_on_headers_stop_iteration = true;
  const vmConfig = filter.typed_config.config.vm_config;
  vmConfig.code.local.filename = await fixtureModule("probe", target);
  if (options.vmConfiguration !== undefined) {
    vmConfig.configuration = { "@type": "type.googleapis.com/google.protobuf.StringValue", value: options.vmConfiguration };
  }
  return filter as unknown as Record<string, unknown>;
}

/** The probe in front of `backend`, with `callout` available to its HTTP calls. */
export async function probeBootstrap(ports: { backend: number; callout?: number }, options: ProbeOptions = {}, target = "release"): Promise<Record<string, unknown>> {
  return staticBootstrap({
    clusters: { backend: { ports: [ports.backend] }, ...(ports.callout === undefined ? {} : { callout: { ports: [ports.callout] } }) },
    httpFilters: [await probeFilter(options, target)],
  });
}
