import { expect, it } from 'vitest';
import { runSeeds } from '../src/index.js';

/**
 * One part of the CI-sized run: 1,250 seeds of 40 simulated seconds from `from`. Two parts (seeds-1, seeds-2) make
 * seeds 1-2,500, 10^5 simulated seconds, in two files vitest may run side by side.
 */
export function ciPart(from: number): void {
  const to = from + 1249;
  it(`seeds ${from}-${to}: every invariant holds under the seeds' faults`, async () => {
    const s = await runSeeds({ from, count: 1250, seconds: 40 });
    const rate = s.simSeconds / (s.wallMs / 1000);
    console.log(
      `seeds ${from}-${to}: ${s.seeds} seeds (${s.coloSeeds} COLO), ${s.simSeconds} simulated s in ${(s.wallMs / 1000).toFixed(1)} s (${rate.toFixed(0)} simulated s per wall s), ` +
        `${s.acknowledged} writes acknowledged, ${s.failovers} failovers, ${s.pairsLost} pairs lost to a double fault`,
    );
    for (const f of s.failures) console.log(`seed ${f.seed}:\n  ${f.violations.join('\n  ')}\n  replay: ${f.replay}`);
    expect(s.failures.map((f) => ({ seed: f.seed, violations: f.violations, replay: f.replay }))).toEqual([]);
    expect(s.seeds).toBe(1250);
    expect(s.failovers).toBeGreaterThan(100);
    // Both modes, about half each.
    expect(s.coloSeeds).toBeGreaterThan(500);
    expect(s.coloSeeds).toBeLessThan(750);
  }, 900_000);
}
