import { expect, it } from 'vitest';
import { PAIR_HOLDER, type Arbiter } from '../internals.js';

/**
 * What every arbiter must do, whatever keeps the record: the compare-and-swap's meaning, and exactly one winner
 * when two nodes race from the same epoch. `fresh()` gives two clients of one new, empty record.
 */
export function arbiterContract(fresh: () => Promise<[Arbiter, Arbiter]>, races: number): void {
  it('creates the record only where there is none, and swaps only from the expected epoch', async () => {
    const [a] = await fresh();
    expect(await a.read()).toBeNull();
    expect(await a.compareAndSwap(null, { epoch: 0, holder: 'node-a' })).toEqual({ swapped: true, current: { epoch: 0, holder: 'node-a' } });
    // A second create loses and says who holds the record.
    expect(await a.compareAndSwap(null, { epoch: 0, holder: 'node-b' })).toEqual({ swapped: false, current: { epoch: 0, holder: 'node-a' } });
    // The holder, when given, is part of the compare.
    expect((await a.compareAndSwap({ epoch: 0, holder: 'node-b' }, { epoch: 0, holder: PAIR_HOLDER })).swapped).toBe(false);
    expect((await a.compareAndSwap({ epoch: 0, holder: 'node-a' }, { epoch: 0, holder: PAIR_HOLDER })).swapped).toBe(true);
    // A stale epoch loses, however the asker got there (a node thawed after any pause asks from what it knew).
    expect((await a.compareAndSwap({ epoch: 0 }, { epoch: 1, holder: 'node-b' })).swapped).toBe(true);
    expect(await a.compareAndSwap({ epoch: 0 }, { epoch: 1, holder: 'node-a' })).toEqual({ swapped: false, current: { epoch: 1, holder: 'node-b' } });
    expect(await a.read()).toEqual({ epoch: 1, holder: 'node-b' });
  });

  it('of two nodes (two clients) racing for the next epoch exactly one wins, every time', async () => {
    const [a, b] = await fresh();
    await a.compareAndSwap(null, { epoch: 0, holder: PAIR_HOLDER });
    for (let epoch = 0; epoch < races; epoch++) {
      const [ra, rb] = await Promise.all([
        a.compareAndSwap({ epoch }, { epoch: epoch + 1, holder: 'node-a' }),
        b.compareAndSwap({ epoch }, { epoch: epoch + 1, holder: 'node-b' }),
      ]);
      expect([ra.swapped, rb.swapped].filter(Boolean)).toHaveLength(1);
      const winner = ra.swapped ? 'node-a' : 'node-b';
      expect(ra.current).toEqual({ epoch: epoch + 1, holder: winner });
      expect(rb.current).toEqual({ epoch: epoch + 1, holder: winner });
    }
    expect(await b.read()).toMatchObject({ epoch: races });
  });
}
