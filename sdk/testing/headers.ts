// A header map that behaves like Envoy's: names are lower-cased, pseudo-headers (":path") stay ahead of the others,
// `set` removes every value and appends the new one (Envoy's setCopy), and a read returns the first value.
import type { HeaderPair, HeadersInit } from "./abi.js";
import { toPairs } from "./abi.js";

export class Headers {
  private pairs: HeaderPair[] = [];

  constructor(init?: HeadersInit) {
    for (const [name, value] of toPairs(init)) this.add(name, value);
  }

  /** The first value of `name`, or null when absent (Envoy answers NOT_FOUND). */
  get(name: string): string | null {
    const key = name.toLowerCase();
    const pair = this.pairs.find(([n]) => n === key);
    return pair === undefined ? null : pair[1];
  }

  getAll(name: string): string[] {
    const key = name.toLowerCase();
    return this.pairs.filter(([n]) => n === key).map(([, v]) => v);
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  add(name: string, value: string): void {
    const key = name.toLowerCase();
    if (key.startsWith(":")) {
      let at = 0;
      while (at < this.pairs.length && this.pairs[at][0].startsWith(":")) at++;
      this.pairs.splice(at, 0, [key, value]);
    } else {
      this.pairs.push([key, value]);
    }
  }

  set(name: string, value: string): void {
    this.remove(name);
    this.add(name, value);
  }

  remove(name: string): void {
    const key = name.toLowerCase();
    this.pairs = this.pairs.filter(([n]) => n !== key);
  }

  /** Replaces every header (proxy_set_header_map_pairs). */
  replaceAll(pairs: readonly HeaderPair[]): void {
    this.pairs = [];
    for (const [name, value] of pairs) this.add(name, value);
  }

  /** Ordered pairs, as proxy_get_header_map_pairs returns them. */
  entries(): HeaderPair[] {
    return this.pairs.map(([n, v]) => [n, v]);
  }

  /** One value per name (the first), for `expect(...).toEqual({...})`. */
  toObject(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of this.pairs) if (!(name in out)) out[name] = value;
    return out;
  }

  get size(): number {
    return this.pairs.length;
  }

  /** Sum of name and value lengths: what Envoy's proxy_get_header_map_size returns (its byteSize). */
  get byteSize(): number {
    let total = 0;
    for (const [name, value] of this.pairs) total += Buffer.byteLength(name) + Buffer.byteLength(value);
    return total;
  }
}
