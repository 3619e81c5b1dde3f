import type { ProxyLink } from './types.js';

/**
 * Coalesces proxy-link frames into one link message per event-loop turn. The proxies send one small frame per
 * client event (INPUT on the primary, OUTPUT on the secondary); one transport message (one socket write) each
 * made the syscalls, not the proxy logic, the cost of the COLO client path (bench/pair.ts: ~40 % of the
 * primary's CPU in writev/writeBuffer). Frames keep their order; the proxy framing finds the boundaries on the
 * other side (a link message may carry any number of frames). The batch goes out at setImmediate, after the
 * poll phase has handed over every client socket that was ready, or at once when it reaches `maxBatchBytes`.
 */
export class FrameBatcher {
  readonly #link: ProxyLink;
  readonly #maxBatchBytes: number;
  #frames: Uint8Array[] = [];
  #bytes = 0;
  #scheduled: ReturnType<typeof setImmediate> | null = null;
  #discarded = false;

  constructor(link: ProxyLink, maxBatchBytes = 256 * 1024) {
    this.#link = link;
    this.#maxBatchBytes = maxBatchBytes;
  }

  /**
   * Queues one frame (or its head and, as `payload`, the bytes that end it: the payload is then copied once, into
   * the batch, instead of into a frame of its own first); it leaves with the others of this turn. The payload
   * must not change until the batch is sent (client chunks and guest output are never reused).
   */
  push(frame: Uint8Array, payload?: Uint8Array): void {
    if (this.#discarded) return;
    this.#frames.push(frame);
    this.#bytes += frame.byteLength;
    if (payload !== undefined && payload.byteLength > 0) {
      this.#frames.push(payload);
      this.#bytes += payload.byteLength;
    }
    if (this.#bytes >= this.#maxBatchBytes) this.flush();
    else this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Sends what is queued now, as one link message. */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = null;
    if (this.#frames.length === 0 || this.#discarded) return;
    const msg = this.#frames.length === 1 ? this.#frames[0]! : Buffer.concat(this.#frames, this.#bytes);
    this.#frames = [];
    this.#bytes = 0;
    // A failed send means the link is gone; the node learns that from the link itself.
    this.#link.send(msg).catch(() => {});
  }

  /** The link is gone: drop what is queued and ignore later frames. */
  discard(): void {
    this.#discarded = true;
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = null;
    this.#frames = [];
    this.#bytes = 0;
  }
}
