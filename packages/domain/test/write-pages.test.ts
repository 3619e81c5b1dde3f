import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SimulatedGuest } from '../src/simulated-guest.js';

const PAGE = 4096;
const PAGES = 32;

describe('SimulatedGuest.writePages (checkpoint apply)', () => {
  it('writes runs of consecutive pfns as one copy with the same result as page by page, later copies winning', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: PAGES - 1 }), { minLength: 1, maxLength: 40 }), fc.boolean(), (pfns, sorted) => {
        const list = sorted ? [...pfns].sort((a, b) => a - b) : pfns;
        const g = new SimulatedGuest({ memoryBytes: PAGES * PAGE, startSuspended: true });
        try {
          // Page i of the data is filled with i + 1 (mod 255, never 0): the model is "the last entry naming a pfn".
          const data = new Uint8Array(list.length * PAGE);
          list.forEach((_, i) => data.fill((i % 255) + 1, i * PAGE, (i + 1) * PAGE));
          const expected = new Map<number, number>();
          list.forEach((pfn, i) => expected.set(pfn, (i % 255) + 1));
          g.writePages(list, data);
          for (let pfn = 0; pfn < PAGES; pfn++) {
            const page = g.page(pfn);
            const want = expected.get(pfn);
            if (want === undefined) continue; // untouched: whatever the guest held
            expect(page.every((b) => b === want)).toBe(true);
          }
        } finally {
          g.destroy();
        }
      }),
      { numRuns: 200 },
    );
  });
});
