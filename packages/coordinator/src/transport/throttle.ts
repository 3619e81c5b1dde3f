/** What a throttle lets go at once: 64 KiB, a few packets' worth (a wire does not save up idle time). */
export const THROTTLE_BURST_BYTES = 64 * 1024;

/**
 * A bandwidth limit on one direction of a link (replication.max_bandwidth, as QEMU's max-bandwidth): bytes
 * leave at no more than `bytesPerSecond`: over any stretch of time, at most that rate's worth plus two bursts
 * (`burstBytes` each: one saved up before the stretch, one taken ahead at its end). The burst is small on
 * purpose: a checkpoint of 440 KiB takes 3.5 ms at 1 Gbit/s on a real wire however long the link was idle, and so
 * it does here. take(n) resolves when n more bytes may go; callers send in order, one take per send. Time is the
 * only input: the limit shapes throughput and never decides anything about safety.
 */
export class Throttle {
  readonly bytesPerSecond: number;
  private readonly burstMs: number;
  /** When the bytes taken so far have left at exactly the limit (performance.now() ms). */
  private readyAt = 0;

  constructor(bytesPerSecond: number, burstBytes = THROTTLE_BURST_BYTES) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`a bandwidth limit of ${bytesPerSecond} bytes/s: must be positive`);
    this.bytesPerSecond = bytesPerSecond;
    this.burstMs = (burstBytes * 1000) / bytesPerSecond;
  }
  /** Resolves once `bytes` more may be sent without exceeding the limit (at once while under it). */
  take(bytes: number): Promise<void> {
    const now = performance.now();
    // Time not used by earlier sends is not saved up beyond the burst: an idle link does not earn a flood.
    this.readyAt = Math.max(this.readyAt, now - this.burstMs) + (bytes * 1000) / this.bytesPerSecond;
    const wait = this.readyAt - this.burstMs - now;
    // Whole milliseconds, rounded up: timers cut a fraction off, and the limit must hold, not nearly hold.
    return wait > 0 ? new Promise((r) => setTimeout(r, Math.ceil(wait))) : Promise.resolve();
  }
}
