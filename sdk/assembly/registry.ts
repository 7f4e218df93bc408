// What the dispatcher keeps between callbacks: the registered plugins and who made which callout. Private to the SDK:
// index.ts exports only registerRootContext from here.
import { RootContext } from "./contexts";

/** Makes the plugin's root context; called once per root context the host creates. */
export type RootContextFactory = (contextId: u32) => RootContext;

// The registered plugins, root_id and factory at the same index. Arrays rather than a Map, so that a module with the
// usual single plugin carries no string-keyed map.
export const rootIds: string[] = [];
export const rootFactories: RootContextFactory[] = [];

/** Registers the plugin. `rootId` is Envoy's `root_id`; leave it empty when the module holds one plugin. */
export function registerRootContext(factory: RootContextFactory, rootId: string = ""): void {
  const at = rootIds.indexOf(rootId);
  if (at >= 0) {
    rootFactories[at] = factory;
    return;
  }
  rootIds.push(rootId);
  rootFactories.push(factory);
}

// Which context made which callout. Envoy makes every callout on the root context (proxy-wasm-cpp-host's
// exports.cc: `contextOrEffectiveContext()->root_context()`) and answers it there, so the dispatcher looks the
// maker up here to deliver the answer to the stream that asked.
export const calloutOwners = new Map<u32, u32>();
/** Marks, in calloutOwners, a unary gRPC call: its one answer ends it, whichever callback brings it. */
export const UNARY_CALLOUT: u32 = 0x80000000;

export function registerCallout(calloutId: u32, contextId: u32): u32 {
  if (calloutId != 0) calloutOwners.set(calloutId, contextId);
  return calloutId;
}
