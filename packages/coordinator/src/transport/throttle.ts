/**
 * A bandwidth limit on one direction of a link (replication.max_bandwidth, as QEMU's max-bandwidth): bytes
 * leave at no more than `bytesPerSecond` on average: over any stretch of time, at most that rate's worth plus two
 * bursts (`burstMs` each: one saved up before the stretch, one taken ahead at its end). take(n)
 * resolves when n more bytes may go; callers send in order, one take per send. Time is the only input: the
 * limit shapes throughput and never decides anything about safety.
 */
export class Throttle {
  readonly bytesPerSecond: number;
  private readonly burstMs: number;
  /** When the bytes taken so far have left at exactly the limit (performance.now() ms). */
  private readyAt = 0;

  constructor(bytesPerSecond: number, burstMs = 10) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`a bandwidth limit of ${bytesPerSecond} bytes/s: must be positive`);
    this.bytesPerSecond = bytesPerSecond;
    this.burstMs = burstMs;
  }

  /** Resolves once `bytes` more may be sent without exceeding the limit (at once while under it). */
  take(bytes: number): Promise<void> {
    const now = performance.now();
    // Time not used by earlier sends is not saved up beyond the burst: an idle link does not earn a flood.
    this.readyAt = Math.max(this.readyAt, now - this.burstMs) + (bytes * 1000) / this.bytesPerSecond;
    const wait = this.readyAt - this.burstMs - now;
    return wait > 0 ? new Promise((r) => setTimeout(r, wait)) : Promise.resolve();
  }
}
