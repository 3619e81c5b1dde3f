import fc from 'fast-check';
import { expect, test } from 'vitest';
import { encodePageData, pageDataRecordPieces, PAGE_SIZE } from '@colo/stream';

/** Guest memory of `pages` pages, each filled with bytes derived from its pfn. */
function memory(pages: number): Uint8Array {
  const m = new Uint8Array(pages * PAGE_SIZE);
  for (let p = 0; p < pages; p++) m.fill((p * 7 + 1) & 0xff, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
  return m;
}

function join(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

// The zero-copy sender writes records as header + views of guest pages; a peer must receive exactly the bytes
// the copying encoder would have written.
test('PAGE_DATA as header + page views is byte-identical to encodePageData, for any pfn set and batch', () => {
  const mem = memory(4096);
  const pageOf = (pfn: number) => mem.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { minLength: 1, maxLength: 3000 }).map((a) => a.sort((x, y) => x - y)),
      fc.constantFrom(1, 7, 255, 1024),
      (pfns, batch) => {
        const records = pageDataRecordPieces(pfns, pageOf, { batch });
        expect(records.length).toBe(Math.ceil(pfns.length / batch));
        expect(join(records.flat())).toEqual(encodePageData(pfns, pageOf, { batch }));
        // the pages are views of guest memory, not copies
        for (const r of records) for (const piece of r.slice(1)) expect(piece.buffer).toBe(mem.buffer);
      },
    ),
    { numRuns: 60 },
  );
});
