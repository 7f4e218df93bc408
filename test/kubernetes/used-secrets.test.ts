// Which Secrets the control plane reads in --kubernetes mode: only those a credentialName names, each where a proxy
// that uses it looks (its own namespace, as Istio's SDS), never one a proxy could not be given.
import { describe, expect, it } from "vitest";
import type { MeshConfig } from "../../control/sources/index.js";
import { usedSecrets } from "../../control/sources/kubernetes/index.js";

type Rule = MeshConfig["destinationRules"][number];
const rule = (namespace: string, name: string, spec: Partial<Rule["spec"]>): Rule => ({ kind: "DestinationRule", namespace, name, file: "", spec: { host: "x", ...spec } as Rule["spec"] });
const gateway = (namespace: string, credentialName: string): MeshConfig["gateways"][number] => ({
  kind: "Gateway",
  namespace,
  name: "gw",
  file: "",
  spec: { selector: { istio: "ingressgateway" }, servers: [{ port: { number: 443, name: "https", protocol: "HTTPS" }, hosts: ["*"], tls: { mode: "SIMPLE", credentialName } }] },
});
const mutual = (credentialName: string) => ({ tls: { mode: "MUTUAL" as const, credentialName } });

describe("the Secrets the kubernetes source reads (usedSecrets)", () => {
  it("a DestinationRule's credential in the rule's namespace when it selects workloads, in the gateways' namespaces otherwise", () => {
    const mesh = {
      gateways: [gateway("edge", "site-cert")],
      destinationRules: [
        rule("shop", "selected", { workloadSelector: { matchLabels: { app: "webapp" } }, trafficPolicy: mutual("payments-client") }),
        rule("shop", "subset", { workloadSelector: { matchLabels: { app: "webapp" } }, subsets: [{ name: "v2", labels: {}, trafficPolicy: mutual("kubernetes://v2-client") }] }),
        // Sidecars ignore a credentialName without workloadSelector: only gateways read it.
        rule("shop", "everyone", { trafficPolicy: mutual("egress-client") }),
        // Another namespace's Secret: no proxy outside it may use it, so it is not read for the sidecars of shop.
        rule("shop", "cross", { workloadSelector: { matchLabels: { app: "webapp" } }, trafficPolicy: mutual("finance/ledger-client") }),
        // ISTIO_MUTUAL uses the workload certificate, nothing to read.
        rule("shop", "mesh", { trafficPolicy: { tls: { mode: "ISTIO_MUTUAL" } } }),
      ],
    };
    expect(usedSecrets(mesh, [])).toEqual(["shop/payments-client", "shop/v2-client"]);
    expect(usedSecrets(mesh, ["edge"])).toEqual(["edge/egress-client", "edge/site-cert", "shop/payments-client", "shop/v2-client"]);
    // A gateway in namespace finance may use finance/ledger-client only if a rule it follows names it (none does here).
    expect(usedSecrets(mesh, ["finance"])).not.toContain("finance/ledger-client");
  });
});
