// The resource types `skiff proxy-config` shows, by the short names istioctl uses, beside their type URLs.
import { TypeUrl } from "../resources.js";

export const CONFIG_TYPES = {
  listeners: TypeUrl.Listener,
  routes: TypeUrl.RouteConfiguration,
  clusters: TypeUrl.Cluster,
  endpoints: TypeUrl.ClusterLoadAssignment,
  secrets: TypeUrl.Secret,
  ecds: TypeUrl.ExtensionConfig,
} as const;
export type ConfigType = keyof typeof CONFIG_TYPES;
