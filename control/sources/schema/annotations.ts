// Skiff's own annotations: settings Istio's API has no field for, carried in `metadata.annotations` so that the
// resource stays valid Istio YAML (Istio ignores annotations it does not know). Any other `skiff.dev/` annotation is
// an error: a misspelt one would silently do nothing.
import { z } from "zod";

export const SKIFF_ANNOTATION_PREFIX = "skiff.dev/";

/** A request header name as Envoy matches it: lowercase token characters. */
const headerName = z.string().regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, "a lowercase HTTP header name");

/** The annotations each kind takes, by key. */
export const SKIFF_ANNOTATIONS: Record<string, Record<string, z.ZodType<string>>> = {
  /** The clusters of the rule's host choose the upstream host named in this request header, when it names one of
   * theirs (Envoy's `envoy.load_balancing_policies.override_host`), and otherwise balance as the rule says: the
   * policy a filter such as filters/outlier-detector steers traffic with (control/translate/override-host.ts). */
  DestinationRule: { "skiff.dev/override-host": headerName },
};
