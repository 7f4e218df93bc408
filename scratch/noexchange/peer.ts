// Peer metadata as Istio exchanges it between sidecars: the `x-envoy-peer-metadata` header carries the base64 of a
// serialized google.protobuf.Struct of the node's metadata (NAMESPACE, WORKLOAD_NAME, LABELS, CLUSTER_ID, ...), and
// `x-envoy-peer-metadata-id` the node's id (istio/proxy extensions/metadata_exchange; the keys are those of
// istio/api mesh/v1alpha1/proxy.proto NodeMetadata). Only the fields the standard metrics use are written and read;
// anything else in a peer's Struct is skipped. Also reads the `istio.workload` endpoint metadata istiod puts on EDS
// endpoints ("workload;namespace;canonical service;canonical revision;cluster"), the fallback for a peer without a
// sidecar.

export const UNKNOWN = "unknown";

/** What the metrics say about one side of a request. */
export class Peer {
  constructor(
    public workload: string = UNKNOWN,
    public namespace: string = UNKNOWN,
    public app: string = UNKNOWN,
    public version: string = UNKNOWN,
    public cluster: string = UNKNOWN,
  ) {}

  /** This peer's metric labels, built on first use and kept with the peer (the local peer and those the metadata
   * exchange named are cached, so their labels are built once, not on every request): as the source or the
   * destination, each in two parts around the principal label, which depends on the connection. */
  labels: string[] | null = null;
  /** A number naming this peer in the metric cache's keys (index.ts), given on first use; 0 until then. */
  key: u32 = 0;
}

export const UNKNOWN_PEER = new Peer();

// ---------------------------------------------------------------------------------------------- base64

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function base64Encode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (<u32>bytes[i] << 16) | (<u32>bytes[i + 1] << 8) | <u32>bytes[i + 2];
    out += ALPHABET.charAt(n >> 18) + ALPHABET.charAt((n >> 12) & 63) + ALPHABET.charAt((n >> 6) & 63) + ALPHABET.charAt(n & 63);
  }
  const rest = bytes.length - i;
  if (rest == 1) {
    const n = <u32>bytes[i] << 16;
    out += ALPHABET.charAt(n >> 18) + ALPHABET.charAt((n >> 12) & 63) + "==";
  } else if (rest == 2) {
    const n = (<u32>bytes[i] << 16) | (<u32>bytes[i + 1] << 8);
    out += ALPHABET.charAt(n >> 18) + ALPHABET.charAt((n >> 12) & 63) + ALPHABET.charAt((n >> 6) & 63) + "=";
  }
  return out;
}

function sextet(c: i32): i32 {
  if (c >= 65 && c <= 90) return c - 65; // A-Z
  if (c >= 97 && c <= 122) return c - 71; // a-z
  if (c >= 48 && c <= 57) return c + 4; // 0-9
  if (c == 43 || c == 45) return 62; // + (and - of the URL alphabet)
  if (c == 47 || c == 95) return 63; // / (and _)
  return -1;
}

/** Decodes standard (or URL-safe) base64, padded or not; null when it is not base64. */
export function base64Decode(text: string): Uint8Array | null {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) == 61) end--;
  if (end % 4 == 1) return null;
  const out = new Uint8Array((end * 3) >> 2);
  let bits: u32 = 0;
  let count = 0;
  let at = 0;
  for (let i = 0; i < end; i++) {
    const value = sextet(text.charCodeAt(i));
    if (value < 0) return null;
    bits = (bits << 6) | <u32>value;
    count += 6;
    if (count >= 8) {
      count -= 8;
      out[at++] = <u8>(bits >> count);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- protobuf

// google.protobuf.Struct { map<string, Value> fields = 1; }: each entry a length-delimited message { key = 1, value = 2 }.
// Value { string_value = 3; struct_value = 5; ... }.

class Writer {
  bytes: u8[] = [];
  varint(value: u32): void {
    while (value >= 0x80) {
      this.bytes.push(<u8>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    this.bytes.push(<u8>value);
  }
  lengthDelimited(field: u32, data: u8[]): void {
    this.varint((field << 3) | 2);
    this.varint(<u32>data.length);
    for (let i = 0; i < data.length; i++) this.bytes.push(data[i]);
  }
  text(field: u32, value: string): void {
    const encoded = Uint8Array.wrap(String.UTF8.encode(value));
    const data = new Array<u8>(encoded.length);
    for (let i = 0; i < encoded.length; i++) data[i] = encoded[i];
    this.lengthDelimited(field, data);
  }
}

/** A Struct of string fields and one nested Struct of string fields (LABELS), in key order. */
export function encodeStruct(keys: string[], values: string[], nestedKey: string, nestedKeys: string[], nestedValues: string[]): Uint8Array {
  const out = new Writer();
  for (let i = 0; i < keys.length; i++) out.lengthDelimited(1, stringEntry(keys[i], values[i]));
  if (nestedKey.length > 0) {
    const nested = new Writer();
    for (let i = 0; i < nestedKeys.length; i++) nested.lengthDelimited(1, stringEntry(nestedKeys[i], nestedValues[i]));
    const value = new Writer();
    value.lengthDelimited(5, nested.bytes);
    const entry = new Writer();
    entry.text(1, nestedKey);
    entry.lengthDelimited(2, value.bytes);
    out.lengthDelimited(1, entry.bytes);
  }
  const bytes = new Uint8Array(out.bytes.length);
  for (let i = 0; i < out.bytes.length; i++) bytes[i] = out.bytes[i];
  return bytes;
}

function stringEntry(key: string, value: string): u8[] {
  const text = new Writer();
  text.text(3, value);
  const entry = new Writer();
  entry.text(1, key);
  entry.lengthDelimited(2, text.bytes);
  return entry.bytes;
}

/** A cursor over protobuf bytes; `ok` turns false on anything malformed, and every read then returns nothing. */
class Reader {
  ok: bool = true;
  constructor(readonly bytes: Uint8Array, public at: i32, readonly end: i32) {}

  more(): bool { return this.ok && this.at < this.end; }

  varint(): u64 {
    let value: u64 = 0;
    let shift: u64 = 0;
    while (this.at < this.end && shift < 64) {
      const byte = this.bytes[this.at++];
      value |= <u64>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
      shift += 7;
    }
    this.ok = false;
    return 0;
  }

  /** Reads a length-delimited field's bounds into `sub`; false (and not ok) when it overruns. */
  sub(): Reader {
    const length = <i32>this.varint();
    const start = this.at;
    if (!this.ok || length < 0 || start + length > this.end) {
      this.ok = false;
      return new Reader(this.bytes, 0, 0);
    }
    this.at = start + length;
    return new Reader(this.bytes, start, start + length);
  }

  text(): string {
    return String.UTF8.decode(this.bytes.buffer.slice(this.bytes.byteOffset + this.at, this.bytes.byteOffset + this.end));
  }

  skip(wireType: u32): void {
    if (wireType == 0) this.varint();
    else if (wireType == 1) this.at += 8;
    else if (wireType == 2) this.sub();
    else if (wireType == 5) this.at += 4;
    else this.ok = false;
    if (this.at > this.end) this.ok = false;
  }
}

/** Calls `visit(key, value)` for each entry of a Struct whose value is a string or a Struct. The value reader spans
 * the string bytes (isStruct false) or the nested Struct (isStruct true). */
function eachField(struct: Reader, visit: (key: string, value: Reader, isStruct: bool, target: Peer) => void, target: Peer): bool {
  while (struct.more()) {
    const tag = <u32>struct.varint();
    if (tag >> 3 != 1 || (tag & 7) != 2) {
      struct.skip(tag & 7);
      continue;
    }
    const entry = struct.sub();
    let key = "";
    let value: Reader | null = null;
    let isStruct = false;
    while (entry.more()) {
      const entryTag = <u32>entry.varint();
      if (entryTag == 0x0a) key = entry.sub().text();
      else if (entryTag == 0x12) {
        const wrapped = entry.sub();
        while (wrapped.more()) {
          const valueTag = <u32>wrapped.varint();
          if (valueTag == 0x1a || valueTag == 0x2a) {
            value = wrapped.sub();
            isStruct = valueTag == 0x2a;
          } else wrapped.skip(valueTag & 7);
        }
        if (!wrapped.ok) return false;
      } else entry.skip(entryTag & 7);
    }
    if (!entry.ok) return false;
    if (value !== null) visit(key, value, isStruct, target);
  }
  return struct.ok;
}

function visitNode(key: string, value: Reader, isStruct: bool, peer: Peer): void {
  if (isStruct) {
    if (key == "LABELS") eachField(value, visitLabel, peer);
    return;
  }
  if (key == "NAMESPACE") peer.namespace = value.text();
  else if (key == "WORKLOAD_NAME") peer.workload = value.text();
  else if (key == "CLUSTER_ID") peer.cluster = value.text();
}

// Istio's canonical service and revision labels win over app and version, as in istio/proxy's
// extensions/common/metadata_object.cc.
function visitLabel(key: string, value: Reader, isStruct: bool, peer: Peer): void {
  if (isStruct) return;
  if (key == "service.istio.io/canonical-name") peer.app = value.text();
  else if (key == "service.istio.io/canonical-revision") peer.version = value.text();
  else if (key == "app" && peer.app == UNKNOWN) peer.app = value.text();
  else if (key == "version" && peer.version == UNKNOWN) peer.version = value.text();
}

/** The peer described by an `x-envoy-peer-metadata` header value; null when it is not a base64 Struct. */
export function decodePeerHeader(header: string): Peer | null {
  const bytes = base64Decode(header);
  if (bytes === null) return null;
  const peer = new Peer();
  return eachField(new Reader(bytes, 0, bytes.length), visitNode, peer) ? peer : null;
}

/** The peer named by istiod's endpoint metadata (envoy.config.core.v3.Metadata, as Envoy serializes the
 * `xds.upstream_host_metadata` property): filter_metadata["istio"].workload = "name;namespace;app;version;cluster". */
export function peerFromEndpointMetadata(bytes: Uint8Array): Peer | null {
  const metadata = new Reader(bytes, 0, bytes.length);
  while (metadata.more()) {
    const tag = <u32>metadata.varint();
    if (tag != 0x0a) {
      metadata.skip(tag & 7);
      continue;
    }
    // filter_metadata: map<string, Struct>, an entry { key = 1; value = 2 }.
    const entry = metadata.sub();
    let isIstio = false;
    while (entry.more()) {
      const entryTag = <u32>entry.varint();
      if (entryTag == 0x0a) isIstio = entry.sub().text() == "istio";
      else if (entryTag == 0x12 && isIstio) {
        const found = new Peer();
        eachField(entry.sub(), visitWorkload, found);
        return found.workload == UNKNOWN ? null : found;
      } else entry.skip(entryTag & 7);
    }
  }
  return null;
}

function visitWorkload(key: string, value: Reader, isStruct: bool, peer: Peer): void {
  if (isStruct || key != "workload") return;
  const parts = value.text().split(";");
  if (parts.length > 0 && parts[0].length > 0) peer.workload = parts[0];
  if (parts.length > 1 && parts[1].length > 0) peer.namespace = parts[1];
  if (parts.length > 2 && parts[2].length > 0) peer.app = parts[2];
  if (parts.length > 3 && parts[3].length > 0) peer.version = parts[3];
  if (parts.length > 4 && parts[4].length > 0) peer.cluster = parts[4];
}
