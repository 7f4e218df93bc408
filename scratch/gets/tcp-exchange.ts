// Istio's TCP metadata exchange frame (istio/proxy source/extensions/filters/network/metadata_exchange/
// metadata_exchange.cc, metadata_exchange_initial_header.h): each side puts, at the very start of what it sends on the
// connection, a header of two big-endian u32 (the magic 0x3D230467 and the payload's length) and then the payload (an
// Any of a Struct, peer.ts encodeExchange); each side takes the other's frame off the start of what it receives, so
// neither application sees it. A stream that does not start with the magic is passed on untouched, as Istio's
// filter does (state Invalid).
//
// Istio's filter holds incoming bytes (StopIteration) until the frame is complete; this one takes them out of the
// stream as they arrive instead, and puts them back in front of the next bytes if they turn out not to be a frame: the
// application sees the same bytes, and Envoy never has to keep data a Wasm filter stopped (see README.md).
import { Peer, peerFromExchange } from "./peer";

export const EXCHANGE_MAGIC: u32 = 0x3d230467;
const HEADER_SIZE = 8;
/** A bound on the payload a peer may announce; past it the stream is not taken for a frame. Istio's node metadata is
 * a few KiB. */
const MAX_PAYLOAD: u32 = 64 * 1024;

/** A frame: the header, then `payload`. */
export function exchangeFrame(payload: Uint8Array): ArrayBuffer {
  const frame = new Uint8Array(HEADER_SIZE + payload.length);
  store<u32>(frame.dataStart, bswap<u32>(EXCHANGE_MAGIC));
  store<u32>(frame.dataStart + 4, bswap<u32>(<u32>payload.length));
  frame.set(payload, HEADER_SIZE);
  return frame.buffer;
}

const EMPTY = new Uint8Array(0);

/** Reads the peer's frame off the start of one direction of a connection, chunk by chunk. */
export class FrameReader {
  /** Bytes taken out of the stream so far (a frame not yet complete). */
  private held: Uint8Array = EMPTY;
  /** True once the frame was read or the stream proved not to start with one: later bytes pass untouched. */
  done: bool = false;
  /** Whether the stream started with a frame (its payload may still not have described a peer). */
  found: bool = false;
  /** The peer the frame described. */
  peer: Peer | null = null;

  /** Takes the next chunk of the stream (`chunk` is the whole data buffer of this callback) and returns the bytes to
   * pass on in its place, or null to leave the buffer as it is. At end of stream an unfinished frame is given back. */
  take(chunk: Uint8Array, endOfStream: bool): ArrayBuffer | null {
    if (this.done) return null;
    let data = chunk;
    if (this.held.length > 0) {
      data = new Uint8Array(this.held.length + chunk.length);
      data.set(this.held);
      data.set(chunk, this.held.length);
    }
    // Not a frame: the stream's first bytes differ from the magic.
    const compared = min(data.length, 4);
    for (let i = 0; i < compared; i++) {
      if (data[i] != <u8>(EXCHANGE_MAGIC >> (<u32>(3 - i) * 8))) return this.giveBack(data);
    }
    if (data.length >= HEADER_SIZE) {
      const length = bswap<u32>(load<u32>(data.dataStart + 4));
      if (length > MAX_PAYLOAD) return this.giveBack(data);
      const end = HEADER_SIZE + <i32>length;
      if (data.length >= end) {
        this.done = true;
        this.found = true;
        this.held = EMPTY;
        this.peer = peerFromExchange(data.subarray(HEADER_SIZE, end));
        return data.slice(end).buffer;
      }
    }
    if (endOfStream) return this.giveBack(data);
    // A frame so far, not complete: keep its bytes out of the stream until it is.
    if (data === chunk) data = chunk.slice();
    this.held = data;
    return new ArrayBuffer(0);
  }

  /** The stream has no frame: what was held goes back in front of the chunk (null: the buffer is already right). */
  private giveBack(data: Uint8Array): ArrayBuffer | null {
    const changed = this.held.length > 0;
    this.done = true;
    this.held = EMPTY;
    return changed ? data.buffer : null;
  }
}
