// The cohort-router configuration, validated and compiled once at configure time: header rules with their matchers
// (regexes compiled), percentage cohorts as bucket ranges, and one counter per decision.
import { ConfigReader, Counter, HeaderMap } from "@skiff/proxy-wasm";
import { Regex } from "./regex";
import { BUCKETS, cookieEnd, cookieStart, findCookie, stickyBucket } from "./sticky-hash";

const STAT_PREFIX = "cohort_router.";

export enum MatchKind { Exact, Prefix, Regex, Present, Absent }

/** One header condition of a rule (Envoy's HeaderMatcher, reduced to what the filter supports). */
export class HeaderCondition {
  constructor(readonly header: string, readonly kind: MatchKind, readonly text: string, readonly regex: Regex | null) {}

  matches(value: string | null): bool {
    if (this.kind == MatchKind.Absent) return value === null;
    if (value === null) return false;
    if (this.kind == MatchKind.Exact) return value == this.text;
    if (this.kind == MatchKind.Prefix) return value.startsWith(this.text);
    if (this.kind == MatchKind.Regex) return this.regex!.matches(value);
    return true; // Present
  }
}

/** Every condition must hold for the rule to route the request to `subset`. */
export class Rule {
  counter: Counter | null = null;
  constructor(readonly name: string, readonly subset: string, readonly conditions: HeaderCondition[]) {}

  matches(headers: HeaderMap): bool {
    for (let i = 0; i < this.conditions.length; i++) {
      const condition = unchecked(this.conditions[i]);
      if (!condition.matches(headers.get(condition.header))) return false;
    }
    return true;
  }
}

/** A percentage cohort: the buckets [firstBucket, endBucket) of the sticky hash. */
export class Cohort {
  counter: Counter | null = null;
  constructor(readonly name: string, readonly subset: string, readonly firstBucket: u32, readonly endBucket: u32) {}
}

export class CohortRouterConfig {
  rules: Rule[] = [];
  cohorts: Cohort[] = [];
  /** The key of sticky assignment: a request header, or else a cookie (exactly one is set when cohorts exist). */
  hashHeader: string = "";
  hashCookie: string = "";
  routingHeader: string = "x-skiff-subset";
  /** Empty: a request no rule or cohort takes leaves without a routing header, to the route table's default. */
  defaultSubset: string = "";

  defaultCounter: Counter | null = null;
  noHashKeyCounter: Counter | null = null;

  /** Defines the counters; called once the configuration is accepted, so a rejected one leaves no stats behind. */
  defineCounters(): void {
    for (let i = 0; i < this.rules.length; i++) this.rules[i].counter = new Counter(STAT_PREFIX + "rule." + this.rules[i].name);
    for (let i = 0; i < this.cohorts.length; i++) this.cohorts[i].counter = new Counter(STAT_PREFIX + "cohort." + this.cohorts[i].name);
    this.defaultCounter = new Counter(STAT_PREFIX + "default");
    if (this.cohorts.length > 0) this.noHashKeyCounter = new Counter(STAT_PREFIX + "no_hash_key");
  }

  /** The subset for this request (counting the decision), or "" for "no routing header". */
  decide(headers: HeaderMap): string {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const rule = unchecked(rules[i]);
      if (rule.matches(headers)) {
        rule.counter!.increment();
        return rule.subset;
      }
    }
    if (this.cohorts.length > 0) {
      const bucket = this.bucketOf(headers);
      if (bucket < 0) {
        this.noHashKeyCounter!.increment();
      } else {
        const cohorts = this.cohorts;
        for (let i = 0; i < cohorts.length; i++) {
          const cohort = unchecked(cohorts[i]);
          if (<u32>bucket >= cohort.firstBucket && <u32>bucket < cohort.endBucket) {
            cohort.counter!.increment();
            return cohort.subset;
          }
        }
      }
    }
    this.defaultCounter!.increment();
    return this.defaultSubset;
  }

  /** The request's sticky bucket, or -1 when it carries no (non-empty) key. */
  private bucketOf(headers: HeaderMap): i32 {
    if (this.hashHeader.length > 0) {
      const key = headers.get(this.hashHeader);
      if (key === null || key.length == 0) return -1;
      return <i32>stickyBucket(key, 0, key.length);
    }
    const cookies = headers.get("cookie");
    if (cookies === null || !findCookie(cookies, this.hashCookie) || cookieEnd == cookieStart) return -1;
    return <i32>stickyBucket(cookies, cookieStart, cookieEnd);
  }
}

/** The reason the last parseCohortRouterConfig returned null, naming the field. */
export let configError: string = "";

export function parseCohortRouterConfig(text: string): CohortRouterConfig | null {
  const reader = ConfigReader.parse(text);
  const config = new CohortRouterConfig();
  config.routingHeader = headerName(reader, "routingHeader", config.routingHeader);
  if (config.routingHeader.length == 0) reader.problem("routingHeader", "expected a header name");

  const rules = reader.objects("rules");
  const ruleNames = new Set<string>();
  for (let i = 0; i < rules.length && reader.ok; i++) {
    const rule = readRule(rules[i], i);
    if (rule === null) break;
    if (ruleNames.has(rule.name)) rules[i].problem("name", "duplicate rule name '" + rule.name + "'");
    ruleNames.add(rule.name);
    config.rules.push(rule);
  }

  const percentages = reader.object("percentages");
  if (percentages !== null && reader.ok) readPercentages(percentages, config);

  config.defaultSubset = subsetValue(reader, "defaultSubset", false);
  reader.rejectUnknownFields();
  if (!reader.ok) {
    configError = reader.error;
    return null;
  }
  configError = "";
  return config;
}

function readRule(reader: ConfigReader, index: i32): Rule | null {
  const name = statName(reader, "name", index.toString());
  const subset = subsetValue(reader, "subset", true);
  const conditionReaders = reader.objects("headers");
  if (reader.ok && conditionReaders.length == 0) reader.problem("headers", "expected at least one header condition");
  const conditions: HeaderCondition[] = [];
  for (let i = 0; i < conditionReaders.length && reader.ok; i++) {
    const condition = readCondition(conditionReaders[i]);
    if (condition !== null) conditions.push(condition);
  }
  reader.rejectUnknownFields();
  return reader.ok ? new Rule(name, subset, conditions) : null;
}

function readCondition(reader: ConfigReader): HeaderCondition | null {
  const header = headerName(reader, "name", "");
  if (reader.ok && header.length == 0) reader.problem("name", "expected the name of a request header");
  let kinds = 0;
  let kind = MatchKind.Present;
  let text = "";
  let regex: Regex | null = null;
  if (reader.has("exact")) { kinds++; kind = MatchKind.Exact; text = reader.string("exact", ""); }
  if (reader.has("prefix")) {
    kinds++;
    kind = MatchKind.Prefix;
    text = reader.string("prefix", "");
    if (reader.ok && text.length == 0) reader.problem("prefix", "expected a non-empty prefix (use present to match any value)");
  }
  if (reader.has("regex")) {
    kinds++;
    kind = MatchKind.Regex;
    text = reader.string("regex", "");
    if (reader.ok) {
      regex = Regex.compile(text);
      if (regex === null) reader.problem("regex", Regex.error);
    }
  }
  if (reader.has("present")) { kinds++; kind = reader.bool("present", true) ? MatchKind.Present : MatchKind.Absent; }
  if (reader.ok && kinds != 1) reader.problem("", "expected exactly one of exact, prefix, regex, present");
  reader.rejectUnknownFields();
  return reader.ok ? new HeaderCondition(header, kind, text, regex) : null;
}

function readPercentages(reader: ConfigReader, config: CohortRouterConfig): void {
  const hashOn = reader.object("hashOn");
  if (hashOn === null) {
    if (reader.ok) reader.problem("hashOn", "expected {\"header\": name} or {\"cookie\": name}, the key that keeps a user in one cohort");
  } else {
    config.hashHeader = headerName(hashOn, "header", "");
    config.hashCookie = hashOn.string("cookie", "");
    if (hashOn.ok && (config.hashHeader.length > 0) == (config.hashCookie.length > 0)) hashOn.problem("", "expected exactly one of header, cookie");
    if (hashOn.ok && config.hashCookie.length > 0 && !isToken(config.hashCookie)) hashOn.problem("cookie", "expected a cookie name");
    hashOn.rejectUnknownFields();
  }
  const cohortReaders = reader.objects("cohorts");
  if (reader.ok && cohortReaders.length == 0) reader.problem("cohorts", "expected at least one cohort");
  const names = new Set<string>();
  let nextBucket: u32 = 0;
  for (let i = 0; i < cohortReaders.length && reader.ok; i++) {
    const cohort = cohortReaders[i];
    const name = statName(cohort, "name", i.toString());
    if (names.has(name)) cohort.problem("name", "duplicate cohort name '" + name + "'");
    names.add(name);
    const subset = subsetValue(cohort, "subset", true);
    if (!cohort.has("percent") && cohort.ok) cohort.problem("percent", "required");
    const percent = cohort.number("percent", 0, 0, 100);
    const buckets = <u32>Math.round(percent * <f64>BUCKETS / 100);
    if (cohort.ok && <u64>(nextBucket + buckets) > BUCKETS) cohort.problem("percent", "the cohorts add up to more than 100 percent");
    cohort.rejectUnknownFields();
    if (cohort.ok) config.cohorts.push(new Cohort(name, subset, nextBucket, nextBucket + buckets));
    nextBucket += buckets;
  }
  reader.rejectUnknownFields();
}

/** A header name, lower-cased (header maps are case-insensitive); no pseudo-headers. */
function headerName(reader: ConfigReader, field: string, fallback: string): string {
  const name = reader.string(field, fallback).toLowerCase();
  if (reader.ok && reader.has(field) && !isToken(name)) reader.problem(field, "expected a header name (letters, digits, - _ .)");
  return name;
}

/** A subset label: printable ASCII without spaces, as it goes into a header the route table matches. */
function subsetValue(reader: ConfigReader, field: string, required: bool): string {
  const value = reader.string(field, "");
  if (!reader.ok) return value;
  if (required && !reader.has(field)) reader.problem(field, "required");
  else if (reader.has(field) && !isVisibleAscii(value)) reader.problem(field, "expected a non-empty subset name of printable ASCII without spaces");
  return value;
}

/** A name that becomes part of a counter name. */
function statName(reader: ConfigReader, field: string, fallback: string): string {
  const name = reader.string(field, fallback);
  if (reader.ok && !isToken(name)) reader.problem(field, "expected a name of letters, digits, - _ .");
  return name;
}

function isToken(text: string): bool {
  if (text.length == 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f || c == 0x2e;
    if (!ok) return false;
  }
  return true;
}

function isVisibleAscii(text: string): bool {
  if (text.length == 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}
