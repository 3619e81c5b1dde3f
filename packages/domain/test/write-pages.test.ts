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

  it('pages(first, count) is the run page() gives one by one, and refuses runs outside the guest', () => {
    const g = new SimulatedGuest({ memoryBytes: PAGES * PAGE, startSuspended: true });
    try {
      const data = new Uint8Array(3 * PAGE);
      data.fill(7, 0, PAGE).fill(8, PAGE, 2 * PAGE).fill(9, 2 * PAGE);
      g.writePages([10, 11, 12], data);
      const run = g.pages(10, 3);
      expect(run.length).toBe(3 * PAGE);
      for (let i = 0; i < 3; i++) expect(Buffer.compare(run.subarray(i * PAGE, (i + 1) * PAGE), g.page(10 + i))).toBe(0);
      for (const [first, count] of [[PAGES - 2, 3], [-1, 2], [0, 0], [0, 1.5]] as const) {
        expect(() => g.pages(first, count)).toThrowError(expect.objectContaining({ code: 'DOMAIN_BAD_PFN' }));
      }
    } finally {
      g.destroy();
    }
  });
});
