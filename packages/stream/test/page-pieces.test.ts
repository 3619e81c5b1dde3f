import fc from 'fast-check';
import { expect, test } from 'vitest';
import {
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodePageData,
  encodeRecord,
  GuestType,
  pageDataRecordPieces,
  PAGE_SIZE,
  StreamDecoder,
  type PageDataRecord,
} from '@colo/stream';

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
        expect(Buffer.compare(join(records.flat()), encodePageData(pfns, pageOf, { batch }))).toBe(0);
        // the pages are views of guest memory, not copies
        for (const r of records) for (const piece of r.slice(1)) expect(piece.buffer).toBe(mem.buffer);
      },
    ),
    { numRuns: 60 },
  );
});

// pageRun (Domain.pages) takes a run of consecutive pfns as one view: the records must not change, page types
// without data must still be skipped, and a run of the wrong size is refused rather than sent.
test('PAGE_DATA through pageRun is byte-identical to pageOf, for any pfns, page types and batch', () => {
  const mem = memory(512);
  const pageOf = (pfn: number) => mem.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  const runs: number[] = [];
  const pageRun = (first: number, count: number) => {
    runs.push(count);
    return mem.subarray(first * PAGE_SIZE, (first + count) * PAGE_SIZE);
  };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 511 }), fc.constantFrom(0, 0, 0, 1, 0xf, 0xd)), { minLength: 1, maxLength: 400 }),
      fc.boolean(),
      fc.constantFrom(1, 7, 255, 1024),
      (entries, sorted, batch) => {
        const list = sorted ? [...entries].sort((a, b) => a[0] - b[0]) : entries;
        const pfns = list.map((e) => e[0]);
        // PageType values: 0 NORMAL and 1 L1TAB carry data; 0xf XTAB and 0xd BROKEN carry none.
        const types = list.map((e) => e[1]);
        runs.length = 0;
        const viaRuns = join(pageDataRecordPieces(pfns, pageOf, { batch, types, pageRun }).flat());
        // Buffer.compare: a deep toEqual of megabytes would be most of this test's time.
        expect(Buffer.compare(viaRuns, encodePageData(pfns, pageOf, { batch, types }))).toBe(0);
        expect(Buffer.compare(viaRuns, encodePageData(pfns, pageOf, { batch, types, pageRun }))).toBe(0);
        // the runs asked for (by the two encodings that used pageRun) cover every page with data once each
        expect(runs.reduce((a, b) => a + b, 0)).toBe(types.filter((t) => t === 0 || t === 1).length * 2);
      },
    ),
    { numRuns: 100 },
  );
  expect(() => pageDataRecordPieces([3, 4, 5], pageOf, { pageRun: (f, c) => mem.subarray(f * PAGE_SIZE, (f + c) * PAGE_SIZE - 1) })).toThrowError(
    expect.objectContaining({ code: 'STREAM_UNENCODABLE' }),
  );
});

/** A libxc stream's start up to STATIC_DATA_END (pages may follow). */
function libxcHeaders(): Uint8Array {
  return join([
    encodeLibxcImageHeader(),
    encodeLibxcDomainHeader({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }),
    encodeRecord({ layer: 'libxc', kind: 'STATIC_DATA_END' }),
  ]);
}

// The secondary decodes with pageDataPieces: the same records, the page bytes left in the chunks they came in.
test('decoding with pageDataPieces gives the same records, page data as views of the pushed chunks, for any cuts', () => {
  const mem = memory(512);
  const pageOf = (pfn: number) => mem.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  fc.assert(
    fc.property(
      fc.array(fc.uniqueArray(fc.integer({ min: 0, max: 511 }), { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (batches, rawCuts) => {
        const body = join(batches.map((b) => encodePageData(b, pageOf)));
        const stream = join([libxcHeaders(), body]);
        const cuts = [...new Set(rawCuts.map((c) => c % stream.length))].sort((a, b) => a - b).filter((c) => c > 0);
        const chunks: Uint8Array[] = [];
        let at = 0;
        for (const c of [...cuts, stream.length]) {
          // Each chunk a buffer of its own, as the socket's reads are.
          chunks.push(stream.slice(at, c));
          at = c;
        }
        const whole = new StreamDecoder({ kind: 'libxc' }).push(stream).filter((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
        const decoder = new StreamDecoder({ kind: 'libxc', pageDataPieces: true });
        const pieced = chunks.flatMap((c) => decoder.push(c)).filter((i) => i.item === 'record' && i.record.kind === 'PAGE_DATA');
        expect(whole.length).toBe(batches.length);
        expect(pieced.length).toBe(whole.length);
        pieced.forEach((item, i) => {
          const a = (whole[i] as { record: PageDataRecord }).record;
          const b = (item as { record: PageDataRecord }).record;
          expect(b.pfns).toEqual(a.pfns);
          expect(Buffer.compare(join(b.dataPieces!), a.data)).toBe(0);
          for (const p of b.dataPieces!) expect(chunks.some((c) => c.buffer === p.buffer)).toBe(true);
          if (b.dataPieces!.length === 1) expect(b.data).toBe(b.dataPieces![0]);
        });
      },
    ),
    { numRuns: 80 },
  );
});
