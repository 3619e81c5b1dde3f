import { connect, type NetConnectOpts, type Socket } from 'node:net';

/** Default size of a dialer's read ring: a few records of the stream (1 MiB each) plus what a paused link holds. */
export const DEFAULT_READ_RING_BYTES = 16 * 1024 * 1024;
/** The most one socket read may take into the ring. */
export const READ_REGION_BYTES = 1024 * 1024;
/** Size of a read that cannot go into the ring (its memory still held): what Node reads into by default. */
const FALLBACK_READ_BYTES = 64 * 1024;

/** Who reads the ring's bytes (the link's FramedSocket): it parses `view` at once and says how far it got. */
export interface ReadRingConsumer {
  /** Parses one read. `view` is reused memory: only the views `retainedPayload()` accounts for may be kept. */
  deliver(view: Buffer): void;
  /** Whether what the next read holds is copied out rather than kept as views (the upgrade, the handshake). */
  copies(): boolean;
  /** Payload bytes delivered so far (a running total that only grows). */
  deliveredPayload(): number;
  /** How many of the most recently delivered payload bytes may still be referenced as views. */
  retainedPayload(): number;
}

export interface ReadRingStats {
  /** Reads handed to the consumer from the ring, without a copy. */
  ringReads: number;
  /** Reads that went into fresh memory because the ring's next region was still referenced. */
  fallbackReads: number;
  /** Reads whose bytes the consumer copied out (the HTTP upgrade and the link's handshake): their memory is free at once. */
  copiedReads: number;
}

/** One read taken into the ring and delivered as views: where it lies, and the payload total after it. */
interface RingRead {
  start: number;
  end: number;
  payloadEnd: number;
}

/**
 * Reused memory for a dialer's socket reads. Node reads a socket into a fresh 64 KiB buffer per read; on the
 * secondary that is the whole replication stream, and V8 starts a young-generation collection for every
 * 16-32 MiB of such buffers (`external memory pressure`): one every few checkpoints of 1,000 pages, ten or more
 * in one of 50,000, each 1-4 ms on this project's test machines, inside the pause. Reads into the ring allocate
 * nothing.
 *
 * The bytes of a read are overwritten when the ring comes round to them again, so a region is reused only once
 * nothing can still see it: the consumer keeps views only of its most recent `retainedPayload()` bytes (a record
 * not yet complete, frames held while receiving is paused), and every read into the ring remembers the payload
 * total after it. A region that some remembered read still covers and is not yet free gets fresh memory
 * instead (counted in `fallbackReads`): a slow or paused consumer costs an allocation, never a corrupt byte.
 */
export class ReadRing {
  readonly #bytes: Buffer;
  /** Where the next region starts. */
  #at = 0;
  /** Reads delivered from the ring whose bytes may still be referenced, oldest first. */
  readonly #live: RingRead[] = [];
  #head = 0;
  #consumer: ReadRingConsumer | undefined;
  /** Reads that came before there was a consumer, copied. */
  readonly #early: Buffer[] = [];
  readonly stats: ReadRingStats = { ringReads: 0, fallbackReads: 0, copiedReads: 0 };

  constructor(bytes = DEFAULT_READ_RING_BYTES) {
    if (!Number.isInteger(bytes) || bytes < READ_REGION_BYTES) throw new RangeError(`a read ring needs at least ${READ_REGION_BYTES} bytes, got ${bytes}`);
    this.#bytes = Buffer.allocUnsafeSlow(bytes);
  }

  get consumer(): ReadRingConsumer | undefined {
    return this.#consumer;
  }

  /** The consumer gets what was read before it came first. */
  set consumer(consumer: ReadRingConsumer | undefined) {
    this.#consumer = consumer;
    while (consumer && this.#consumer === consumer && this.#early.length > 0) consumer.deliver(this.#early.shift()!);
  }

  /** Whether `view` lies in the ring's memory (and so will be overwritten). */
  owns(view: Uint8Array): boolean {
    return view.buffer === this.#bytes.buffer;
  }

  /** The memory the next socket read goes into (Node's onread.buffer). */
  region(): Buffer {
    this.#forgetFreed();
    if (this.#at + READ_REGION_BYTES > this.#bytes.length) this.#at = 0;
    const start = this.#at;
    const end = start + READ_REGION_BYTES;
    for (let i = this.#head; i < this.#live.length; i++) {
      const r = this.#live[i]!;
      if (r.start < end && r.end > start) return Buffer.allocUnsafeSlow(FALLBACK_READ_BYTES);
    }
    return this.#bytes.subarray(start, end);
  }

  /** Node's onread.callback: `into` (what region() returned) holds `n` new bytes, for the consumer as a view. */
  read(into: Buffer, n: number): void {
    const inRing = into.buffer === this.#bytes.buffer;
    if (inRing) this.#at = into.byteOffset - this.#bytes.byteOffset + ((n + 7) & ~7);
    const view = into.subarray(0, n);
    const consumer = this.#consumer;
    if (!consumer) {
      this.#early.push(Buffer.from(view));
      this.stats.copiedReads++;
      return;
    }
    if (consumer.copies()) {
      consumer.deliver(view);
      this.stats.copiedReads++;
      return;
    }
    consumer.deliver(view);
    if (inRing) {
      const start = into.byteOffset - this.#bytes.byteOffset;
      this.#live.push({ start, end: start + n, payloadEnd: consumer.deliveredPayload() });
      this.stats.ringReads++;
    } else this.stats.fallbackReads++;
  }

  /** Drops the remembered reads nothing can see any more (oldest first: their payload totals only grow). */
  #forgetFreed(): void {
    const c = this.#consumer;
    if (!c) return;
    const freeUpTo = c.deliveredPayload() - c.retainedPayload();
    while (this.#head < this.#live.length && this.#live[this.#head]!.payloadEnd <= freeUpTo) this.#head++;
    if (this.#head > 1024 || this.#head === this.#live.length) {
      this.#live.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

/** A plain TCP connection whose reads go into `ring` (see ReadRing). */
export function connectWithReadRing(options: NetConnectOpts, ring: ReadRing): Socket {
  const socket: Socket = connect({
    ...options,
    onread: {
      buffer: () => ring.region(),
      // true: the socket reads on (its pause() is the only brake, see WsPeerLink's receive-side backpressure).
      callback: (n: number, into: Uint8Array) => {
        ring.read(into as Buffer, n);
        return true;
      },
    },
  });
  return socket;
}
