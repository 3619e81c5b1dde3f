import { describe, expect, it } from 'vitest';
import { faultsFor, modeFor, runSimulation } from '../src/index.js';

describe('a simulated run', () => {
  it.each(['remus', 'colo'] as const)('replays exactly from its seed in %s mode (faults, writes, checkpoints, every callback)', async (mode) => {
    // A seed with faults, among them a failover.
    let seed = 1;
    while (!faultsFor(seed, 40).some((f) => f.kind === 'freeze' && f.target === 'primary' && f.durationMs > 1000)) seed++;
    const first = await runSimulation({ seed, mode });
    const second = await runSimulation({ seed, mode });
    expect(second).toEqual(first);
    expect(first.mode).toBe(mode);
    expect(first.violations).toEqual([]);
    expect(first.acknowledged).toBeGreaterThan(100);
    expect(first.failovers).toBeGreaterThan(0);
  });

  it('a seed draws its mode (half COLO, half Remus) unless told', () => {
    const colo = Array.from({ length: 1000 }, (_, i) => modeFor(i + 1)).filter((m) => m === 'colo').length;
    expect(colo).toBeGreaterThan(400);
    expect(colo).toBeLessThan(600);
  });

  it('a Remus run without faults keeps the pair protected and acknowledges writes all along', async () => {
    const r = await runSimulation({ seed: 7, faults: [], mode: 'remus' });
    expect(r.violations).toEqual([]);
    expect(r.failovers).toBe(0);
    // Remus every 100 ms for 40 s: the initial synchronisation and ~400 checkpoints.
    expect(r.checkpoints).toBeGreaterThan(300);
    expect(r.acknowledged).toBeGreaterThan(500);
  });

  it('a COLO run without faults never loses its peer; its checkpoints come from the outputs and the interval', async () => {
    const r = await runSimulation({ seed: 7, faults: [], mode: 'colo' });
    expect(r.violations).toEqual([]);
    expect(r.failovers).toBe(0);
    // Matching outputs leave the guests running up to the 1 s COLO interval (at most ~40 such checkpoints, not
    // Remus' 400); each TIME a client asks answers differently on the two guests: a checkpoint before it leaves.
    expect(r.miscompares).toBeGreaterThan(10);
    expect(r.checkpoints - r.miscompares).toBeGreaterThan(10);
    expect(r.checkpoints).toBeLessThan(200);
    expect(r.acknowledged).toBeGreaterThan(500);
  });

  it.each(['primary', 'secondary'] as const)('bad bytes from the %s are refused with a typed error: the peer is lost, nothing applied, the pair protected again', async (target) => {
    for (const mode of ['colo', 'remus'] as const) {
      const r = await runSimulation({ seed: 3, mode, faults: [{ at: 6000, kind: 'garbage', target, durationMs: 1000 }] });
      expect(r.violations).toEqual([]);
      expect(r.peerLosses).toBeGreaterThanOrEqual(2);
    }
  });
});
