// The guard's machinery (fields.test.ts): every field the schemas of control/sources accept, and whether a golden
// fixture shows its effect. A field is shown when changing it in a fixture (deleting it, or giving it another valid
// value) changes the Envoy resources translate() makes for that fixture's proxies (cases.ts). An enum field counts
// per value: each value must appear in a fixture and make a difference there.
//
// Keys read `Kind.spec.path`, with `[]` for array elements and `.*` for map entries, and `=VALUE` for enum values:
// `VirtualService.spec.http[].fault.delay.fixedDelay`, `DestinationRule.spec.trafficPolicy.loadBalancer.simple=RANDOM`.
// meshconfig.yaml's fields read `MeshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY`.
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import type { z } from "zod";
import { loadConfigTexts, MESH_CONFIG_FILE, readTexts } from "../../control/sources/index.js";
import { DURATION, KINDS, meshConfigSchema } from "../../control/sources/schema/index.js";
import { translate } from "../../control/translate/index.js";
import type { ProxyIdentity } from "../../control/resources.js";
import { CASES, testContext } from "./cases.js";

type Schema = z.ZodType;
type Def = { type: string; [key: string]: any }; // zod 4's schema definitions, read only here.
const def = (schema: Schema): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** Wrappers that do not change what a field is. */
function unwrap(schema: Schema): Schema {
  let current = schema;
  for (;;) {
    const d = def(current);
    if (["optional", "default", "nullable", "readonly", "prefault", "catch", "nonoptional"].includes(d.type)) current = d.innerType;
    else if (d.type === "pipe") current = d.in;
    else return current;
  }
}

/** The values of an enum-like field (enum, or a union of literals and enums), or undefined for any other field. */
function enumValues(schema: Schema): Array<string | number> | undefined {
  const d = def(schema);
  if (d.type === "enum") return Object.values(d.entries as Record<string, string | number>);
  if (d.type === "union") {
    const options = (d.options as Schema[]).map(unwrap);
    if (!options.every((option) => ["literal", "enum"].includes(def(option).type))) return undefined;
    return options.flatMap((option) => (def(option).type === "enum" ? Object.values(def(option).entries as Record<string, string | number>) : (def(option).values as Array<string | number>)));
  }
  return undefined;
}

/** Every field key a schema accepts under `prefix`. */
export function schemaKeys(schema: Schema, prefix: string, out = new Set<string>()): Set<string> {
  const node = unwrap(schema);
  const d = def(node);
  const values = enumValues(node);
  if (values) for (const value of values) out.add(`${prefix}=${value}`);
  else if (d.type === "object") for (const [key, child] of Object.entries(d.shape as Record<string, Schema>)) schemaKeys(child, `${prefix}.${key}`, out);
  else if (d.type === "array") schemaKeys(d.element, `${prefix}[]`, out);
  else if (d.type === "record") schemaKeys(d.valueType, `${prefix}.*`, out);
  else out.add(prefix);
  return out;
}

/** The schemas the guard walks: every kind's spec, and meshconfig.yaml. */
export function roots(): Array<{ kind: string; schema: Schema; prefix: string }> {
  return [
    ...Object.entries(KINDS).map(([kind, { spec }]) => ({ kind, schema: spec as Schema, prefix: `${kind}.spec` })),
    { kind: "MeshConfig", schema: meshConfigSchema as Schema, prefix: "MeshConfig" },
  ];
}

export function allKeys(): Set<string> {
  const out = new Set<string>();
  for (const { schema, prefix } of roots()) schemaKeys(schema, prefix, out);
  return out;
}

/** One place in a fixture document where a field is set. */
interface Occurrence {
  key: string;
  /** Keys from the document's root to the value. */
  location: Array<string | number>;
  value: unknown;
  schema: Schema;
}

function occurrences(value: unknown, schema: Schema, prefix: string, location: Array<string | number>, out: Occurrence[]): void {
  const node = unwrap(schema);
  const d = def(node);
  if (enumValues(node)) {
    out.push({ key: `${prefix}=${String(value)}`, location, value, schema: node });
    return;
  }
  if (d.type === "object" && isObject(value)) {
    for (const [key, child] of Object.entries(d.shape as Record<string, Schema>)) {
      if (key in value) occurrences(value[key], child, `${prefix}.${key}`, [...location, key], out);
    }
    return;
  }
  if (d.type === "array" && Array.isArray(value)) {
    value.forEach((element, index) => occurrences(element, d.element, `${prefix}[]`, [...location, index], out));
    return;
  }
  if (d.type === "record" && isObject(value)) {
    for (const [key, element] of Object.entries(value)) occurrences(element, d.valueType, `${prefix}.*`, [...location, key], out);
    return;
  }
  out.push({ key: prefix, location, value, schema: node });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Other values a field could take: another enum value, the other boolean, a nearby number, another duration, a
 * changed string. Each is tried; those the schema refuses are skipped. */
function alternatives(occurrence: Occurrence): unknown[] {
  const values = enumValues(occurrence.schema);
  if (values) return values.filter((value) => value !== occurrence.value);
  const value = occurrence.value;
  if (typeof value === "boolean") return [!value];
  if (typeof value === "number") return [value + 1, value - 1, value * 2];
  if (typeof value === "string") {
    if (def(occurrence.schema).format === "base64") return ["d29ybGQ="].filter((other) => other !== value);
    if (DURATION.test(value)) return ["7s", "13s"].filter((other) => other !== value);
    if (/^\d+\.\d+\.\d+\.\d+$/.test(value)) return [value.replace(/\d+$/, (last) => String((Number(last) + 1) % 255))];
    if (/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(value)) return [value.replace(/^\d+/, (first) => String((Number(first) + 1) % 224))];
    if (/^\d+$/.test(value)) return [String(Number(value) + 1)];
    // Also a same-shaped string with its last letter changed, for values whose form the schema fixes.
    const relettered = value.replace(/[a-z](?=[^a-z]*$)/, (letter) => (letter === "z" ? "y" : "z"));
    return [`${value}x`, `x${value}`, "x", ...(relettered !== value ? [relettered] : [])];
  }
  return [];
}

/** Copies of `document` with the value at `location` deleted or replaced by each alternative. */
function variants(document: Record<string, unknown>, occurrence: Occurrence): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const edit = (change: (parent: any, key: string | number) => void) => {
    const copy = structuredClone(document);
    let parent: any = copy;
    for (const key of occurrence.location.slice(0, -1)) parent = parent[key];
    change(parent, occurrence.location.at(-1)!);
    out.push(copy);
  };
  edit((parent, key) => (Array.isArray(parent) ? parent.splice(Number(key), 1) : delete parent[key]));
  for (const alternative of alternatives(occurrence)) edit((parent, key) => (parent[key] = alternative));
  return out;
}

/** A fixture folder as the guard reads it: its documents by file, and how it translates for its proxies. */
export class Fixture {
  readonly documents: Map<string, unknown[]>;
  private readonly baseline: string;

  constructor(
    readonly dir: string,
    readonly proxies: ProxyIdentity[],
  ) {
    this.documents = new Map([...readTexts(dir)].map(([file, text]) => [file, parseAllDocuments(text).map((doc) => doc.toJS())]));
    const texts = this.texts(this.documents);
    const { errors } = loadConfigTexts(dir, texts);
    if (errors.length > 0) throw new Error(`fixture ${dir} does not load: ${JSON.stringify(errors)}`);
    this.baseline = this.output(texts)!;
  }

  /** Every field occurrence in the fixture, with a function that tells whether changing it changes the output. */
  *occurrences(): Generator<Occurrence & { shows: () => boolean }> {
    const byKind = new Map(roots().map((root) => [root.kind, root]));
    for (const [file, docs] of this.documents) {
      for (const [index, doc] of docs.entries()) {
        if (!isObject(doc)) continue;
        const root = byKind.get(file === MESH_CONFIG_FILE ? "MeshConfig" : String(doc.kind));
        if (!root) continue;
        const found: Occurrence[] = [];
        if (root.kind === "MeshConfig") occurrences(doc, root.schema, root.prefix, [], found);
        else if (isObject(doc.spec)) occurrences(doc.spec, root.schema, root.prefix, ["spec"], found);
        for (const occurrence of found) yield { ...occurrence, shows: () => this.shows(file, index, doc, occurrence) };
      }
    }
  }

  private shows(file: string, index: number, doc: Record<string, unknown>, occurrence: Occurrence): boolean {
    for (const variant of variants(doc, occurrence)) {
      const documents = new Map(this.documents);
      documents.set(file, documents.get(file)!.map((original, i) => (i === index ? variant : original)));
      const output = this.output(this.texts(documents));
      if (output !== undefined && output !== this.baseline) return true;
    }
    return false;
  }

  private texts(documents: Map<string, unknown[]>): Map<string, string> {
    return new Map([...documents].map(([file, docs]) => [file, docs.map((doc) => stringify(doc)).join("---\n")]));
  }

  /** The translations for every proxy, or undefined when the config does not load. */
  private output(texts: Map<string, string>): string | undefined {
    const { mesh, errors } = loadConfigTexts(this.dir, texts);
    if (errors.length > 0) return undefined;
    return JSON.stringify(this.proxies.map((proxy) => translate(mesh, testContext(this.dir, proxy))));
  }
}

/** The golden fixtures with the proxies cases.ts translates each for. */
export function goldenFixtures(here: string): Fixture[] {
  const proxies = new Map<string, ProxyIdentity[]>();
  for (const [fixture, proxy] of CASES) proxies.set(fixture, [...(proxies.get(fixture) ?? []), proxy]);
  return [...proxies].map(([fixture, list]) => new Fixture(join(here, "fixtures", fixture), list));
}
