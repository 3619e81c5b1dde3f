import { matchesExpectation, type Arbiter, type EpochExpectation, type EpochRecord, type SwapResult } from './arbiter.js';

/**
 * The `none` arbiter: no arbiter at all. Every compare-and-swap succeeds, so two nodes that lose each other
 * BOTH win their epoch: across a partition each acts alone (split brain) until one meets the other's higher
 * epoch. For tests and explicitly unprotected set-ups only; a node using it with a peer on another host logs a
 * warning at start (docs/architecture.md, "The arbiter").
 */
export class NoArbiter implements Arbiter {
  readonly kind = 'none';
  readonly where = 'nowhere (no arbiter)';

  async read(): Promise<EpochRecord | null> {
    // It remembers nothing: every node's view of the epoch stands alone.
    return null;
  }
  async compareAndSwap(_expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> {
    return { swapped: true, current: next };
  }
  async close(): Promise<void> {}
}

export function noArbiter(): Arbiter {
  return new NoArbiter();
}

/**
 * One record in this process's memory with a real compare-and-swap: the local arbiter's store (held by
 * `colo pair`'s supervisor and served to its nodes), and an arbiter for tests that run both nodes in one process.
 */
export class MemoryArbiter implements Arbiter {
  readonly kind = 'local';
  readonly where = 'this process';
  private record: EpochRecord | null = null;
  private closed = false;

  async read(): Promise<EpochRecord | null> {
    return this.peek();
  }
  async compareAndSwap(expect: EpochExpectation, next: EpochRecord): Promise<SwapResult> {
    return this.swap(expect, next);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  get isClosed(): boolean {
    return this.closed;
  }

  /** Synchronous forms, for the server that holds the record. */
  peek(): EpochRecord | null {
    return this.record ? { ...this.record } : null;
  }
  swap(expect: EpochExpectation, next: EpochRecord): SwapResult {
    if (!matchesExpectation(this.record, expect)) return { swapped: false, current: this.peek() };
    this.record = { epoch: next.epoch, holder: next.holder };
    return { swapped: true, current: this.peek() };
  }
  /** Sets the record unconditionally: an operator's decision (both nodes down, start again from one of them). */
  reset(record: EpochRecord | null): void {
    this.record = record ? { ...record } : null;
  }
}
