import { expect, it } from 'vitest';
import { runSeeds } from '../src/index.js';

// The CI-sized run, in two files that run side by side: seeds 1-2500 in all, 40 simulated seconds each (10^5 s).
it('seeds 1-1250: every invariant holds under the seeds\' faults', async () => {
  const s = await runSeeds({ from: 1, count: 1250, seconds: 40 });
  const rate = s.simSeconds / (s.wallMs / 1000);
  console.log(`seeds 1-1250: ${s.seeds} seeds, ${s.simSeconds} simulated s in ${(s.wallMs / 1000).toFixed(1)} s (${rate.toFixed(0)} simulated s per wall s), ${s.acknowledged} writes acknowledged, ${s.failovers} failovers, ${s.pairsLost} pairs lost to a double fault`);
  for (const f of s.failures) console.log(`seed ${f.seed}:\n  ${f.violations.join('\n  ')}\n  replay: ${f.replay}`);
  expect(s.failures.map((f) => ({ seed: f.seed, violations: f.violations, replay: f.replay }))).toEqual([]);
  expect(s.seeds).toBe(1250);
  expect(s.failovers).toBeGreaterThan(100);
}, 900_000);
