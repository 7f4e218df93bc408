// The pinned catalog of components that no registry ships as a binary and that Skiff builds from their published Go
// modules (see README.md beside this file). One entry per component: the Go module and version its wrapper module
// requires, the package built, the wrapper's extra lines and files, the linker flags, and how to check the result.

export interface Component {
  name: string;
  /** What it is and who uses it, for `skiff components list`. */
  description: string;
  /** The Go module the wrapper module requires, at exactly this version. */
  module: string;
  version: string;
  /** The main package built (inside `module`, or the wrapper's own `.` when it has a main.go). */
  package: string;
  /** `replace` lines of the wrapper's go.mod (a module whose own go.mod replaces cannot be built by `go install`). */
  replace?: string[];
  /** Files copied into the wrapper module from `go/<name>/` beside this file (a main.go of its own, say). */
  files?: boolean;
  /** A `go list` pattern: every package it matches is linked in through a generated file of blank imports. */
  blankImports?: string;
  ldflags?: string[];
  /** The file the component is: the built program itself, a file it writes when run with that file's path, or a file
   * of the module as published (nothing is built: the module is downloaded and checked against go.sum's database). */
  artifact: { program: string; check: string[] } | { file: string; writtenBy: string } | { file: string; fromModule: string };
}

/** The staging modules k8s.io/kubernetes v1.37.2 replaces (the `replace` block of its go.mod). */
const KUBERNETES_STAGING = [
  "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go", "cloud-provider",
  "cluster-bootstrap", "code-generator", "component-base", "component-helpers", "controller-manager", "cri-api",
  "cri-client", "cri-streaming", "csi-translation-lib", "dynamic-resource-allocation", "endpointslice", "externaljwt",
  "kms", "kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
  "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin", "sample-controller", "streaming",
];

export const COMPONENTS: readonly Component[] = [
  {
    name: "descriptors",
    description: "every Envoy v3 API message and extension as one FileDescriptorSet (the control plane's protobuf types)",
    module: "github.com/envoyproxy/go-control-plane/envoy",
    // The go-control-plane release that matches Envoy 1.40.0 (its COMMIT file pins the data-plane-api commit).
    version: "v1.40.0",
    package: ".",
    files: true,
    blankImports: "github.com/envoyproxy/go-control-plane/envoy/...",
    artifact: { file: "envoy-api.binpb", writtenBy: "descriptors" },
  },
  {
    name: "etcd",
    description: "etcd, the store behind kube-apiserver (etcd's own command line, go/etcd/main.go)",
    module: "go.etcd.io/etcd/server/v3",
    // The version k8s.io/kubernetes v1.37.2 requires, so the two share a module graph and build cache.
    version: "v3.7.0",
    package: ".",
    files: true,
    artifact: { program: "etcd", check: ["--version"] },
  },
  {
    name: "kube-apiserver",
    description: "the Kubernetes API server (k8s.io/kubernetes/cmd/kube-apiserver)",
    module: "k8s.io/kubernetes",
    version: "v1.37.2",
    package: "k8s.io/kubernetes/cmd/kube-apiserver",
    // k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with folders of its own repository;
    // a module that requires it mirrors those replaces with the published versions (v0.<minor>.<patch>).
    replace: KUBERNETES_STAGING.map((name) => `k8s.io/${name} => k8s.io/${name} v0.37.2`),
    // Without these the server reports v0.0.0 at /version.
    ldflags: ["-X k8s.io/component-base/version.gitVersion=v1.37.2", "-X k8s.io/component-base/version.gitMajor=1", "-X k8s.io/component-base/version.gitMinor=37"],
    artifact: { program: "kube-apiserver", check: ["--version"] },
  },
  {
    name: "prometheus",
    description: "Prometheus server (scrapes Envoy and control-plane metrics in tests)",
    module: "github.com/prometheus/prometheus",
    version: "v0.316.0",
    package: "github.com/prometheus/prometheus/cmd/prometheus",
    artifact: { program: "prometheus", check: ["--version"] },
  },
  {
    name: "jaeger",
    description: "Jaeger v2 (accepts Zipkin and OTLP spans; query API for tests)",
    module: "github.com/jaegertracing/jaeger",
    version: "v1.76.0",
    package: "github.com/jaegertracing/jaeger/cmd/jaeger",
    artifact: { program: "jaeger", check: ["version"] },
  },
  {
    name: "registry",
    description: "the OCI registry `distribution` (htpasswd and token auth, filesystem storage) for oci:// Wasm modules",
    module: "github.com/distribution/distribution/v3",
    version: "v3.1.2",
    package: ".",
    // go/registry/main.go: distribution's registry command with only the drivers tests use, plus `htpasswd USER`
    // (bcrypt, the only hash its htpasswd auth takes) so tests can write credentials without other tools.
    files: true,
    artifact: { program: "registry", check: ["--version"] },
  },
  {
    name: "istio-crds",
    description: "the CustomResourceDefinitions of Istio's API (networking, security, extensions, telemetry), for the Kubernetes tests' API server",
    module: "istio.io/api",
    version: "v1.32.0",
    package: ".",
    artifact: { file: "customresourcedefinitions.gen.yaml", fromModule: "kubernetes/customresourcedefinitions.gen.yaml" },
  },
];

export function component(name: string): Component {
  const found = COMPONENTS.find((entry) => entry.name === name);
  if (!found) throw new Error(`no component named "${name}" (known: ${COMPONENTS.map((entry) => entry.name).join(", ")})`);
  return found;
}
