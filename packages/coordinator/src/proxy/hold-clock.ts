import type { ConnectionId } from './types.js';

/**
 * How long a primary's output waits between the guest writing it and the client getting it: the latency the
 * output rule adds to a reply (comparison with the secondary's twin, a checkpoint's acknowledgement, the
 * arbiter's decision). The proxy releases each connection's output as a byte stream in the order the guest wrote
 * it, possibly cut differently (the comparator releases matched prefixes), so the clock counts bytes: a piece of
 * output has left once the bytes released on its connection reach its end.
 */
export class HoldClock {
  readonly #observe: (seconds: number) => void;
  readonly #now: () => number;
  /** Per connection: written-byte offsets where pieces end, their write times, and the bytes released so far. */
  readonly #conns = new Map<ConnectionId, { ends: number[]; at: number[]; head: number; written: number; released: number }>();

  /** `observe` gets each piece's wait in seconds; `now` is in milliseconds (performance.now by default). */
  constructor(observe: (seconds: number) => void, now: () => number = () => performance.now()) {
    this.#observe = observe;
    this.#now = now;
  }

  /** The guest wrote `bytes` bytes on `conn`. */
  written(conn: ConnectionId, bytes: number): void {
    if (bytes === 0) return;
    let c = this.#conns.get(conn);
    if (c === undefined) {
      c = { ends: [], at: [], head: 0, written: 0, released: 0 };
      this.#conns.set(conn, c);
    }
    c.written += bytes;
    c.ends.push(c.written);
    c.at.push(this.#now());
  }

  /** `bytes` bytes of `conn` went to the client: every piece they complete is observed. */
  released(conn: ConnectionId, bytes: number): void {
    const c = this.#conns.get(conn);
    if (c === undefined) return;
    c.released += bytes;
    const now = this.#now();
    while (c.head < c.ends.length && c.ends[c.head]! <= c.released) {
      this.#observe((now - c.at[c.head]!) / 1000);
      c.head++;
    }
    // Drop what was observed now and then, not at every release (a shift per piece would be quadratic).
    if (c.head === c.ends.length) {
      c.ends.length = 0;
      c.at.length = 0;
      c.head = 0;
    } else if (c.head > 1024) {
      c.ends.splice(0, c.head);
      c.at.splice(0, c.head);
      c.head = 0;
    }
  }

  /** The connection ended: what it still holds never reaches a client and is not observed. */
  ended(conn: ConnectionId): void {
    this.#conns.delete(conn);
  }
}
