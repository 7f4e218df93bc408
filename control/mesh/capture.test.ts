// The capture rules as istio-iptables writes them: chains and order from Istio's golden files
// (tools/istio-iptables/pkg/capture/testdata), for the options Istio's injection template passes and their variants.
import { describe, expect, it } from "vitest";
import { captureRules } from "./capture.js";

const lines = (text: string) => text.trim().split("\n");

describe("captureRules", () => {
  it("writes istio-init's default rules: all inbound but the sidecar's ports to 15006, all outbound to 15001, uid/gid 1337 excluded", () => {
    expect(lines(captureRules())).toEqual([
      "*nat",
      "-N ISTIO_INBOUND",
      "-N ISTIO_REDIRECT",
      "-N ISTIO_IN_REDIRECT",
      "-N ISTIO_OUTPUT",
      "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN",
      "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
      "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
      "-A PREROUTING -p tcp -j ISTIO_INBOUND",
      "-A ISTIO_INBOUND -p tcp -m multiport --dports 15090,15021,15020,15000 -j RETURN",
      "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
      "-A OUTPUT -j ISTIO_OUTPUT",
      "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
      "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
      "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
      "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
      "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
      "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
      "COMMIT",
    ]);
  });

  it("excludes outbound ports for TCP and UDP before anything else in ISTIO_OUTPUT (Istio's outbound-ports-exclude golden)", () => {
    const rules = lines(captureRules({ excludeOutboundPorts: [22, 80, 443] }));
    const output = rules.filter((rule) => rule.startsWith("-A ISTIO_OUTPUT"));
    expect(output.slice(0, 3)).toEqual([
      "-A ISTIO_OUTPUT -p tcp -m multiport --dports 22,80,443 -j RETURN",
      "-A ISTIO_OUTPUT -p udp -m multiport --dports 22,80,443 -j RETURN",
      "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN",
    ]);
    expect(lines(captureRules({ excludeOutboundPorts: [22] }))).toContain("-A ISTIO_OUTPUT -p udp --dport 22 -j RETURN");
  });

  it("captures only the listed inbound ports, or none", () => {
    const listed = lines(captureRules({ includeInboundPorts: [8080, 9090] }));
    expect(listed.filter((rule) => rule.includes("ISTIO_IN_REDIRECT") && rule.startsWith("-A ISTIO_INBOUND"))).toEqual([
      "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
      "-A ISTIO_INBOUND -p tcp --dport 9090 -j ISTIO_IN_REDIRECT",
    ]);
    expect(lines(captureRules({ includeInboundPorts: [] }))).not.toContain("-A PREROUTING -p tcp -j ISTIO_INBOUND");
  });

  it("applies outbound range exclusions before inclusions, and captures only included ranges", () => {
    const output = lines(captureRules({ excludeOutboundIpRanges: ["198.18.0.1/32"], includeOutboundIpRanges: ["198.18.0.0/15"] })).slice(-4);
    expect(output).toEqual([
      "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
      "-A ISTIO_OUTPUT -d 198.18.0.1/32 -j RETURN",
      "-A ISTIO_OUTPUT -d 198.18.0.0/15 -j ISTIO_REDIRECT",
      "COMMIT",
    ]);
  });

  it("splits more than 15 excluded ports over several multiport rules", () => {
    const ports = Array.from({ length: 17 }, (_, i) => 9000 + i);
    const returns = lines(captureRules({ excludeInboundPorts: ports })).filter((rule) => rule.startsWith("-A ISTIO_INBOUND") && rule.includes("multiport"));
    expect(returns).toHaveLength(2);
    expect(returns[0].match(/--dports (\S+)/)![1].split(",")).toHaveLength(15);
  });
});
