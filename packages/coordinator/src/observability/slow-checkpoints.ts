import type { CheckpointMeasurement, CheckpointPhases } from '../engine/measurement.js';

/**
 * Finds the checkpoints whose pause stands out, and says how much of each pause the JavaScript collector took.
 *
 * Why: a checkpoint pause's tail is what clients feel, and on a shared host it has two usual causes that call for
 * different fixes: a collection inside the pause (this process's heap: see the heap flags in docs/operations.md)
 * or the host not running the node's thread (CPU contention, vCPU wake-ups: nothing in colo to tune). The pause
 * alone cannot tell them apart; the collector's own timings, set against the pause window, can. Measured on the
 * primary, whose clock the pause window is in; the secondary's collections show up as a long `secondary_apply`
 * phase instead.
 */

/** One collection, in the same clock as CheckpointMeasurement.pauseWindow (performance.now(), ms). */
export interface CollectorPause {
  start: number;
  duration: number;
}

export interface SlowCheckpoint {
  seq: number;
  reason: string;
  pauseSeconds: number;
  /** Median pause of the recent checkpoints it was compared with. */
  medianSeconds: number;
  /** Collector time inside this checkpoint's pause. */
  collectorSeconds: number;
  phases: CheckpointPhases;
  pages: number;
  /** Slow checkpoints found since the previous report (rate-limited logging), this one excluded. */
  unreported: number;
}

/** What the watch makes of one completed checkpoint. */
export interface CheckpointVerdict {
  /** Collector time inside its pause (0 without a pause window). */
  collectorSeconds: number;
  /** Its pause stands out against the recent ones. */
  slow: boolean;
  /** Set when it is slow and a report is due (reports are rate-limited; the others are counted into the next). */
  report: SlowCheckpoint | null;
}

export interface SlowCheckpointOptions {
  /** A pause is slow at this multiple of the recent median... Default 4. */
  factor?: number;
  /** ...and never below this (a 0.3 ms pause four times the median is not worth a line). Default 0.005 s. */
  minPauseSeconds?: number;
  /** Recent pauses the median is taken over. Default 256. */
  window?: number;
  /** No verdict before this many pauses are known. Default 32. */
  warmup?: number;
  /** At most one report per this interval; the others are counted into the next. Default 10,000 ms. */
  reportIntervalMs?: number;
  /** Clock for the report interval (ms). Default Date.now. */
  now?: () => number;
}

/** Collections older than this are forgotten (no checkpoint pause lasts that long without a timeout first). */
const COLLECTOR_MEMORY_MS = 60_000;

export class SlowCheckpointWatch {
  readonly #factor: number;
  readonly #minPause: number;
  readonly #warmup: number;
  readonly #reportIntervalMs: number;
  readonly #now: () => number;
  /** Recent pauses (seconds), a ring. */
  readonly #pauses: Float64Array;
  #count = 0;
  #collector: CollectorPause[] = [];
  #lastReport = -Infinity;
  #unreported = 0;

  constructor(options: SlowCheckpointOptions = {}) {
    this.#factor = options.factor ?? 4;
    this.#minPause = options.minPauseSeconds ?? 0.005;
    this.#pauses = new Float64Array(options.window ?? 256);
    this.#warmup = Math.min(options.warmup ?? 32, this.#pauses.length);
    this.#reportIntervalMs = options.reportIntervalMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** A collection this process ran (fed from a PerformanceObserver of 'gc' entries). */
  collected(pause: CollectorPause): void {
    this.#collector.push(pause);
    // Forget what no future pause window can reach (checked only when the list grows: cheap).
    if (this.#collector.length > 64) {
      const horizon = pause.start - COLLECTOR_MEMORY_MS;
      this.#collector = this.#collector.filter((c) => c.start + c.duration >= horizon);
    }
  }

  /** A completed checkpoint: its collector time, whether it stands out, and the report when one is due. */
  checkpoint(m: CheckpointMeasurement): CheckpointVerdict {
    const collectorSeconds = m.pauseWindow ? this.#collectorWithin(m.pauseWindow.start, m.pauseWindow.end) / 1000 : 0;
    // The initial synchronisation is a different animal (the whole guest): neither judged nor part of the median.
    if (m.reason === 'initial') return { collectorSeconds, slow: false, report: null };
    const known = Math.min(this.#count, this.#pauses.length);
    let median = 0;
    let slow = false;
    // Most pauses are below the floor: only those above it pay for the median.
    if (known >= this.#warmup && m.pauseSeconds >= this.#minPause) {
      median = medianOf(this.#pauses.subarray(0, known));
      slow = m.pauseSeconds >= this.#factor * median;
    }
    this.#pauses[this.#count % this.#pauses.length] = m.pauseSeconds;
    this.#count++;
    if (!slow) return { collectorSeconds, slow, report: null };
    const now = this.#now();
    if (now - this.#lastReport < this.#reportIntervalMs) {
      this.#unreported++;
      return { collectorSeconds, slow, report: null };
    }
    this.#lastReport = now;
    const report: SlowCheckpoint = {
      seq: m.seq,
      reason: m.reason,
      pauseSeconds: m.pauseSeconds,
      medianSeconds: median,
      collectorSeconds,
      phases: m.phases,
      pages: m.pages,
      unreported: this.#unreported,
    };
    this.#unreported = 0;
    return { collectorSeconds, slow, report };
  }

  /** Milliseconds of collection overlapping [start, end]. */
  #collectorWithin(start: number, end: number): number {
    let ms = 0;
    for (const c of this.#collector) {
      const from = Math.max(start, c.start);
      const to = Math.min(end, c.start + c.duration);
      if (to > from) ms += to - from;
    }
    return ms;
  }
}

function medianOf(xs: Float64Array): number {
  const sorted = Float64Array.from(xs).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
