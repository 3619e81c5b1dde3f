import { describe, expect, it } from 'vitest';
import { faultsFor, runSimulation } from '../src/index.js';

describe('a simulated run', () => {
  it('replays exactly from its seed (faults, writes, checkpoints, every callback)', async () => {
    // A seed with faults, among them a failover.
    let seed = 1;
    while (!faultsFor(seed, 40).some((f) => f.kind === 'freeze' && f.target === 'primary' && f.durationMs > 1000)) seed++;
    const first = await runSimulation({ seed });
    const second = await runSimulation({ seed });
    expect(second).toEqual(first);
    expect(first.violations).toEqual([]);
    expect(first.acknowledged).toBeGreaterThan(100);
    expect(first.failovers).toBeGreaterThan(0);
  });

  it('a run without faults keeps the pair protected and acknowledges writes all along', async () => {
    const r = await runSimulation({ seed: 7, faults: [] });
    expect(r.violations).toEqual([]);
    expect(r.failovers).toBe(0);
    // Remus every 100 ms for 40 s: the initial synchronisation and ~400 checkpoints.
    expect(r.checkpoints).toBeGreaterThan(300);
    expect(r.acknowledged).toBeGreaterThan(500);
  });
});
