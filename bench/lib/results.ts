// bench/RESULTS.md holds one section per benchmark between markers; a run rewrites its own section and keeps the
// others (and the hand-written summary) as they are.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../control/envoy-binary/locate.js";

const RESULTS = join(PROJECT_ROOT, "bench", "RESULTS.md");

export function writeResultsSection(name: string, body: string): void {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const section = `${start}\n${body}\n${end}`;
  let text = existsSync(RESULTS) ? readFileSync(RESULTS, "utf8") : "";
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  text = from >= 0 && to > from ? text.slice(0, from) + section + text.slice(to + end.length) : `${text.trimEnd()}\n\n${section}\n`;
  writeFileSync(RESULTS, text);
}
