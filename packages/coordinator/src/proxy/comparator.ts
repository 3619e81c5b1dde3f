import { NODE_DEFAULTS } from '../defaults.js';
import type { CompareResults } from './metrics.js';
import type { ConnectionId, OutputBytes, ProxyCheckpointReason } from './types.js';

/** Held output bounds' defaults, per connection and in total (the Remus buffer and the primary proxy use them too). */
export const DEFAULT_MAX_HELD_BYTES_PER_CONNECTION = NODE_DEFAULTS.output.maxHeldPerConnection;
export const DEFAULT_MAX_HELD_BYTES = NODE_DEFAULTS.output.maxHeldTotal;
export const DEFAULT_COMPARE_TIMEOUT_MS = NODE_DEFAULTS.checkpoint.compareTimeoutMs;

export interface OutputComparatorOptions {
  /** Output waiting longer than this for its twin asks for a checkpoint ('stale'). Default NODE_DEFAULTS.checkpoint. */
  compareTimeoutMs?: number;
  /** Unmatched output held per connection, per side, before asking for a checkpoint ('output_bound'). Default NODE_DEFAULTS.output. */
  maxHeldPerConnection?: number;
  /** Unmatched output held over all connections, per side, before asking for a checkpoint. Default NODE_DEFAULTS.output. */
  maxHeldTotal?: number;
  /** Where match, miscompare and stale are counted (the node's totals, over every comparator). Default: its own. */
  results?: CompareResults;
  /** The generation comparison starts in: the number of the last checkpoint both guests share (0 = none). */
  generation?: number;
  /** Clock for the age of held output (ms). Default Date.now. */
  now?: () => number;
  /** Output that may reach the client: bytes, or null when the guest closed the connection. In order per connection. */
  release: (conn: ConnectionId, bytes: OutputBytes) => void;
  /** The guests diverged or output waits too long: the node should checkpoint. At most once per generation. */
  checkpointNeeded: (reason: ProxyCheckpointReason) => void;
}

/** What this comparator counts for itself (its results go to `results`). */
export interface ComparatorCounters {
  /** Generations in which held output passed a bound. */
  outputBound: number;
  /** Secondary output of an older generation, ignored (its guest state was overwritten by a checkpoint). */
  oldGenerationIgnored: number;
  releasedBytes: number;
}

/** One guest's unmatched output on one connection: a queue of chunks, the first partly consumed. */
interface Side {
  items: { bytes: OutputBytes; at: number }[];
  /** Bytes of items[0] already matched and released. */
  offset: number;
  bytes: number;
}

interface Connection {
  primary: Side;
  secondary: Side;
  /** The client closed: release a close once the primary's held output of this connection is out. */
  closeWhenReleased: boolean;
}

export type ComparatorState = 'comparing' | 'diverged' | 'passthrough';

/**
 * COLO output comparison on the primary. Per connection, the primary's and the secondary's output are byte
 * streams; the longest common prefix is released at once (both guests produced it, so whichever survives a
 * failover is consistent with what the client saw). Anything else is held: nothing unmatched ever reaches a
 * client while a secondary is attached. A difference stops comparison until the next checkpoint makes the
 * secondary identical again; the checkpoint backs the primary's held output, which is then released.
 * Pure: no timers, no sockets; time enters through the injected clock and tick().
 */
export class OutputComparator {
  readonly #timeoutMs: number;
  readonly #maxPerConn: number;
  readonly #maxTotal: number;
  readonly #now: () => number;
  readonly #release: (conn: ConnectionId, bytes: OutputBytes) => void;
  readonly #checkpointNeeded: (reason: ProxyCheckpointReason) => void;
  #state: ComparatorState = 'comparing';
  #generation: number;
  #requested = false;
  #staleSeen = false;
  #boundSeen = false;
  #conns = new Map<ConnectionId, Connection>();
  /** Records of forgotten connections, empty (no items, offsets 0, not closing), for reuse. */
  readonly #spare: Connection[] = [];
  /** Secondary output already tagged with a generation the primary has not completed yet. */
  #future: { generation: number; conn: ConnectionId; bytes: OutputBytes; at: number }[] = [];
  #heldPrimary = 0;
  #heldSecondary = 0;
  readonly results: CompareResults;
  readonly counters: ComparatorCounters = {
    outputBound: 0,
    oldGenerationIgnored: 0,
    releasedBytes: 0,
  };

  constructor(options: OutputComparatorOptions) {
    this.#timeoutMs = options.compareTimeoutMs ?? DEFAULT_COMPARE_TIMEOUT_MS;
    this.#maxPerConn = options.maxHeldPerConnection ?? DEFAULT_MAX_HELD_BYTES_PER_CONNECTION;
    this.#maxTotal = options.maxHeldTotal ?? DEFAULT_MAX_HELD_BYTES;
    this.#generation = options.generation ?? 0;
    this.#now = options.now ?? Date.now;
    this.#release = options.release;
    this.#checkpointNeeded = options.checkpointNeeded;
    this.results = options.results ?? { match: 0, miscompare: 0, stale: 0 };
  }

  get state(): ComparatorState {
    return this.#state;
  }
  get generation(): number {
    return this.#generation;
  }
  /** Primary output held back (unmatched), over all connections. */
  get heldBytes(): number {
    return this.#heldPrimary;
  }
  /** Secondary output waiting for its primary twin. */
  get secondaryPendingBytes(): number {
    return this.#heldSecondary;
  }

  /** Output of the primary's guest. */
  pushPrimary(conn: ConnectionId, bytes: OutputBytes): void {
    if (this.#state === 'passthrough') {
      this.#emit(conn, bytes);
      return;
    }
    const c = this.#conn(conn);
    this.#enqueue(c.primary, bytes);
    this.#heldPrimary += bytes?.byteLength ?? 0;
    if (this.#state === 'comparing') this.#match(conn, c);
    this.#checkBounds(c);
  }

  /** Output of the secondary's guest, tagged with the number of checkpoints it had applied when it produced it. */
  pushSecondary(generation: number, conn: ConnectionId, bytes: OutputBytes): void {
    if (this.#state === 'passthrough') return;
    if (generation < this.#generation) {
      this.counters.oldGenerationIgnored++;
      return;
    }
    if (generation > this.#generation) {
      // The secondary resumed from a checkpoint before the primary saw it complete: keep it for then.
      this.#future.push({ generation, conn, bytes, at: this.#now() });
      this.#heldSecondary += bytes?.byteLength ?? 0;
      return;
    }
    if (this.#state === 'diverged') return; // discarded at the checkpoint anyway
    // The usual case (one request in flight): the primary's reply waits alone, the secondary's twin arrives
    // whole. Compare and release it as it is, without queueing the twin.
    if (bytes !== null && bytes.byteLength > 0) {
      const c = this.#conns.get(conn);
      if (c !== undefined && c.secondary.items.length === 0 && c.primary.offset === 0 && c.primary.items.length > 0) {
        const pb = c.primary.items[0]!.bytes;
        if (pb !== null && pb.byteLength === bytes.byteLength && equalBytes(pb, bytes)) {
          const n = pb.byteLength;
          c.primary.items.shift();
          c.primary.bytes -= n;
          this.#heldPrimary -= n;
          this.results.match++;
          this.#emit(conn, pb);
          this.#settled(conn, c);
          return;
        }
      }
    }
    const c = this.#conn(conn);
    this.#enqueue(c.secondary, bytes);
    this.#heldSecondary += bytes?.byteLength ?? 0;
    this.#match(conn, c);
    this.#checkBounds(c);
  }

  /**
   * Checkpoint `generation` completed: the secondary now holds the primary's state, which backs all output the
   * primary produced so far. Releases it, discards the secondary's unmatched output (produced from a state the
   * checkpoint overwrote), and restarts comparison aligned.
   */
  onCheckpointComplete(generation: number): void {
    this.#releaseAllPrimary();
    this.#conns.clear();
    this.#heldSecondary = 0;
    this.#generation = Math.max(this.#generation, generation);
    this.#requested = false;
    this.#staleSeen = false;
    this.#boundSeen = false;
    if (this.#state === 'passthrough') {
      this.#future = [];
      return;
    }
    this.#state = 'comparing';
    const future = this.#future;
    this.#future = [];
    for (const f of future) {
      if (f.generation < this.#generation) continue;
      if (f.generation > this.#generation) {
        this.#future.push(f);
        this.#heldSecondary += f.bytes?.byteLength ?? 0;
        continue;
      }
      const c = this.#conn(f.conn);
      c.secondary.items.push({ bytes: f.bytes, at: f.at });
      c.secondary.bytes += f.bytes?.byteLength ?? 0;
      this.#heldSecondary += f.bytes?.byteLength ?? 0;
    }
  }

  /**
   * The client closed the connection and the guest has processed that: the guest will send nothing more on it,
   * so the client's socket can be ended once everything held for it is released. Not compared: it is the
   * client's event, not the guests' output, and both guests saw it at the same place in the input order.
   */
  closeLocally(conn: ConnectionId): void {
    const c = this.#conns.get(conn);
    if (this.#state === 'passthrough' || c === undefined || c.primary.items.length === 0) {
      this.#emit(conn, null);
      return;
    }
    c.closeWhenReleased = true;
  }

  /** The secondary is gone: release everything held and let output through unprotected from now on. */
  onSecondaryLost(): void {
    this.#releaseAllPrimary();
    this.#conns.clear();
    this.#future = [];
    this.#heldSecondary = 0;
    this.#state = 'passthrough';
  }

  /** Stale detection: output that has waited compareTimeoutMs for its twin asks for a checkpoint. */
  tick(now: number = this.#now()): void {
    if (this.#state !== 'comparing' || this.#staleSeen) return;
    for (const c of this.#conns.values()) {
      const oldest = Math.min(c.primary.items[0]?.at ?? Infinity, c.secondary.items[0]?.at ?? Infinity);
      if (now - oldest >= this.#timeoutMs) {
        this.#staleSeen = true;
        this.results.stale++;
        this.#request('stale');
        return;
      }
    }
  }

  #conn(conn: ConnectionId): Connection {
    let c = this.#conns.get(conn);
    if (c === undefined) {
      c = this.#spare.pop() ?? { primary: { items: [], offset: 0, bytes: 0 }, secondary: { items: [], offset: 0, bytes: 0 }, closeWhenReleased: false };
      this.#conns.set(conn, c);
    }
    return c;
  }

  #enqueue(side: Side, bytes: OutputBytes): void {
    if (bytes !== null && bytes.byteLength === 0) return;
    side.items.push({ bytes, at: this.#now() });
    side.bytes += bytes?.byteLength ?? 0;
  }

  /** Releases the common prefix of both streams; a difference marks the pair diverged. */
  #match(conn: ConnectionId, c: Connection): void {
    const p = c.primary;
    const s = c.secondary;
    while (p.items.length > 0 && s.items.length > 0) {
      const pb = p.items[0]!.bytes;
      const sb = s.items[0]!.bytes;
      if (pb === null || sb === null) {
        if (pb === null && sb === null) {
          p.items.shift();
          s.items.shift();
          this.results.match++;
          this.#emit(conn, null);
          continue;
        }
        this.#diverge();
        return;
      }
      const n = Math.min(pb.byteLength - p.offset, sb.byteLength - s.offset);
      const pv = pb.subarray(p.offset, p.offset + n);
      if (!equalBytes(pv, sb.subarray(s.offset, s.offset + n))) {
        this.#diverge();
        return;
      }
      this.#consume(p, n);
      this.#consume(s, n);
      this.#heldPrimary -= n;
      this.#heldSecondary -= n;
      this.results.match++;
      this.#emit(conn, pv);
    }
    this.#settled(conn, c);
  }

  /** After a match: end a closed client whose output is all out; forget a connection with nothing held. */
  #settled(conn: ConnectionId, c: Connection): void {
    if (c.primary.items.length > 0) return;
    if (c.closeWhenReleased) {
      c.closeWhenReleased = false;
      this.#emit(conn, null);
    }
    if (c.secondary.items.length === 0 && this.#conns.get(conn) === c) {
      this.#conns.delete(conn);
      // Its (empty) record serves the next connection that needs one: one per reply would be garbage.
      if (this.#spare.length < 256) this.#spare.push(c);
    }
  }

  #consume(side: Side, n: number): void {
    side.offset += n;
    side.bytes -= n;
    if (side.offset === side.items[0]!.bytes!.byteLength) {
      side.items.shift();
      side.offset = 0;
    }
  }

  #diverge(): void {
    this.#state = 'diverged';
    this.results.miscompare++;
    // The secondary's output no longer matters: the checkpoint will overwrite the state it came from.
    for (const c of this.#conns.values()) c.secondary = { items: [], offset: 0, bytes: 0 };
    this.#heldSecondary = 0;
    for (const f of this.#future) this.#heldSecondary += f.bytes?.byteLength ?? 0;
    this.#request('miscompare');
  }

  #checkBounds(c: Connection): void {
    if (this.#boundSeen) return;
    const over =
      c.primary.bytes > this.#maxPerConn ||
      c.secondary.bytes > this.#maxPerConn ||
      this.#heldPrimary > this.#maxTotal ||
      this.#heldSecondary > this.#maxTotal;
    if (!over) return;
    // Keep holding: dropping would lose output, releasing would show the client unmatched output.
    this.#boundSeen = true;
    this.counters.outputBound++;
    this.#request('output_bound');
  }

  #request(reason: ProxyCheckpointReason): void {
    if (this.#requested) return;
    this.#requested = true;
    this.#checkpointNeeded(reason);
  }

  #releaseAllPrimary(): void {
    for (const [conn, c] of this.#conns) {
      const p = c.primary;
      for (let i = 0; i < p.items.length; i++) {
        const b = p.items[i]!.bytes;
        this.#emit(conn, b === null ? null : i === 0 ? b.subarray(p.offset) : b);
      }
      p.items = [];
      p.offset = 0;
      p.bytes = 0;
      if (c.closeWhenReleased) {
        c.closeWhenReleased = false;
        this.#emit(conn, null);
      }
    }
    this.#heldPrimary = 0;
  }

  #emit(conn: ConnectionId, bytes: OutputBytes): void {
    this.counters.releasedBytes += bytes?.byteLength ?? 0;
    this.#release(conn, bytes);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}
