// The guard (issue 13): every field the schemas accept must show its effect on the generated Envoy configuration in
// a golden fixture, or be listed in informational.ts: SHOWN_BY_TEST (a test that shows it, where one field of a
// fixture cannot) or INFORMATIONAL (why it changes nothing). A new field, kind or enum value fails this test until
// one of these is true. How to satisfy it: test/translate/README.md.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";
import { allKeys, goldenFixtures } from "./fields.js";
import { INFORMATIONAL, OWED, SHOWN_BY_TEST } from "./informational.js";

const HERE = import.meta.dirname;
/** Fields the guard does not try in fixtures: listed with their reason or their test. */
const listed = (key: string) => INFORMATIONAL[key] !== undefined || SHOWN_BY_TEST[key] !== undefined || OWED[key] !== undefined;

describe("every field the schemas accept", () => {
  const keys = allKeys();
  // Computed once: each field is tried in the fixtures until one occurrence shows an effect.
  const shown = new Map<string, string>();
  const tried = new Set<string>();
  const fixtures = goldenFixtures(HERE);
  for (const fixture of fixtures) {
    for (const occurrence of fixture.occurrences()) {
      tried.add(occurrence.key);
      if (shown.has(occurrence.key) || listed(occurrence.key)) continue;
      if (occurrence.shows()) shown.set(occurrence.key, fixture.dir);
    }
  }

  it("shows its effect in a golden fixture, or is listed as informational with the reason", () => {
    const missing = [...keys].filter((key) => !shown.has(key) && !listed(key)).sort();
    const detail = missing.map((key) => `  ${key}${tried.has(key) ? "   (set in a fixture, but changing it changes nothing)" : "   (in no fixture)"}`);
    const owed = Object.entries(OWED).map(([key, owner]) => `  ${key} (${owner})`);
    if (owed.length > 0) console.warn(`fields whose evidence is owed (informational.ts OWED):\n${owed.join("\n")}`);
    expect(missing, `fields without evidence; add them to a golden fixture (test/translate/fixtures, cases.ts) where they change the output, or to informational.ts with the reason:\n${detail.join("\n")}\n`).toEqual([]);
  });

  it("lists only fields the schemas accept, each with a reason or a test that exists", () => {
    const stale = [...Object.keys(INFORMATIONAL), ...Object.keys(SHOWN_BY_TEST), ...Object.keys(OWED)].filter((key) => !keys.has(key));
    expect(stale, "informational.ts names fields no schema accepts (renamed or removed?)").toEqual([]);
    for (const [key, reason] of Object.entries(INFORMATIONAL)) expect(reason.length, key).toBeGreaterThan(20);
    for (const [key, where] of Object.entries(SHOWN_BY_TEST)) {
      const [file, title] = [where.slice(0, where.indexOf(": ")), where.slice(where.indexOf(": ") + 2)];
      const path = join(PROJECT_ROOT, file);
      expect(existsSync(path) && readFileSync(path, "utf8").includes(title), `${key}: ${file} has no "${title}"`).toBe(true);
    }
  });

  it("lists as informational no field a golden fixture shows an effect of", () => {
    const fixtureHasEffect: string[] = [];
    for (const fixture of fixtures) {
      for (const occurrence of fixture.occurrences()) {
        if (listed(occurrence.key) && !fixtureHasEffect.includes(occurrence.key) && occurrence.shows()) fixtureHasEffect.push(occurrence.key);
      }
    }
    expect(fixtureHasEffect, "these fields are listed in informational.ts, but a golden fixture shows their effect: remove them from the lists").toEqual([]);
  });
});
