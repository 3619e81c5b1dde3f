import { DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_HELD_BYTES_PER_CONNECTION } from './comparator.js';
import type { ConnectionId, OutputBytes, ProxyCheckpointReason } from './types.js';

export interface RemusOutputBufferOptions {
  /** The checkpoint that will cover output pushed now (the next one to start). Default 1. */
  openEpoch?: number;
  /** Output held per connection before asking for a checkpoint ('output_bound'). Default 1 MiB. */
  maxHeldPerConnection?: number;
  /** Output held over all connections before asking for a checkpoint. Default 16 MiB. */
  maxHeldTotal?: number;
  release: (conn: ConnectionId, bytes: OutputBytes) => void;
  /** At most once per open epoch. */
  checkpointNeeded: (reason: ProxyCheckpointReason) => void;
}

interface Held {
  epoch: number;
  conn: ConnectionId;
  bytes: OutputBytes;
}

export type RemusBufferState = 'holding' | 'passthrough';

/**
 * Remus output rule on the primary: output produced during an epoch is released only once the secondary
 * acknowledges that it holds the complete checkpoint covering that epoch. Output carries the number of the
 * next checkpoint to start; onCheckpointStarted(k) closes epoch k, so later output waits for k + 1.
 * Pure: no timers, no sockets.
 */
export class RemusOutputBuffer {
  readonly #maxPerConn: number;
  readonly #maxTotal: number;
  readonly #release: (conn: ConnectionId, bytes: OutputBytes) => void;
  readonly #checkpointNeeded: (reason: ProxyCheckpointReason) => void;
  #state: RemusBufferState = 'holding';
  #openEpoch: number;
  #acked = 0;
  /** In push order, hence in epoch order. */
  #queue: Held[] = [];
  #head = 0;
  #heldBytes = 0;
  #perConn = new Map<ConnectionId, number>();
  #requestedForEpoch = -1;
  readonly counters = { outputBound: 0, releasedBytes: 0 };

  constructor(options: RemusOutputBufferOptions) {
    this.#openEpoch = options.openEpoch ?? 1;
    this.#maxPerConn = options.maxHeldPerConnection ?? DEFAULT_MAX_HELD_BYTES_PER_CONNECTION;
    this.#maxTotal = options.maxHeldTotal ?? DEFAULT_MAX_HELD_BYTES;
    this.#release = options.release;
    this.#checkpointNeeded = options.checkpointNeeded;
  }

  get state(): RemusBufferState {
    return this.#state;
  }
  /** The checkpoint that will cover output pushed now. */
  get openEpoch(): number {
    return this.#openEpoch;
  }
  get heldBytes(): number {
    return this.#heldBytes;
  }
  get heldItems(): number {
    return this.#queue.length - this.#head;
  }

  push(conn: ConnectionId, bytes: OutputBytes): void {
    if (this.#state === 'passthrough') {
      this.#emit(conn, bytes);
      return;
    }
    if (bytes !== null && bytes.byteLength === 0) return;
    this.#queue.push({ epoch: this.#openEpoch, conn, bytes });
    const n = bytes?.byteLength ?? 0;
    this.#heldBytes += n;
    const perConn = (this.#perConn.get(conn) ?? 0) + n;
    this.#perConn.set(conn, perConn);
    if ((perConn > this.#maxPerConn || this.#heldBytes > this.#maxTotal) && this.#requestedForEpoch !== this.#openEpoch) {
      // Keep holding: a checkpoint (and its acknowledgement) is the only way to release safely.
      this.#requestedForEpoch = this.#openEpoch;
      this.counters.outputBound++;
      this.#checkpointNeeded('output_bound');
    }
  }

  /** Checkpoint k started (guest suspended): output from now on belongs to checkpoint k + 1. */
  onCheckpointStarted(k: number): void {
    this.#openEpoch = Math.max(this.#openEpoch, k + 1);
  }

  /** The secondary acknowledged that it holds checkpoint k completely: release output of epochs <= k, in order. */
  ack(k: number): void {
    this.#acked = Math.max(this.#acked, k);
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.epoch <= this.#acked) {
      this.#releaseHead();
    }
    this.#compact();
  }

  /** The secondary is gone: release everything held and let output through unprotected. */
  onSecondaryLost(): void {
    while (this.#head < this.#queue.length) this.#releaseHead();
    this.#compact();
    this.#state = 'passthrough';
  }

  #releaseHead(): void {
    const h = this.#queue[this.#head]!;
    this.#queue[this.#head] = undefined as unknown as Held; // let the bytes be collected
    this.#head++;
    const n = h.bytes?.byteLength ?? 0;
    this.#heldBytes -= n;
    const left = (this.#perConn.get(h.conn) ?? 0) - n;
    if (left <= 0) this.#perConn.delete(h.conn);
    else this.#perConn.set(h.conn, left);
    this.#emit(h.conn, h.bytes);
  }

  #compact(): void {
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #emit(conn: ConnectionId, bytes: OutputBytes): void {
    this.counters.releasedBytes += bytes?.byteLength ?? 0;
    this.#release(conn, bytes);
  }
}
