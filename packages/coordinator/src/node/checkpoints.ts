import type { AppliedCheckpointTiming } from '../engine/secondary-engine.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import type { CheckpointMeasurement } from '../engine/measurement.js';
import type { CheckpointReason } from '../statechart/types.js';

interface Waiter {
  seq: number;
  resolve: (m: CheckpointMeasurement) => void;
  reject: (e: Error) => void;
}

/**
 * The node's completed checkpoints: the one owner of "which checkpoint are we on" above the engines (the primary's
 * machine numbers them, the secondary's engine counts the ones it applied; both report here), with the requests
 * waiting for one. Survives a promotion: a promoted primary numbers on from what it applied as a secondary.
 */
export class CompletedCheckpoints {
  private waiters: Waiter[] = [];
  private lastSeq = 0;
  private lastOne: CheckpointMeasurement | null = null;
  readonly counts: Record<CheckpointReason, number> = { initial: 0, miscompare: 0, stale: 0, periodic: 0, manual: 0, output_bound: 0 };

  /** The sequence number of the last completed (acknowledged, or applied) checkpoint; 0 before the first. */
  get seq(): number {
    return this.lastSeq;
  }
  get last(): CheckpointMeasurement | null {
    return this.lastOne;
  }

  /** Primary: checkpoint `m.seq` completed; the requests waiting for it or an earlier one resolve. */
  completed(m: CheckpointMeasurement): void {
    this.lastSeq = Math.max(this.lastSeq, m.seq);
    this.lastOne = m;
    this.counts[m.reason]++;
    const keep: Waiter[] = [];
    for (const w of this.waiters) (w.seq <= m.seq ? w.resolve(m) : keep.push(w));
    this.waiters = keep;
  }

  /**
   * Secondary: checkpoint `index` of the current link applied (0: the initial synchronisation), with its pages and
   * this node's part of it (first record to applied).
   */
  applied(index: number, at: number, timing: AppliedCheckpointTiming): void {
    this.lastSeq = index;
    this.lastOne = {
      seq: index,
      reason: index === 0 ? 'initial' : 'periodic',
      at,
      pauseSeconds: 0,
      durationSeconds: (timing.end - timing.start) / 1000,
      phases: { suspend: 0, transfer: 0, resume: 0 },
      linkIndex: index,
      pages: timing.pages,
      deltaPages: 0,
      resentPages: 0,
      bytes: 0,
    };
  }

  /** Resolves when checkpoint `seq` (or a later one) has completed. */
  when(seq: number): Promise<CheckpointMeasurement> {
    if (this.lastSeq >= seq && this.lastOne) return Promise.resolve(this.lastOne);
    return new Promise((resolve, reject) => this.waiters.push({ seq, resolve, reject }));
  }

  /** Every waiting request fails with `error` (the secondary was lost, the node stopped). */
  rejectAll(error: Error): void {
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x.reject(error);
  }

  /** A node that stopped: nothing more completes. */
  stopped(): void {
    this.rejectAll(new CoordinatorError(CoordinatorErrorCode.STOPPED, 'node stopped'));
  }
}
