// How many responses the server writes at once, across all streams: istiod's PILOT_PUSH_THROTTLE (100 concurrent
// pushes; pilot/pkg/features). When a thousand proxies connect or change together, each response (a gateway of a
// large mesh: a thousand clusters, a thousand endpoint sets) is a buffer of its own until the proxy has read it;
// written all at once they would sit in memory together (gigabytes). A response takes a slot from when it is
// written until gRPC has handed it to the connection, so at most `limit` are buffered; a stream that finds no slot
// free is pumped again, in turn, when one frees.

/** A stream that can be told to try again. */
export interface Pumped {
  pump(): void;
}

export class PushThrottle {
  private writing = 0;
  /** Streams that found no slot free, in the order they asked (a Set iterates in insertion order). */
  private readonly waiting = new Set<Pumped>();

  /**
   * @param limit responses written at once
   * @param stuckMs a response whose proxy has not read it after this long gives its slot back (the proxy keeps the
   *   buffer): a few proxies that stop reading never hold back everyone else's pushes
   */
  constructor(
    readonly limit = 100,
    private readonly stuckMs = 5_000,
  ) {}

  /** A slot for one response, with the function that frees it (once; later calls do nothing), or undefined: then
   * `stream` is pumped again when a slot frees. */
  acquire(stream: Pumped): (() => void) | undefined {
    if (this.writing >= this.limit) {
      this.waiting.add(stream);
      return undefined;
    }
    this.writing++;
    let freed = false;
    const free = () => {
      if (freed) return;
      freed = true;
      clearTimeout(timer);
      this.writing--;
      this.wake();
    };
    const timer = setTimeout(free, this.stuckMs);
    timer.unref();
    return free;
  }

  /** A closed stream no longer waits. */
  forget(stream: Pumped): void {
    this.waiting.delete(stream);
  }

  private wake(): void {
    for (const stream of this.waiting) {
      if (this.writing >= this.limit) return;
      this.waiting.delete(stream);
      stream.pump();
    }
  }
}
