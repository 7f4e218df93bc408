// Plugin configuration as typed values: a small JSON parser and a reader that validates each field and names the
// first bad one (`rules[1].percent: expected a number from 0 to 100`), so onConfigure can reject the whole config
// with one clear log line. Runs at configure time only, never on the request path.

export enum JsonKind { Null, Bool, Number, String, Array, Object }

export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  bool: bool = false;
  number: f64 = 0;
  text: string = "";
  items: JsonValue[] = [];
  keys: string[] = [];
  fields: Map<string, JsonValue> = new Map();
}

/** Parses JSON text; throws nothing: on bad input `error` says where. */
export class JsonParser {
  error: string = "";
  private pos: i32 = 0;
  constructor(private readonly src: string) {}

  parse(): JsonValue | null {
    const value = this.value();
    if (value === null) return null;
    this.space();
    if (this.pos < this.src.length) return this.fail("unexpected text after the JSON value");
    return value;
  }

  private fail(message: string): JsonValue | null {
    if (this.error.length == 0) this.error = "invalid JSON at offset " + this.pos.toString() + ": " + message;
    return null;
  }

  private space(): void {
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.pos++;
    }
  }

  private value(): JsonValue | null {
    this.space();
    if (this.pos >= this.src.length) return this.fail("unexpected end");
    const c = this.src.charCodeAt(this.pos);
    const v = new JsonValue();
    if (c == 0x7b) return this.object();
    if (c == 0x5b) return this.array();
    if (c == 0x22) {
      const s = this.string();
      if (s === null) return null;
      v.kind = JsonKind.String;
      v.text = s;
      return v;
    }
    if (this.src.startsWith("true", this.pos)) { this.pos += 4; v.kind = JsonKind.Bool; v.bool = true; return v; }
    if (this.src.startsWith("false", this.pos)) { this.pos += 5; v.kind = JsonKind.Bool; return v; }
    if (this.src.startsWith("null", this.pos)) { this.pos += 4; return v; }
    return this.number();
  }

  private number(): JsonValue | null {
    const start = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if ((c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45) this.pos++;
      else break;
    }
    if (start == this.pos) return this.fail("unexpected character '" + this.src.charAt(this.pos) + "'");
    const n = parseFloat(this.src.substring(start, this.pos));
    if (isNaN(n)) return this.fail("bad number");
    const v = new JsonValue();
    v.kind = JsonKind.Number;
    v.number = n;
    return v;
  }

  private string(): string | null {
    this.pos++; // opening quote
    let out = "";
    let runStart = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 0x22) {
        out += this.src.substring(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c == 0x5c) {
        out += this.src.substring(runStart, this.pos);
        this.pos++;
        const e = this.src.charCodeAt(this.pos);
        if (e == 0x6e) out += "\n";
        else if (e == 0x74) out += "\t";
        else if (e == 0x72) out += "\r";
        else if (e == 0x62) out += "\b";
        else if (e == 0x66) out += "\f";
        else if (e == 0x75) {
          const code = I32.parseInt(this.src.substring(this.pos + 1, this.pos + 5), 16);
          out += String.fromCharCode(code);
          this.pos += 4;
        } else out += String.fromCharCode(e);
        this.pos++;
        runStart = this.pos;
        continue;
      }
      this.pos++;
    }
    this.fail("unterminated string");
    return null;
  }

  private array(): JsonValue | null {
    this.pos++;
    const v = new JsonValue();
    v.kind = JsonKind.Array;
    this.space();
    if (this.src.charCodeAt(this.pos) == 0x5d) { this.pos++; return v; }
    while (true) {
      const item = this.value();
      if (item === null) return null;
      v.items.push(item);
      this.space();
      const c = this.src.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x5d) return v;
      if (c != 0x2c) { this.pos--; return this.fail("expected ',' or ']'"); }
    }
  }

  private object(): JsonValue | null {
    this.pos++;
    const v = new JsonValue();
    v.kind = JsonKind.Object;
    this.space();
    if (this.src.charCodeAt(this.pos) == 0x7d) { this.pos++; return v; }
    while (true) {
      this.space();
      if (this.src.charCodeAt(this.pos) != 0x22) return this.fail("expected a field name");
      const key = this.string();
      if (key === null) return null;
      this.space();
      if (this.src.charCodeAt(this.pos) != 0x3a) return this.fail("expected ':'");
      this.pos++;
      const item = this.value();
      if (item === null) return null;
      if (!v.fields.has(key)) v.keys.push(key);
      v.fields.set(key, item);
      this.space();
      const c = this.src.charCodeAt(this.pos);
      this.pos++;
      if (c == 0x7d) return v;
      if (c != 0x2c) { this.pos--; return this.fail("expected ',' or '}'"); }
    }
  }
}

/** Where the first problem of a configuration is recorded, shared by a reader and its children. */
class Problems {
  first: string = "";
}

/** Reads a JSON object field by field. Each getter returns the default when the field is absent, and records an
 * error naming the field when it is present but wrong. Check `ok` (or `error`) once at the end. */
export class ConfigReader {
  private readonly seen: Set<string> = new Set();

  private constructor(private readonly value: JsonValue, private readonly path: string, private readonly problems: Problems) {}

  /** Parses `text` (empty text is `{}`). */
  static parse(text: string): ConfigReader {
    const problems = new Problems();
    const trimmed = text.trim();
    if (trimmed.length == 0) return new ConfigReader(emptyObject(), "", problems);
    const parser = new JsonParser(trimmed);
    const value = parser.parse();
    if (value === null) {
      problems.first = parser.error;
      return new ConfigReader(emptyObject(), "", problems);
    }
    const reader = new ConfigReader(value, "", problems);
    if (value.kind != JsonKind.Object) reader.problem("", "expected a JSON object");
    return reader;
  }

  get ok(): bool { return this.problems.first.length == 0; }
  get error(): string { return this.problems.first; }

  /** Records a problem with `field` (e.g. a rule that does not hold across fields). */
  problem(field: string, message: string): void {
    if (this.problems.first.length == 0) {
      const name = this.name(field);
      this.problems.first = (name.length > 0 ? name + ": " : "") + message;
    }
  }

  has(field: string): bool { return this.value.fields.has(field); }

  /** Marks every field that was not read as an error: a typo must not be silently ignored. */
  rejectUnknownFields(): void {
    const keys = this.value.keys;
    for (let i = 0; i < keys.length; i++) {
      if (!this.seen.has(keys[i])) {
        this.problem(keys[i], "unknown field");
        return;
      }
    }
  }

  string(field: string, fallback: string): string {
    const v = this.field(field);
    if (v === null) return fallback;
    if (v.kind != JsonKind.String) { this.problem(field, "expected a string"); return fallback; }
    return v.text;
  }

  /** A header name as Envoy's header maps hold it: lower-case letters, digits, '-' and '_'. */
  headerName(field: string, fallback: string): string {
    const name = this.string(field, fallback);
    let ok = name.length > 0;
    for (let i = 0; ok && i < name.length; i++) {
      const c = name.charCodeAt(i);
      ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f;
    }
    if (!ok) this.problem(field, "expected a lower-case header name");
    return name;
  }

  bool(field: string, fallback: bool): bool {
    const v = this.field(field);
    if (v === null) return fallback;
    if (v.kind != JsonKind.Bool) { this.problem(field, "expected true or false"); return fallback; }
    return v.bool;
  }

  number(field: string, fallback: f64, min: f64 = -Infinity, max: f64 = Infinity): f64 {
    const v = this.field(field);
    if (v === null) return fallback;
    if (v.kind != JsonKind.Number || v.number < min || v.number > max) {
      this.problem(field, "expected a number" + range(min, max));
      return fallback;
    }
    return v.number;
  }

  integer(field: string, fallback: i64, min: i64 = i64.MIN_VALUE, max: i64 = i64.MAX_VALUE): i64 {
    const v = this.field(field);
    if (v === null) return fallback;
    if (v.kind != JsonKind.Number || v.number != Math.floor(v.number) || <i64>v.number < min || <i64>v.number > max) {
      this.problem(field, "expected a whole number" + range(<f64>min, <f64>max));
      return fallback;
    }
    return <i64>v.number;
  }

  /** A duration as Istio writes it ("10s", "500ms", "1m", "1.5s") or a number of milliseconds; in milliseconds. */
  durationMs(field: string, fallback: i64, min: i64 = 0, max: i64 = i64.MAX_VALUE): i64 {
    const v = this.field(field);
    if (v === null) return fallback;
    let ms: f64 = -1;
    if (v.kind == JsonKind.Number) ms = v.number;
    else if (v.kind == JsonKind.String) ms = parseDurationMs(v.text);
    if (ms < <f64>min || ms > <f64>max || isNaN(ms)) {
      const bound = ms > <f64>max ? " of at most " + max.toString() + "ms" : min > 0 ? " of at least " + min.toString() + "ms" : "";
      this.problem(field, "expected a duration such as \"10s\" or \"250ms\"" + bound);
      return fallback;
    }
    return <i64>ms;
  }

  /** One of `choices`. */
  oneOf(field: string, choices: string[], fallback: string): string {
    const value = this.string(field, fallback);
    if (!choices.includes(value)) this.problem(field, "expected one of " + choices.join(", "));
    return value;
  }

  stringArray(field: string): string[] {
    const v = this.field(field);
    if (v === null) return [];
    const out: string[] = [];
    if (v.kind != JsonKind.Array) { this.problem(field, "expected a list of strings"); return out; }
    for (let i = 0; i < v.items.length; i++) {
      const item = v.items[i];
      if (item.kind != JsonKind.String) { this.problem(field + "[" + i.toString() + "]", "expected a string"); return out; }
      out.push(item.text);
    }
    return out;
  }

  /** A nested object, or null when absent. */
  object(field: string): ConfigReader | null {
    const v = this.field(field);
    if (v === null) return null;
    if (v.kind != JsonKind.Object) { this.problem(field, "expected an object"); return null; }
    return new ConfigReader(v, this.name(field), this.problems);
  }

  /** A list of objects (empty when absent). */
  objects(field: string): ConfigReader[] {
    const v = this.field(field);
    const out: ConfigReader[] = [];
    if (v === null) return out;
    if (v.kind != JsonKind.Array) { this.problem(field, "expected a list"); return out; }
    for (let i = 0; i < v.items.length; i++) {
      const item = v.items[i];
      const name = this.name(field) + "[" + i.toString() + "]";
      if (item.kind != JsonKind.Object) {
        if (this.problems.first.length == 0) this.problems.first = name + ": expected an object";
        return out;
      }
      out.push(new ConfigReader(item, name, this.problems));
    }
    return out;
  }

  private field(field: string): JsonValue | null {
    this.seen.add(field);
    if (!this.value.fields.has(field)) return null;
    const v = this.value.fields.get(field);
    return v.kind == JsonKind.Null ? null : v;
  }

  private name(field: string): string {
    if (field.length == 0) return this.path;
    return this.path.length == 0 ? field : this.path + "." + field;
  }
}

function emptyObject(): JsonValue {
  const v = new JsonValue();
  v.kind = JsonKind.Object;
  return v;
}

function range(min: f64, max: f64): string {
  const hasMin = min != -Infinity && min > <f64>i64.MIN_VALUE;
  const hasMax = max != Infinity && max < <f64>i64.MAX_VALUE;
  if (hasMin && hasMax) return " from " + trimNumber(min) + " to " + trimNumber(max);
  if (hasMin) return " of at least " + trimNumber(min);
  if (hasMax) return " of at most " + trimNumber(max);
  return "";
}

function trimNumber(n: f64): string {
  return n == Math.floor(n) ? (<i64>n).toString() : n.toString();
}

/** "1h", "1m", "10s", "250ms", "1.5s", "100us" -> milliseconds; -1 when not a duration. */
export function parseDurationMs(text: string): f64 {
  let unitAt = text.length;
  while (unitAt > 0) {
    const c = text.charCodeAt(unitAt - 1);
    if ((c >= 0x30 && c <= 0x39) || c == 0x2e) break;
    unitAt--;
  }
  if (unitAt == 0) return -1;
  const amount = parseFloat(text.substring(0, unitAt));
  if (isNaN(amount) || amount < 0) return -1;
  const unit = text.substring(unitAt);
  if (unit == "ms") return amount;
  if (unit == "s") return amount * 1000;
  if (unit == "m") return amount * 60000;
  if (unit == "h") return amount * 3600000;
  if (unit == "us") return amount / 1000;
  return -1;
}
