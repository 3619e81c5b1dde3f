import { ProxyError, ProxyErrorCode } from './errors.js';
import type { ConnectionId, InputEvent, InputKind } from './types.js';

export interface InputLogOptions {
  /** Hands one event to the guest. Called in seq order, only while the gate is open, never twice for a seq
   * unless a rewind undid it in the guest first. The guest processes it synchronously. */
  deliver: (event: InputEvent) => void;
  /**
   * Keep delivered events until a rewind (or the primary's watermark, forgetDelivered) passes them. The
   * secondary needs this: a checkpoint overwrites its guest with the primary's state as of seq N, undoing any
   * event after N it had already processed, so those events must be delivered again. The primary never rewinds
   * and keeps nothing it delivered.
   */
  retainDelivered?: boolean;
}

/**
 * The sequenced input queue in front of a guest, on both sides of the pair. Input never waits in the Domain's
 * own queue: the log delivers only while its gate is open (guest running, no checkpoint in progress), so
 * `lastDelivered` is exactly the last input seq the guest has processed. That number is what aligns the two
 * guests at a checkpoint (the primary's BARRIER{k, N}).
 */
export class InputLog {
  readonly #deliver: (event: InputEvent) => void;
  readonly #retain: boolean;
  /** Events kept, in seq order: [head, cursor) delivered and retained, [cursor, length) waiting. */
  #items: InputEvent[] = [];
  #head = 0;
  #cursor = 0;
  #open = false;
  #draining = false;
  #lastDelivered = 0;
  /** Events with seq <= floor are already reflected in the guest: appending them is a no-op. */
  #floor = 0;
  /** The seq the next append must carry; null while nothing fixes it yet (a fresh secondary). */
  #expect: number | null;
  #pendingBytes = 0;
  #dropped = 0;

  constructor(options: InputLogOptions & { firstSeq?: number | null }) {
    this.#deliver = options.deliver;
    this.#retain = options.retainDelivered ?? false;
    // A primary numbers its own events from 1; a secondary accepts whatever seq its primary is at.
    this.#expect = options.firstSeq === undefined ? 1 : options.firstSeq;
  }

  /** The last input seq the guest processed (0 before any). */
  get lastDelivered(): number {
    return this.#lastDelivered;
  }
  /** The highest seq appended (or skipped by a rewind), 0 before any. */
  get lastAppended(): number {
    return this.#expect === null ? this.#floor : this.#expect - 1;
  }
  get isOpen(): boolean {
    return this.#open;
  }
  /** Events waiting for delivery. */
  get pendingEvents(): number {
    return this.#items.length - this.#cursor;
  }
  /** Data bytes waiting for delivery (for input backpressure). */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }
  /** Delivered events kept for a possible rewind. */
  get retainedEvents(): number {
    return this.#cursor - this.#head;
  }
  /** Events appended with seq <= the floor (already part of the guest's state) and so never delivered. */
  get droppedEvents(): number {
    return this.#dropped;
  }

  /** Events appended and not yet delivered, in order (a primary mirrors these to a secondary that joins). */
  pending(): InputEvent[] {
    return this.#items.slice(this.#cursor);
  }

  /** Primary side: numbers a new client event and appends it. */
  appendNew(conn: ConnectionId, kind: InputKind, bytes?: Uint8Array): InputEvent {
    const seq = this.#expect ?? this.#floor + 1;
    const event: InputEvent = kind === 'data' ? { seq, conn, kind, bytes: bytes ?? new Uint8Array(0) } : { seq, conn, kind };
    this.append(event);
    return event;
  }

  /**
   * Appends an event of the total order. Seqs must follow one another without gap or duplicate; an event at or
   * below the floor (the guest's state already includes it) is dropped. Delivers at once if the gate is open.
   */
  append(event: InputEvent): void {
    if (event.seq <= this.#floor) {
      this.#dropped++;
      return;
    }
    if (this.#expect !== null && event.seq !== this.#expect) {
      throw new ProxyError(
        ProxyErrorCode.INPUT_OUT_OF_ORDER,
        `input seq ${event.seq} arrived where ${this.#expect} was expected: the proxy link lost or repeated input; resynchronise with a checkpoint`,
      );
    }
    this.#expect = event.seq + 1;
    this.#items.push(event);
    this.#pendingBytes += event.bytes?.byteLength ?? 0;
    this.#drain();
  }

  /** Opens the gate (guest running, no checkpoint in progress) and delivers what waits, in order. */
  open(): void {
    this.#open = true;
    this.#drain();
  }

  /** Closes the gate: from now on input waits here. Safe to call from inside a delivery. */
  close(): void {
    this.#open = false;
  }

  /**
   * The guest's state now reflects exactly the events up to `seq` (a checkpoint was applied): forget those,
   * and deliver from seq + 1 next, including events delivered before and undone by the checkpoint.
   * Only while the gate is closed.
   */
  rewindTo(seq: number): void {
    if (this.#open) {
      throw new ProxyError(ProxyErrorCode.INVALID_STATE, 'input can only be rewound while the gate is closed (guest suspended)');
    }
    if (seq < this.#floor) {
      throw new ProxyError(
        ProxyErrorCode.INVALID_STATE,
        `cannot rewind input to seq ${seq}: events up to ${this.#floor} are already forgotten (barriers must not go back)`,
      );
    }
    // Everything delivered and retained goes back to waiting, then the covered prefix is dropped.
    for (let i = this.#head; i < this.#cursor; i++) this.#pendingBytes += this.#items[i]!.bytes?.byteLength ?? 0;
    this.#cursor = this.#head;
    while (this.#cursor < this.#items.length && this.#items[this.#cursor]!.seq <= seq) {
      this.#pendingBytes -= this.#items[this.#cursor]!.bytes?.byteLength ?? 0;
      this.#cursor++;
    }
    this.#head = this.#cursor;
    const next = this.#items[this.#cursor];
    if (next !== undefined && next.seq !== seq + 1) {
      throw new ProxyError(
        ProxyErrorCode.INPUT_OUT_OF_ORDER,
        `after rewinding to seq ${seq} the next input held is ${next.seq}: events in between were never received`,
      );
    }
    if (this.#expect === null || this.#expect <= seq) this.#expect = seq + 1;
    this.#floor = seq;
    this.#lastDelivered = seq;
    this.#compact();
  }

  /**
   * The primary's guest has processed every event up to `seq` (its DELIVERED watermark), so no later barrier
   * can rewind below it: the delivered events up to `seq` need not be kept any longer. Without this a secondary
   * keeps every event it delivered until the next checkpoint, seconds of client input when outputs keep
   * matching. Events not yet delivered here are never forgotten; a later rewind below the forgotten ones is an
   * error (INVALID_STATE), as for any rewind below the floor.
   */
  forgetDelivered(seq: number): void {
    const items = this.#items;
    let head = this.#head;
    while (head < this.#cursor && items[head]!.seq <= seq) head++;
    if (head === this.#head) return;
    this.#floor = Math.max(this.#floor, items[head - 1]!.seq);
    this.#head = head;
    this.#compact();
  }

  #drain(): void {
    // Re-entrant calls (a delivery that makes the guest output, which makes the node close the gate or append
    // more) fall through: the loop below re-checks the gate and the length on every step.
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#open && this.#cursor < this.#items.length) {
        const event = this.#items[this.#cursor]!;
        this.#cursor++;
        this.#pendingBytes -= event.bytes?.byteLength ?? 0;
        this.#lastDelivered = event.seq;
        if (!this.#retain) this.#head = this.#cursor;
        this.#deliver(event);
      }
    } finally {
      this.#draining = false;
      this.#compact();
    }
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#cursor -= this.#head;
      this.#head = 0;
    } else if (this.#head === this.#items.length && this.#head > 0) {
      // Emptied (on the primary, after every delivery): reuse the array rather than make a new one.
      this.#items.length = 0;
      this.#cursor = 0;
      this.#head = 0;
    }
  }
}
