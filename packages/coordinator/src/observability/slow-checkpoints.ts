/**
 * Finds the checkpoints that take much longer than usual, and says how much of each the JavaScript collector took.
 *
 * Why: a checkpoint pause's tail is what clients feel, and on a shared host it has two usual causes that call for
 * different fixes: a collection inside the pause (the node's heap: see the heap flags in docs/operations.md) or
 * the host not running the node's thread (CPU contention, vCPU wake-ups: nothing in colo to tune). The duration
 * alone cannot tell them apart; the collector's own timings, set against the checkpoint's window, can. Each node
 * watches its own part: the primary its guest's pause, the secondary the time from a checkpoint's first record
 * to its apply (the primary sees that as a long `secondary_apply` phase).
 */

/** Named phase durations in seconds (the primary's CheckpointPhases). */
export type Phases = Readonly<Record<string, number | undefined>>;

/** One checkpoint as a node saw it. */
export interface CheckpointTiming {
  seq: number;
  /** 'initial' (a whole synchronisation) is neither judged nor part of the median. */
  reason: string;
  /** Primary: the pause; secondary: first record received to applied. */
  seconds: number;
  /** The same span on this process's performance.now() clock (ms); without it no collector time is found. */
  window?: { start: number; end: number };
  /** Phase durations (seconds), reported as they are. */
  phases?: Phases;
  pages: number;
}

/** One collection, on the same clock as CheckpointTiming.window (performance.now(), ms). */
export interface CollectorPause {
  start: number;
  duration: number;
}

export interface SlowCheckpoint {
  seq: number;
  reason: string;
  seconds: number;
  /** Median of the recent checkpoints it was compared with. */
  medianSeconds: number;
  /** Collector time inside its window. */
  collectorSeconds: number;
  phases: Phases;
  pages: number;
  /** Slow checkpoints found since the previous report (rate-limited logging), this one excluded. */
  unreported: number;
}

/** What the watch makes of one completed checkpoint. */
export interface CheckpointVerdict {
  /** Collector time inside its window (0 without one). */
  collectorSeconds: number;
  /** It took much longer than the recent ones. */
  slow: boolean;
  /** Set when it is slow and a report is due (reports are rate-limited; the others are counted into the next). */
  report: SlowCheckpoint | null;
}

export interface SlowCheckpointOptions {
  /** A checkpoint is slow at this multiple of the recent median... Default 4. */
  factor?: number;
  /** ...and never below this (0.3 ms at four times the median is not worth a line). Default 0.005 s. */
  minSeconds?: number;
  /** Recent checkpoints the median is taken over. Default 256. */
  window?: number;
  /** No verdict before this many are known. Default 32. */
  warmup?: number;
  /** At most one report per this interval; the others are counted into the next. Default 10,000 ms. */
  reportIntervalMs?: number;
  /** Clock for the report interval (ms). Default Date.now. */
  now?: () => number;
}

/** Collections older than this are forgotten (no checkpoint lasts that long without a timeout first). */
const COLLECTOR_MEMORY_MS = 60_000;
/**
 * And at most this many are kept: every checkpoint scans them, so a process collecting 100 times a second must
 * not make each checkpoint walk a minute of them (the newest are the ones a window can overlap).
 */
const COLLECTOR_MEMORY_ENTRIES = 256;

export class SlowCheckpointWatch {
  readonly #factor: number;
  readonly #minSeconds: number;
  readonly #warmup: number;
  readonly #reportIntervalMs: number;
  readonly #now: () => number;
  /** Recent durations (seconds), a ring. */
  readonly #recent: Float64Array;
  #count = 0;
  #collector: CollectorPause[] = [];
  #lastReport = -Infinity;
  #unreported = 0;

  constructor(options: SlowCheckpointOptions = {}) {
    this.#factor = options.factor ?? 4;
    this.#minSeconds = options.minSeconds ?? 0.005;
    this.#recent = new Float64Array(options.window ?? 256);
    this.#warmup = Math.min(options.warmup ?? 32, this.#recent.length);
    this.#reportIntervalMs = options.reportIntervalMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** A collection this process ran (fed from a PerformanceObserver of 'gc' entries). */
  collected(pause: CollectorPause): void {
    this.#collector.push(pause);
    // Forget what no future window can reach: filter only when the oldest entry has aged out (O(1) otherwise).
    const oldest = this.#collector[0]!;
    const horizon = pause.start - COLLECTOR_MEMORY_MS;
    if (oldest.start + oldest.duration < horizon) this.#collector = this.#collector.filter((c) => c.start + c.duration >= horizon);
    if (this.#collector.length > COLLECTOR_MEMORY_ENTRIES) this.#collector.shift();
  }

  /** A completed checkpoint: its collector time, whether it was slow, and the report when one is due. */
  checkpoint(t: CheckpointTiming): CheckpointVerdict {
    const collectorSeconds = t.window ? this.#collectorWithin(t.window.start, t.window.end) / 1000 : 0;
    if (t.reason === 'initial') return { collectorSeconds, slow: false, report: null };
    const known = Math.min(this.#count, this.#recent.length);
    let median = 0;
    let slow = false;
    // Most checkpoints are below the floor: only those above it pay for the median.
    if (known >= this.#warmup && t.seconds >= this.#minSeconds) {
      median = medianOf(this.#recent.subarray(0, known));
      slow = t.seconds >= this.#factor * median;
    }
    this.#recent[this.#count % this.#recent.length] = t.seconds;
    this.#count++;
    if (!slow) return { collectorSeconds, slow, report: null };
    const now = this.#now();
    if (now - this.#lastReport < this.#reportIntervalMs) {
      this.#unreported++;
      return { collectorSeconds, slow, report: null };
    }
    this.#lastReport = now;
    const report: SlowCheckpoint = {
      seq: t.seq,
      reason: t.reason,
      seconds: t.seconds,
      medianSeconds: median,
      collectorSeconds,
      phases: t.phases ?? {},
      pages: t.pages,
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
