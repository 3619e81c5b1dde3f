import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SlowCheckpointWatch, type CheckpointTiming } from '../../src/observability/slow-checkpoints.js';

/** A checkpoint that took `seconds`, from `start` (ms on the process clock). */
function cp(seq: number, seconds: number, start = seq * 100, reason = 'periodic'): CheckpointTiming {
  return {
    seq,
    reason,
    seconds,
    phases: { suspend: 0, transfer: seconds / 2, secondary_apply: seconds / 2, resume: 0 },
    pages: 100,
    window: { start, end: start + seconds * 1000 },
  };
}

describe('SlowCheckpointWatch', () => {
  it('flags a pause at 4x the recent median (and above the floor), only after the warm-up', () => {
    let clock = 0;
    const w = new SlowCheckpointWatch({ warmup: 10, now: () => clock });
    // During the warm-up nothing is judged, however long.
    for (let i = 1; i <= 9; i++) expect(w.checkpoint(cp(i, i === 5 ? 0.05 : 0.002)).slow).toBe(false);
    expect(w.checkpoint(cp(10, 0.002)).slow).toBe(false);
    // Median now 2 ms: 7 ms is not 4x, 8 ms is; neither the floor (5 ms) nor 4x alone is enough.
    expect(w.checkpoint(cp(11, 0.007)).slow).toBe(false);
    const v = w.checkpoint(cp(12, 0.008));
    expect(v.slow).toBe(true);
    expect(v.report).toMatchObject({ seq: 12, seconds: 0.008, medianSeconds: 0.002, unreported: 0 });
    const low = new SlowCheckpointWatch({ warmup: 4 });
    for (let i = 1; i <= 4; i++) low.checkpoint(cp(i, 0.0005));
    expect(low.checkpoint(cp(5, 0.004)).slow).toBe(false); // 8x the median, under 5 ms
  });

  it('neither judges the initial synchronisation nor lets it into the warm-up or the median', () => {
    const w = new SlowCheckpointWatch({ warmup: 3 });
    expect(w.checkpoint(cp(0, 30, 0, 'initial')).slow).toBe(false);
    w.checkpoint(cp(1, 0.002));
    w.checkpoint(cp(2, 0.002));
    // Two pauses known, not three: no verdict yet (had the sync counted, this would be judged slow).
    expect(w.checkpoint(cp(3, 0.02)).slow).toBe(false);
    expect(w.checkpoint(cp(4, 0.02)).slow).toBe(true);
    // After the warm-up, a re-synchronisation of a new secondary is not a slow checkpoint either.
    expect(w.checkpoint(cp(5, 30, 0, 'initial')).slow).toBe(false);
  });

  it('reports at most once per interval and counts the slow checkpoints in between into the next report', () => {
    let clock = 0;
    const w = new SlowCheckpointWatch({ warmup: 4, reportIntervalMs: 1000, now: () => clock });
    for (let i = 1; i <= 4; i++) w.checkpoint(cp(i, 0.002));
    expect(w.checkpoint(cp(5, 0.05)).report).not.toBeNull();
    clock = 500;
    const quiet = [w.checkpoint(cp(6, 0.05)), w.checkpoint(cp(7, 0.05))];
    expect(quiet.map((v) => [v.slow, v.report])).toEqual([
      [true, null],
      [true, null],
    ]);
    clock = 1500;
    expect(w.checkpoint(cp(8, 0.05)).report).toMatchObject({ seq: 8, unreported: 2 });
  });

  it('counts exactly the collector time that overlaps each checkpoint\'s window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ start: fc.integer({ min: 0, max: 1000 }), duration: fc.integer({ min: 0, max: 50 }) }), { maxLength: 30 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 0, max: 200 }),
        (gcs, start, length) => {
          const w = new SlowCheckpointWatch();
          for (const g of gcs) w.collected(g);
          // Reference: count the overlap millisecond by millisecond (integers, so exact).
          let expected = 0;
          for (let t = start; t < start + length; t++) for (const g of gcs) if (t >= g.start && t < g.start + g.duration) expected++;
          const v = w.checkpoint(cp(1, length / 1000, start));
          expect(v.collectorSeconds * 1000).toBeCloseTo(expected, 6);
        },
      ),
    );
  });

  it('has no collector time to give without a window, and forgets collections a minute old', () => {
    const w = new SlowCheckpointWatch();
    w.collected({ start: 10, duration: 5 });
    const { window: _, ...noWindow } = cp(1, 0.01, 8);
    expect(w.checkpoint(noWindow).collectorSeconds).toBe(0);
    for (let i = 0; i < 70; i++) w.collected({ start: 120_000 + i, duration: 0.5 });
    expect(w.checkpoint(cp(2, 0.01, 8)).collectorSeconds).toBe(0);
    expect(w.checkpoint(cp(3, 0.01, 120_000)).collectorSeconds).toBeCloseTo(0.005, 9);
    // However often the process collects, only the latest 256 are kept (each checkpoint scans them).
    for (let i = 0; i < 1000; i++) w.collected({ start: 200_000 + i, duration: 0.5 });
    expect(w.checkpoint(cp(4, 1, 200_000)).collectorSeconds).toBeCloseTo(0.128, 9);
  });
});
