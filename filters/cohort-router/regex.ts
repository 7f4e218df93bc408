// A small regular-expression subset, compiled at configure time and matched in linear time without allocating.
// A full engine (RE2, as Envoy and Istio use) is too costly to carry into every request in AssemblyScript, and no
// fitting AssemblyScript regex library exists (assemblyscript-regex 1.6.4 matches by recursive backtracking,
// allocating on every match, with JavaScript search semantics, and is built against AssemblyScript 0.18).
// Supported: literal characters, `.`, character classes `[a-z0-9_]` and `[^...]` (ASCII), the escapes
// `\d \D \w \W \s \S` and `\` before any punctuation, and the quantifiers `? * + {n} {n,} {n,m}` on a single atom.
// Not supported: groups `( )`, alternation `|`, lazy quantifiers, backreferences, anchors inside the pattern. Like
// Envoy's `safe_regex` and Istio's `regex`, a pattern must match the whole value; a leading `^` and a trailing `$`
// are accepted and change nothing.
//
// How it matches: the pattern becomes a list of at most MAX_ATOMS atoms, each "one", "optional" or "star"; the set of
// positions the automaton can be in is a u64 bit mask (bit i: before atom i, bit n: matched), advanced once per
// character: a Thompson-NFA simulation, so no pattern can make a match take more than O(length * atoms).

/** Atoms after expanding `+` and `{n,m}`: the bit-mask simulation has 64 bits, one of which is "matched". */
const MAX_ATOMS: i32 = 63;

const ONE: u8 = 0;
const OPTIONAL: u8 = 1;
const STAR: u8 = 2;

/** One position of the pattern: the characters it accepts and how often. */
class Atom {
  constructor(
    /** Accepted ASCII characters 0-63 and 64-127, one bit each. */
    readonly low: u64,
    readonly high: u64,
    /** Whether any character above 127 is accepted (`.`, negated classes, \D \W \S). */
    readonly otherChars: bool,
    /** A single non-ASCII literal, or -1. */
    readonly literal: i32,
    readonly repeat: u8,
  ) {}

  accepts(c: i32): bool {
    if (c < 64) return ((this.low >> <u64>c) & 1) != 0;
    if (c < 128) return ((this.high >> <u64>(c - 64)) & 1) != 0;
    return this.otherChars || c == this.literal;
  }

  withRepeat(repeat: u8): Atom {
    return new Atom(this.low, this.high, this.otherChars, this.literal, repeat);
  }
}

/** A compiled pattern; `Regex.compile` returns null and sets `Regex.error` when the pattern is outside the subset. */
export class Regex {
  static error: string = "";

  private constructor(private readonly atoms: Atom[], private readonly startMask: u64) {}

  static compile(pattern: string): Regex | null {
    const atoms = new RegexParser(pattern).parse();
    if (atoms === null) return null;
    return new Regex(atoms, closure(atoms, 1));
  }

  /** Whether the whole of `value` matches. */
  matches(value: string): bool {
    const atoms = this.atoms;
    const count = atoms.length;
    let mask = this.startMask;
    for (let at = 0; at < value.length && mask != 0; at++) {
      const c = <i32>value.charCodeAt(at);
      let next: u64 = 0;
      let pending = mask & ~(<u64>1 << <u64>count);
      while (pending != 0) {
        const i = <i32>ctz(pending);
        pending &= pending - 1;
        const atom = unchecked(atoms[i]);
        if (atom.accepts(c)) next |= atom.repeat == STAR ? <u64>1 << <u64>i : <u64>1 << <u64>(i + 1);
      }
      mask = closure(atoms, next);
    }
    return ((mask >> <u64>count) & 1) != 0;
  }
}

/** Adds the positions reachable without reading a character: past optional and star atoms. */
function closure(atoms: Atom[], mask: u64): u64 {
  for (let i = 0; i < atoms.length; i++) {
    if (((mask >> <u64>i) & 1) != 0 && unchecked(atoms[i]).repeat != ONE) mask |= <u64>1 << <u64>(i + 1);
  }
  return mask;
}

const SUPPORTED = "supported: literals, ., [classes], \\d \\w \\s, ? * + {n,m}";

class RegexParser {
  private pos: i32 = 0;
  private end: i32;
  private readonly atoms: Atom[] = [];

  constructor(private readonly src: string) {
    this.end = src.length;
  }

  parse(): Atom[] | null {
    Regex.error = "";
    if (this.end > 0 && this.src.charCodeAt(0) == 0x5e) this.pos = 1; // ^
    if (this.end > this.pos && this.src.charCodeAt(this.end - 1) == 0x24 && !this.escaped(this.end - 1)) this.end--; // $
    while (this.pos < this.end) {
      const atom = this.atom();
      if (atom === null) return null;
      if (!this.quantified(atom)) return null;
      if (this.atoms.length > MAX_ATOMS) {
        Regex.error = "pattern too long: at most " + MAX_ATOMS.toString() + " atoms after expanding + and {n,m}";
        return null;
      }
    }
    return this.atoms;
  }

  private fail(message: string): Atom | null {
    Regex.error = message;
    return null;
  }

  private unsupported(at: i32): Atom | null {
    return this.fail("unsupported regex syntax '" + this.src.charAt(at) + "' at offset " + at.toString() + " (" + SUPPORTED + ")");
  }

  /** Whether the character at `at` is preceded by an odd number of backslashes. */
  private escaped(at: i32): bool {
    let slashes = 0;
    while (at - slashes - 1 >= 0 && this.src.charCodeAt(at - slashes - 1) == 0x5c) slashes++;
    return (slashes & 1) == 1;
  }

  private atom(): Atom | null {
    const c = <i32>this.src.charCodeAt(this.pos);
    if (c == 0x2e) { this.pos++; return new Atom(u64.MAX_VALUE, u64.MAX_VALUE, true, -1, ONE); }
    if (c == 0x5b) return this.characterClass();
    if (c == 0x5c) return this.escape(false);
    if (c == 0x28 || c == 0x29 || c == 0x7c || c == 0x5e || c == 0x24 || c == 0x5d) return this.unsupported(this.pos);
    if (c == 0x2a || c == 0x2b || c == 0x3f || c == 0x7b) return this.fail("nothing to repeat at offset " + this.pos.toString());
    this.pos++;
    return literal(c);
  }

  /** `\d`, `\w`, `\s` (and negations) or an escaped punctuation character. Inside a class, negations are refused. */
  private escape(inClass: bool): Atom | null {
    if (this.pos + 1 >= this.end) return this.fail("trailing backslash");
    const c = <i32>this.src.charCodeAt(this.pos + 1);
    this.pos += 2;
    let low: u64 = 0;
    let high: u64 = 0;
    const lower = c | 0x20;
    if (lower == 0x64) { low = rangeBits(0x30, 0x39, 0); } // d
    else if (lower == 0x77) { // w
      low = rangeBits(0x30, 0x39, 0);
      high = rangeBits(0x41, 0x5a, 64) | rangeBits(0x61, 0x7a, 64) | rangeBits(0x5f, 0x5f, 64);
    } else if (lower == 0x73) { low = rangeBits(0x09, 0x0d, 0) | rangeBits(0x20, 0x20, 0); } // s
    else if (isPunctuation(c)) return literal(c);
    else return this.fail("unsupported escape '\\" + String.fromCharCode(c) + "' at offset " + (this.pos - 2).toString() + " (" + SUPPORTED + ")");
    if (c >= 0x41 && c <= 0x5a) { // \D \W \S
      if (inClass) return this.fail("negated escape '\\" + String.fromCharCode(c) + "' inside a class at offset " + (this.pos - 2).toString());
      return new Atom(~low, ~high, true, -1, ONE);
    }
    return new Atom(low, high, false, -1, ONE);
  }

  private characterClass(): Atom | null {
    const start = this.pos;
    this.pos++;
    let negated = false;
    if (this.pos < this.end && this.src.charCodeAt(this.pos) == 0x5e) { negated = true; this.pos++; }
    let low: u64 = 0;
    let high: u64 = 0;
    let empty = true;
    while (true) {
      if (this.pos >= this.end) return this.fail("unterminated class starting at offset " + start.toString());
      const c = <i32>this.src.charCodeAt(this.pos);
      if (c == 0x5d && !empty) { this.pos++; break; }
      empty = false;
      let first = c;
      if (c == 0x5c && this.pos + 1 < this.end && isPunctuation(<i32>this.src.charCodeAt(this.pos + 1))) {
        first = <i32>this.src.charCodeAt(this.pos + 1); // an escaped character: may start a range
        this.pos += 2;
      } else if (c == 0x5c) {
        const escape = this.escape(true);
        if (escape === null) return null;
        low |= escape.low;
        high |= escape.high;
        continue;
      } else {
        this.pos++;
      }
      if (first > 127) return this.fail("non-ASCII character in a class at offset " + (this.pos - 1).toString());
      let last = first;
      if (this.pos + 1 < this.end && this.src.charCodeAt(this.pos) == 0x2d && this.src.charCodeAt(this.pos + 1) != 0x5d) {
        last = <i32>this.src.charCodeAt(this.pos + 1);
        if (last == 0x5c) return this.fail("escaped range end at offset " + (this.pos + 1).toString());
        if (last > 127 || last < first) return this.fail("bad range at offset " + this.pos.toString());
        this.pos += 2;
      }
      low |= rangeBits(first, last, 0);
      high |= rangeBits(first, last, 64);
    }
    if (negated) return new Atom(~low, ~high, true, -1, ONE);
    return new Atom(low, high, false, -1, ONE);
  }

  /** Reads a quantifier after `atom` (if any) and appends the atom's expansion. */
  private quantified(atom: Atom): bool {
    const atoms = this.atoms;
    if (this.pos >= this.end) { atoms.push(atom); return true; }
    const c = this.src.charCodeAt(this.pos);
    if (c == 0x3f) { this.pos++; atoms.push(atom.withRepeat(OPTIONAL)); }
    else if (c == 0x2a) { this.pos++; atoms.push(atom.withRepeat(STAR)); }
    else if (c == 0x2b) { this.pos++; atoms.push(atom); atoms.push(atom.withRepeat(STAR)); }
    else if (c == 0x7b) {
      const braceAt = this.pos;
      this.pos++;
      const min = this.digits();
      let max = min;
      if (this.pos < this.end && this.src.charCodeAt(this.pos) == 0x2c) {
        this.pos++;
        max = this.pos < this.end && this.src.charCodeAt(this.pos) == 0x7d ? -1 : this.digits();
      }
      if (min < 0 || this.pos >= this.end || this.src.charCodeAt(this.pos) != 0x7d || (max >= 0 && max < min) || max > MAX_ATOMS || min > MAX_ATOMS) {
        this.fail("bad repetition at offset " + braceAt.toString());
        return false;
      }
      this.pos++;
      for (let i = 0; i < min; i++) atoms.push(atom);
      if (max < 0) atoms.push(atom.withRepeat(STAR));
      else for (let i = min; i < max; i++) atoms.push(atom.withRepeat(OPTIONAL));
    } else {
      atoms.push(atom);
      return true;
    }
    if (this.pos < this.end) {
      const after = this.src.charCodeAt(this.pos);
      if (after == 0x3f || after == 0x2a || after == 0x2b || after == 0x7b) {
        this.fail("unsupported repeated quantifier (lazy or possessive) at offset " + this.pos.toString());
        return false;
      }
    }
    return true;
  }

  /** A decimal number, or -1 when there is none. */
  private digits(): i32 {
    const start = this.pos;
    let n = 0;
    while (this.pos < this.end) {
      const c = <i32>this.src.charCodeAt(this.pos);
      if (c < 0x30 || c > 0x39 || n > 1000) break;
      n = n * 10 + (c - 0x30);
      this.pos++;
    }
    return this.pos == start ? -1 : n;
  }
}

function literal(c: i32): Atom {
  if (c > 127) return new Atom(0, 0, false, c, ONE);
  return new Atom(rangeBits(c, c, 0), rangeBits(c, c, 64), false, -1, ONE);
}

/** The bits for characters first..last that fall in the 64-character word starting at `base`. */
function rangeBits(first: i32, last: i32, base: i32): u64 {
  let bits: u64 = 0;
  for (let c = max(first, base); c <= min(last, base + 63); c++) bits |= <u64>1 << <u64>(c - base);
  return bits;
}

function isPunctuation(c: i32): bool {
  return c >= 0x21 && c <= 0x7e && !(c >= 0x30 && c <= 0x39) && !((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a);
}
