import { afterEach, describe, expect, it } from 'vitest';
import { randomWorkload, startPair, waitFor, type Pair } from './pair.js';

/**
 * Two real nodes over real ws on loopback with simulated guests under a random workload: after every checkpoint
 * the secondary's memory is byte-identical to the primary's memory at that checkpoint.
 */
let pair: Pair | undefined;
afterEach(async () => {
  await pair?.stop();
  pair = undefined;
});

describe.each(['colo', 'remus'] as const)('a %s pair over ws', (mode) => {
  it('synchronises, checkpoints under load, and the secondary matches the primary after every checkpoint', async () => {
    pair = await startPair({ mode, pages: 2048, backgroundDirtyPagesPerSecond: 3000 });
    const { primary, secondary } = pair;
    await waitFor('protection', () => primary.status().protected);
    expect(secondary.status().protected).toBe(true);
    const load = randomWorkload(pair.guest, 7);
    // Explicit requests of every reason (COLO) on top of the periodic timer.
    const done: Promise<unknown>[] = [];
    for (const reason of ['manual', 'miscompare', 'stale', 'periodic'] as const) {
      await new Promise((r) => setTimeout(r, 80));
      done.push(primary.requestCheckpoint(reason));
    }
    await Promise.all(done);
    await waitFor('ten checkpoints', () => primary.lastCompletedCheckpoint >= 10, 15_000);
    load.stop();
    const final = await primary.requestCheckpoint('manual');
    expect(load.sent()).toBeGreaterThan(100);

    // Every checkpoint the secondary applied equals what the primary wrote (primary seq = link index + 1).
    const applied = [...pair.secondaryDigests.keys()];
    expect(applied.length).toBeGreaterThanOrEqual(10);
    for (const index of applied) {
      expect(pair.secondaryDigests.get(index), `checkpoint ${index}`).toBe(pair.primaryDigests.get(index + 1));
    }
    const st = primary.status();
    expect(st.state).toBe('protected.idle');
    expect(st.lastCheckpoint!.seq).toBe(final.seq);
    expect(st.checkpoints.initial).toBe(1);
    expect(st.checkpoints.manual).toBeGreaterThanOrEqual(1);
    if (mode === 'colo') expect(st.checkpoints.miscompare + st.checkpoints.stale).toBeGreaterThanOrEqual(1);
    expect(final.pauseSeconds).toBeGreaterThan(0);
    expect(final.bytes).toBeGreaterThan(0);
    const sst = secondary.status();
    expect(sst.state).toBe(mode === 'colo' ? 'synchronised.running' : 'synchronised.standby');
    expect(sst.epoch).toBe(0);
    // The Remus secondary's guest never ran; the COLO secondary's runs between checkpoints.
    expect(secondary.domain!.state).toBe(mode === 'colo' ? 'running' : 'suspended');
  });
});
