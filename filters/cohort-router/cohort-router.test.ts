// cohort-router in the host emulator: configuration validation (each bad field named), header rule matching
// (exact, prefix, the regex subset, present/absent), sticky hashing on a header or a cookie, and the counters.
import { describe, expect, it } from "vitest";
import { Emulator } from "../../sdk/testing/index.js";

const WASM = "build/filters/cohort-router.wasm";

async function load(config: object, workers = 1): Promise<Emulator> {
  const vm = await Emulator.load(WASM, { pluginConfig: config, workers, logLevel: "info" });
  expect(vm.configAccepted, vm.logMessages("error").join("\n")).toBe(true);
  return vm;
}

/** The routing header the filter leaves on a request with these headers (undefined: none). */
function route(vm: Emulator, headers: Record<string, string>, worker = 0): string | undefined {
  const stream = vm.worker(worker).http();
  const action = stream.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "shop", ...headers }, { endOfStream: true });
  expect(action).toBe("continue");
  const subset = stream.requestHeaders.get("x-skiff-subset");
  stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
  return subset ?? undefined;
}

/** One rule sending requests whose header `name` matches `matcher` to v2; v1 otherwise. */
function ruleConfig(matcher: Record<string, unknown>, name = "x-test"): object {
  return { rules: [{ name: "r", subset: "v2", headers: [{ name, ...matcher }] }], defaultSubset: "v1" };
}

describe("cohort-router configuration", () => {
  const bad: Array<[string, unknown, string]> = [
    ["not JSON", "{rules: []}", "invalid JSON at offset 1"],
    ["an unknown top-level field", { rule: [] }, "rule: unknown field"],
    ["a routing header with a space", { routingHeader: "x subset" }, "routingHeader: expected a header name"],
    ["a pseudo-header as routing header", { routingHeader: ":authority" }, "routingHeader: expected a header name"],
    ["a rule without subset", { rules: [{ headers: [{ name: "a", present: true }] }] }, "rules[0].subset: required"],
    ["a subset with a space", { rules: [{ subset: "v 2", headers: [{ name: "a", present: true }] }] }, "rules[0].subset: expected a non-empty subset name"],
    ["a rule without conditions", { rules: [{ subset: "v2", headers: [] }] }, "rules[0].headers: expected at least one header condition"],
    ["a condition without a name", { rules: [{ subset: "v2", headers: [{ exact: "x" }] }] }, "rules[0].headers[0].name: expected the name of a request header"],
    ["a condition with two matchers", { rules: [{ subset: "v2", headers: [{ name: "a", exact: "x", prefix: "y" }] }] }, "rules[0].headers[0]: expected exactly one of exact, prefix, regex, present"],
    ["a condition with no matcher", { rules: [{ subset: "v2", headers: [{ name: "a" }] }] }, "rules[0].headers[0]: expected exactly one of exact, prefix, regex, present"],
    ["an empty prefix", { rules: [{ subset: "v2", headers: [{ name: "a", prefix: "" }] }] }, "rules[0].headers[0].prefix: expected a non-empty prefix"],
    ["present that is not a boolean", { rules: [{ subset: "v2", headers: [{ name: "a", present: "yes" }] }] }, "rules[0].headers[0].present: expected true or false"],
    ["an unknown matcher", { rules: [{ subset: "v2", headers: [{ name: "a", suffix: "x" }] }] }, "rules[0].headers[0]: expected exactly one of exact, prefix, regex, present"],
    ["a regex with a group", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "(a|b)" }] }] }, "rules[0].headers[0].regex: unsupported regex syntax '(' at offset 0"],
    ["a regex with alternation", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "a|b" }] }] }, "rules[0].headers[0].regex: unsupported regex syntax '|' at offset 1"],
    ["a regex with nothing to repeat", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "*a" }] }] }, "rules[0].headers[0].regex: nothing to repeat at offset 0"],
    ["a lazy quantifier", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "a*?" }] }] }, "rules[0].headers[0].regex: unsupported repeated quantifier"],
    ["an unterminated class", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "[a-z" }] }] }, "rules[0].headers[0].regex: unterminated class"],
    ["a reversed range", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "[z-a]" }] }] }, "rules[0].headers[0].regex: bad range"],
    ["an unknown escape", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "\\bword" }] }] }, "rules[0].headers[0].regex: unsupported escape '\\b'"],
    ["a too long regex", { rules: [{ subset: "v2", headers: [{ name: "a", regex: "a{40}b{40}" }] }] }, "rules[0].headers[0].regex: pattern too long"],
    ["a duplicate rule name", { rules: [{ name: "x", subset: "v2", headers: [{ name: "a", present: true }] }, { name: "x", subset: "v3", headers: [{ name: "b", present: true }] }] }, "rules[1].name: duplicate rule name 'x'"],
    ["a rule name unfit for a counter", { rules: [{ name: "a b", subset: "v2", headers: [{ name: "a", present: true }] }] }, "rules[0].name: expected a name of letters"],
    ["percentages without hashOn", { percentages: { cohorts: [{ subset: "v2", percent: 10 }] } }, "percentages.hashOn: expected {\"header\": name} or {\"cookie\": name}"],
    ["hashOn with both a header and a cookie", { percentages: { hashOn: { header: "u", cookie: "u" }, cohorts: [{ subset: "v2", percent: 10 }] } }, "percentages.hashOn: expected exactly one of header, cookie"],
    ["hashOn on a bad cookie name", { percentages: { hashOn: { cookie: "a;b" }, cohorts: [{ subset: "v2", percent: 10 }] } }, "percentages.hashOn.cookie: expected a cookie name"],
    ["no cohorts", { percentages: { hashOn: { header: "u" }, cohorts: [] } }, "percentages.cohorts: expected at least one cohort"],
    ["a cohort without percent", { percentages: { hashOn: { header: "u" }, cohorts: [{ subset: "v2" }] } }, "percentages.cohorts[0].percent: required"],
    ["a percent above 100", { percentages: { hashOn: { header: "u" }, cohorts: [{ subset: "v2", percent: 101 }] } }, "percentages.cohorts[0].percent: expected a number from 0 to 100"],
    ["cohorts above 100 together", { percentages: { hashOn: { header: "u" }, cohorts: [{ subset: "v2", percent: 60 }, { subset: "v3", percent: 50 }] } }, "percentages.cohorts[1].percent: the cohorts add up to more than 100 percent"],
    ["a default subset that is a number", { defaultSubset: 1 }, "defaultSubset: expected a string"],
  ];

  it.each(bad)("rejects %s, naming the field in one error line", async (_, config, message) => {
    const vm = await Emulator.load(WASM, { pluginConfig: config as string | object, logLevel: "info" });
    expect(vm.configAccepted).toBe(false);
    const errors = vm.logMessages("error");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`cohort-router: configuration rejected: ${message}`);
  });

  it("keeps routing with the previous configuration when a new one is rejected", async () => {
    const vm = await load(ruleConfig({ exact: "internal" }, "x-istio-cohort"), 2);
    expect(vm.configure({ rules: [{ subset: "v2", headers: [{ name: "x-istio-cohort", exact: "internal" }] }] })).toBe(true);
    expect(vm.configure({ rules: [{ subset: "v2", headers: [{ name: "x-istio-cohort", regex: "(x)" }] }] })).toBe(false);
    expect(route(vm, { "x-istio-cohort": "internal" }, 1)).toBe("v2");
    expect(route(vm, {}, 1)).toBeUndefined();
  });

  it("accepts an empty configuration and leaves requests without a routing header", async () => {
    const vm = await load({});
    expect(route(vm, { "x-skiff-subset": "v9" })).toBeUndefined();
    expect(vm.metric("cohort_router.default")).toBe(1);
  });

  it("leaves Envoy's route cache alone for a request it sends to the default without a routing header", async () => {
    const vm = await load({});
    const untouched = vm.http();
    untouched.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "shop" }, { endOfStream: true });
    expect(untouched.routeCacheCleared).toBe(0);
    // A routing header the client sent is still removed, which clears the cache.
    const stripped = vm.http();
    stripped.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "shop", "x-skiff-subset": "v9" }, { endOfStream: true });
    expect(stripped.requestHeaders.get("x-skiff-subset")).toBeNull();
    expect(stripped.routeCacheCleared).toBe(1);
  });
});

describe("cohort-router header rules", () => {
  it("sends x-istio-cohort: internal to v2 and everyone else to v1 (the seed's scenario)", async () => {
    const vm = await load(ruleConfig({ exact: "internal" }, "x-istio-cohort"));
    expect(route(vm, { "x-istio-cohort": "internal" })).toBe("v2");
    expect(route(vm, { "x-istio-cohort": "Internal" })).toBe("v1");
    expect(route(vm, { "x-istio-cohort": "internal-ish" })).toBe("v1");
    expect(route(vm, {})).toBe("v1");
    expect(vm.metric("cohort_router.rule.r")).toBe(1);
    expect(vm.metric("cohort_router.default")).toBe(3);
  });

  it("overwrites a routing header the client sent", async () => {
    const vm = await load(ruleConfig({ exact: "internal" }, "x-istio-cohort"));
    expect(route(vm, { "x-skiff-subset": "v2" })).toBe("v1");
  });

  it("matches prefixes", async () => {
    const vm = await load(ruleConfig({ prefix: "beta-" }));
    expect(route(vm, { "x-test": "beta-tester" })).toBe("v2");
    expect(route(vm, { "x-test": "beta-" })).toBe("v2");
    expect(route(vm, { "x-test": "alpha-beta-" })).toBe("v1");
  });

  it("matches presence and absence", async () => {
    const present = await load(ruleConfig({ present: true }));
    expect(route(present, { "x-test": "" })).toBe("v2");
    expect(route(present, {})).toBe("v1");
    const absent = await load(ruleConfig({ present: false }));
    expect(route(absent, {})).toBe("v2");
    expect(route(absent, { "x-test": "1" })).toBe("v1");
  });

  it("looks header names up case-insensitively", async () => {
    const vm = await load(ruleConfig({ exact: "internal" }, "X-Istio-Cohort"));
    expect(route(vm, { "x-istio-cohort": "internal" })).toBe("v2");
  });

  it("needs every condition of a rule, and takes the first rule that matches", async () => {
    const vm = await load({
      rules: [
        { name: "both", subset: "v3", headers: [{ name: "x-a", exact: "1" }, { name: "x-b", exact: "1" }] },
        { name: "a", subset: "v2", headers: [{ name: "x-a", present: true }] },
      ],
      defaultSubset: "v1",
    });
    expect(route(vm, { "x-a": "1", "x-b": "1" })).toBe("v3");
    expect(route(vm, { "x-a": "1", "x-b": "2" })).toBe("v2");
    expect(route(vm, { "x-b": "1" })).toBe("v1");
    expect(vm.metric("cohort_router.rule.both")).toBe(1);
    expect(vm.metric("cohort_router.rule.a")).toBe(1);
  });

  const regexCases: Array<[string, string[], string[]]> = [
    ["internal", ["internal"], ["internal2", "xinternal", ""]],
    ["^internal$", ["internal"], ["internal2"]],
    ["user-\\d+", ["user-1", "user-12345"], ["user-", "user-1a", "user-x"]],
    ["[a-c]+-[^x]", ["abc-y", "a-1"], ["abc-x", "d-y", "abc-"]],
    ["v\\d{1,2}\\.\\d{2,}", ["v1.00", "v10.123"], ["v100.00", "v1.0", "v1x00"]],
    ["ab?c*d", ["ad", "abd", "accccd", "abcd"], ["abbd", "a", "abc"]],
    [".*staff.*", ["staff", "the-staff-team"], ["sta-ff"]],
    ["[\\w.]+@corp\\.example", ["jane.doe@corp.example", "a_1@corp.example"], ["jane@corpXexample", "@corp.example"]],
    ["\\S+\\s\\S+", ["a b"], ["ab", "a  b"]],
    ["[-a]x", ["-x", "ax"], ["bx"]],
    ["[\\]]", ["]"], ["["]],
    ["é+", ["éé"], ["e"]],
    ["\\$5", ["$5"], ["5"]],
  ];

  it.each(regexCases)("matches the whole value against the regex %s", async (pattern, matching, others) => {
    const vm = await load(ruleConfig({ regex: pattern }));
    for (const value of matching) expect(route(vm, { "x-test": value }), value).toBe("v2");
    for (const value of others) expect(route(vm, { "x-test": value }), value).toBe("v1");
  });

  it("matches a pattern that makes backtracking engines explode, in one pass", async () => {
    const vm = await load(ruleConfig({ regex: "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b" }));
    expect(route(vm, { "x-test": "a".repeat(5000) })).toBe("v1");
    expect(route(vm, { "x-test": "a".repeat(5000) + "b" })).toBe("v2");
  });
});

describe("cohort-router sticky percentages", () => {
  const percentConfig = (hashOn: object, percent = 10) => ({
    percentages: { hashOn, cohorts: [{ name: "canary", subset: "v2", percent }] },
    defaultSubset: "v1",
  });

  it("puts 10% +- 1% of 10,000 users in the cohort, and each user in the same place on every worker", async () => {
    const vm = await load(percentConfig({ header: "x-user-id" }), 2);
    let inCohort = 0;
    for (let i = 0; i < 10_000; i++) {
      const user = `user-${i}`;
      const first = route(vm, { "x-user-id": user }, 0);
      expect(route(vm, { "x-user-id": user }, 1), user).toBe(first);
      if (first === "v2") inCohort++;
    }
    expect(inCohort).toBeGreaterThanOrEqual(900);
    expect(inCohort).toBeLessThanOrEqual(1100);
    expect(vm.metric("cohort_router.cohort.canary")).toBe(inCohort * 2);
    expect(vm.metric("cohort_router.default")).toBe((10_000 - inCohort) * 2);
  });

  it("splits users between several cohorts by their sizes", async () => {
    const vm = await load({
      percentages: {
        hashOn: { header: "x-user-id" },
        cohorts: [{ name: "a", subset: "va", percent: 25 }, { name: "b", subset: "vb", percent: 50 }, { name: "c", subset: "vc", percent: 25 }],
      },
    });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 4000; i++) {
      const subset = route(vm, { "x-user-id": `u${i}@example.com` }) ?? "none";
      counts[subset] = (counts[subset] ?? 0) + 1;
    }
    expect(counts.none).toBeUndefined();
    expect(counts.va).toBeGreaterThan(850);
    expect(counts.va).toBeLessThan(1150);
    expect(counts.vb).toBeGreaterThan(1800);
    expect(counts.vb).toBeLessThan(2200);
  });

  it("routes 0% to nobody and 100% to everybody", async () => {
    const none = await load(percentConfig({ header: "x-user-id" }, 0));
    const all = await load(percentConfig({ header: "x-user-id" }, 100));
    for (let i = 0; i < 500; i++) {
      expect(route(none, { "x-user-id": `${i}` })).toBe("v1");
      expect(route(all, { "x-user-id": `${i}` })).toBe("v2");
    }
  });

  it("sends requests without the key to the default, and counts them", async () => {
    const vm = await load(percentConfig({ header: "x-user-id" }, 100));
    expect(route(vm, {})).toBe("v1");
    expect(route(vm, { "x-user-id": "" })).toBe("v1");
    expect(vm.metric("cohort_router.no_hash_key")).toBe(2);
    expect(vm.metric("cohort_router.default")).toBe(2);
  });

  it("lets header rules win over percentages", async () => {
    const vm = await load({ ...ruleConfig({ exact: "internal" }, "x-istio-cohort"), percentages: { hashOn: { header: "x-user-id" }, cohorts: [{ subset: "v3", percent: 100 }] } });
    expect(route(vm, { "x-istio-cohort": "internal", "x-user-id": "u1" })).toBe("v2");
    expect(route(vm, { "x-user-id": "u1" })).toBe("v3");
    expect(vm.metric("cohort_router.cohort.0")).toBe(1);
  });

  it("hashes on a cookie's value wherever it sits in the cookie header", async () => {
    const vm = await load(percentConfig({ cookie: "session" }, 50));
    const users = Array.from({ length: 200 }, (_, i) => `s${i}`);
    const byHeader = await load(percentConfig({ header: "x-session" }, 50));
    for (const user of users) {
      // The cookie's value hashes like the same value in a header: position, spacing and quotes do not matter.
      const expected = route(byHeader, { "x-session": user });
      expect(route(vm, { cookie: `session=${user}` })).toBe(expected);
      expect(route(vm, { cookie: `theme=dark; session=${user}; lang=en` })).toBe(expected);
      expect(route(vm, { cookie: `xsession=other;session="${user}"` })).toBe(expected);
    }
    expect(route(vm, { cookie: "xsession=abc; session_id=def" })).toBe("v1");
    expect(route(vm, { cookie: "session=" })).toBe("v1");
    expect(vm.metric("cohort_router.no_hash_key")).toBe(2);
  });
});
