// Reads the trace context a request arrives with, in either B3 encoding (https://github.com/openzipkin/b3-propagation):
// the single `b3` header ({traceid}-{spanid}[-{sampling}[-{parentspanid}]], or a sampling decision alone) or the
// `x-b3-*` headers. Like OpenTelemetry's B3 propagator, the single header wins when both are present. Ids must be
// lower-case hex of the right length (trace 16 or 32, span 16) and not all zeros; anything else is malformed.
import { HeaderNames } from "@skiff/proxy-wasm";
import { isB3Id } from "./ids";

/** Every header the filter reads, fetched with one host call (HeaderMap.getEach): most requests carry none of the
 * B3 ones, and asking for each would cost a host call apiece. TRACE_HEADERS[i] is read into values[i]. */
export const TRACE_HEADERS = new HeaderNames(["b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "x-request-id"]);
export const REQUEST_ID = 6;

export enum Incoming {
  /** No trace context at all. */
  None,
  /** A trace id and span id to continue. */
  Valid,
  /** Only a sampling or debug decision (`x-b3-sampled: 0`, `b3: d`): a new trace that honours it. */
  DecisionOnly,
  /** Some trace header present but invalid: the whole context is replaced. */
  Malformed,
}

/** What one request carried. One instance is reused: a VM handles one callback at a time. */
export class IncomingTrace {
  kind: Incoming = Incoming.None;
  traceId: string = "";
  spanId: string = "";
  /** -1: no decision (the receiver decides), 0 or 1. */
  sampled: i32 = -1;
  debug: bool = false;
  /** Which headers were present, so that stale ones can be removed. */
  hadSingle: bool = false;
  hadParent: bool = false;
  hadSampled: bool = false;
  hadFlags: bool = false;
  /** For the debug log: which part was malformed. */
  problem: string = "";

  /** Reads the trace context from the values of TRACE_HEADERS. */
  read(values: Array<string | null>): IncomingTrace {
    this.kind = Incoming.None;
    this.traceId = "";
    this.spanId = "";
    this.sampled = -1;
    this.debug = false;
    this.problem = "";
    const single = unchecked(values[0]);
    // With the single header the x-b3 ids are not read: it wins, and the filter rewrites both. The other x-b3
    // headers are looked at either way, to remove them if they go stale.
    const traceId = single === null ? unchecked(values[1]) : null;
    const spanId = single === null ? unchecked(values[2]) : null;
    const parent = unchecked(values[3]);
    const sampled = unchecked(values[4]);
    const flags = unchecked(values[5]);
    this.hadSingle = single !== null;
    this.hadParent = parent !== null;
    this.hadSampled = sampled !== null;
    this.hadFlags = flags !== null;
    if (single !== null) this.readSingle(single);
    else this.readMulti(traceId, spanId, parent, sampled, flags);
    return this;
  }

  private malformed(problem: string): void {
    this.kind = Incoming.Malformed;
    this.problem = problem;
    this.sampled = -1;
    this.debug = false;
  }

  private readSingle(value: string): void {
    const first = value.indexOf("-");
    if (first < 0) {
      if (value.length != 1 || !this.readSamplingCode(value.charCodeAt(0))) this.malformed("b3: expected {traceid}-{spanid}[-{sampling}[-{parentspanid}]] or 0, 1, d");
      else this.kind = Incoming.DecisionOnly;
      return;
    }
    if ((first != 16 && first != 32) || !isB3Id(value, 0, first)) return this.malformed("b3: trace id");
    const second = value.indexOf("-", first + 1);
    const spanEnd = second < 0 ? value.length : second;
    if (spanEnd - first - 1 != 16 || !isB3Id(value, first + 1, spanEnd)) return this.malformed("b3: span id");
    if (second >= 0) {
      const third = value.indexOf("-", second + 1);
      const samplingEnd = third < 0 ? value.length : third;
      if (samplingEnd - second != 2 || !this.readSamplingCode(value.charCodeAt(second + 1))) return this.malformed("b3: sampling state");
      if (third >= 0 && (value.length - third - 1 != 16 || !isB3Id(value, third + 1, value.length))) {
        return this.malformed("b3: parent span id");
      }
    }
    this.kind = Incoming.Valid;
    this.traceId = value.substring(0, first);
    this.spanId = value.substring(first + 1, spanEnd);
  }

  /** The one character of a sampling state: '1', '0' or 'd' (debug, which implies sampled). */
  private readSamplingCode(code: i32): bool {
    if (code == 0x31) this.sampled = 1;
    else if (code == 0x30) this.sampled = 0;
    else if (code == 0x64) { this.sampled = 1; this.debug = true; }
    else return false;
    return true;
  }

  private readMulti(traceId: string | null, spanId: string | null, parent: string | null, sampled: string | null, flags: string | null): void {
    if (sampled !== null) {
      // "true"/"false" were sent by tracers before the B3 specification settled on 1/0.
      if (sampled == "1" || sampled == "true") this.sampled = 1;
      else if (sampled == "0" || sampled == "false") this.sampled = 0;
      else return this.malformed("x-b3-sampled: expected 1 or 0");
    }
    if (flags !== null) {
      if (flags == "1") { this.debug = true; this.sampled = 1; }
      else if (flags != "0") return this.malformed("x-b3-flags: expected 1 (debug) or 0");
    }
    if (traceId === null && spanId === null && parent === null) {
      this.kind = sampled !== null || flags !== null ? Incoming.DecisionOnly : Incoming.None;
      return;
    }
    if (traceId === null || (traceId.length != 16 && traceId.length != 32) || !isB3Id(traceId, 0, traceId.length)) {
      return this.malformed("x-b3-traceid: expected 16 or 32 lower-case hex digits, not all zero");
    }
    if (spanId === null || spanId.length != 16 || !isB3Id(spanId, 0, 16)) {
      return this.malformed("x-b3-spanid: expected 16 lower-case hex digits, not all zero");
    }
    if (parent !== null && (parent.length != 16 || !isB3Id(parent, 0, 16))) {
      return this.malformed("x-b3-parentspanid: expected 16 lower-case hex digits, not all zero");
    }
    this.kind = Incoming.Valid;
    this.traceId = traceId;
    this.spanId = spanId;
  }
}
