// The `skiff` package's programmatic API, beside its command line: the control plane, the bootstraps that point Envoy
// at it (or run one filter locally), reading a config folder as the control plane does, and finding an Envoy.
export { type ControlPlane, type ControlPlaneOptions, startControlPlane } from "./control-plane.js";
export { type BootstrapOptions, bootstrap, bootstrapYaml } from "./bootstrap/bootstrap.js";
export { type LocalRunSpec, localBootstrap } from "./bootstrap/local.js";
export { type ConfigError, type MeshConfig, formatConfigError, loadConfigDir } from "./sources/index.js";
export { type EnvoyBinary, EnvoyNotFoundError, installEnvoy, locateEnvoy } from "./envoy-binary/locate.js";
export type { ProxyIdentity, ProxyResources, XdsResource } from "./resources.js";
