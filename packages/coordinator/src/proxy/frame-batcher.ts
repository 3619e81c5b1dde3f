import type { ProxyLink } from './types.js';

/** Size of the buffers batches are written into; a batch never spans two, a larger frame gets one of its own. */
const ARENA_BYTES = 256 * 1024;

/**
 * Coalesces proxy-link frames into one link message per event-loop turn. The proxies send one small frame per
 * client event (INPUT on the primary, OUTPUT on the secondary); one transport message (one socket write) each
 * made the syscalls, not the proxy logic, the cost of the COLO client path (bench/pair.ts: ~40 % of the
 * primary's CPU in writev/writeBuffer). Frames keep their order; the proxy framing finds the boundaries on the
 * other side (a link message may carry any number of frames). The batch goes out at setImmediate, after the
 * poll phase has handed over every client socket that was ready, or at once when it reaches `maxBatchBytes`.
 *
 * Frames are written straight into the batch (reserve()): a batch is a slice of a shared arena, so a frame
 * costs no allocation of its own and the batch no concatenation. A slice handed to the link is never written
 * again (the link may still be sending it); the next batch starts after it, and a full arena is left to the
 * garbage collector once its batches are sent.
 */
export class FrameBatcher {
  readonly #link: ProxyLink;
  readonly #maxBatchBytes: number;
  #arena: Buffer = Buffer.allocUnsafeSlow(ARENA_BYTES);
  /** The batch being filled is arena[#start, #start + #length). */
  #start = 0;
  #length = 0;
  #scheduled: ReturnType<typeof setImmediate> | null = null;
  #discarded = false;
  /** Runs as a batch leaves and may reserve() one more frame for it (see the constructor). */
  readonly #beforeSend: (() => void) | undefined;
  #inBeforeSend = false;
  /** Link messages sent (for tests and measurements). */
  messages = 0;

  /**
   * `beforeSend`, if given, runs whenever a non-empty batch is about to leave and may reserve() and write frames
   * that end it (the primary's DELIVERED watermark: one per batch rather than one per event). Frames it adds
   * never make the batch leave early.
   */
  constructor(link: ProxyLink, maxBatchBytes = 256 * 1024, beforeSend?: () => void) {
    this.#link = link;
    this.#maxBatchBytes = maxBatchBytes;
    this.#beforeSend = beforeSend;
  }

  /** The buffer reserve() returns offsets into (valid until the next reserve() or push()). */
  get buffer(): Buffer {
    return this.#arena;
  }
  /** Bytes queued and not sent yet. */
  get queuedBytes(): number {
    return this.#length;
  }

  /**
   * Room for a frame of n bytes at the end of the batch: the caller writes it at buffer[at, at + n) before it
   * returns to the event loop (the batch leaves at setImmediate). A batch that would grow past maxBatchBytes is
   * sent first. After discard() the room is scratch space that is never sent.
   */
  reserve(n: number): number {
    if (this.#discarded) {
      if (this.#arena.length < n) this.#arena = Buffer.allocUnsafeSlow(n);
      return 0;
    }
    if (!this.#inBeforeSend && this.#length > 0 && this.#length + n > this.#maxBatchBytes) this.flush();
    const end = this.#start + this.#length;
    if (end + n > this.#arena.length) {
      // The batch moves to a new arena (the old one stays with the batches already sent).
      const next = Buffer.allocUnsafeSlow(Math.max(ARENA_BYTES, this.#length + n));
      if (this.#length > 0) this.#arena.copy(next, 0, this.#start, end);
      this.#arena = next;
      this.#start = 0;
    }
    const at = this.#start + this.#length;
    this.#length += n;
    if (!this.#inBeforeSend) this.#scheduled ??= setImmediate(() => this.flush());
    return at;
  }

  /** Gives back the room of the last reserve(), which returned `at` (its frame could not be written). */
  unreserve(at: number): void {
    if (!this.#discarded && at >= this.#start && at <= this.#start + this.#length) this.#length = at - this.#start;
  }

  /**
   * Queues one whole frame (or its head and, as `payload`, the bytes that end it); it leaves with the others of
   * this turn. Both are copied into the batch at once.
   */
  push(frame: Uint8Array, payload?: Uint8Array): void {
    const n = frame.byteLength + (payload?.byteLength ?? 0);
    const at = this.reserve(n);
    if (this.#discarded) return;
    this.#arena.set(frame, at);
    if (payload !== undefined && payload.byteLength > 0) this.#arena.set(payload, at + frame.byteLength);
    if (this.#length >= this.#maxBatchBytes) this.flush();
  }

  /** Sends what is queued now, as one link message. */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = null;
    if (this.#length === 0 || this.#discarded) return;
    if (this.#beforeSend && !this.#inBeforeSend) {
      this.#inBeforeSend = true;
      try {
        this.#beforeSend();
      } finally {
        this.#inBeforeSend = false;
      }
      if (this.#discarded || this.#length === 0) return;
    }
    const msg = this.#arena.subarray(this.#start, this.#start + this.#length);
    // The next batch starts 8-aligned after this one.
    this.#start = (this.#start + this.#length + 7) & ~7;
    this.#length = 0;
    this.messages++;
    // A failed send means the link is gone; the node learns that from the link itself.
    this.#link.send(msg).catch(() => {});
  }

  /** The link is gone: drop what is queued and ignore later frames. */
  discard(): void {
    this.#discarded = true;
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = null;
    this.#length = 0;
  }
}
