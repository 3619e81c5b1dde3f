import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CoordinatorErrorCode } from '../../src/errors.js';
import { applyDelta, applyStateDelta, decodeDeltaBody, DeltaEncoder, encodeDeltaBody, encodeStateDelta, MAX_DELTA_BYTES, PAGE_BYTES, pageChecksum, PageDeltaSender } from '../../src/engine/page-delta.js';

/**
 * The page-delta codec against the plain path (the page itself): whatever the base and the edits, applying the
 * encoding to the base gives the page byte for byte, or the encoder says "send it whole"; the decoder takes only
 * well-formed records and encodings, with typed errors for the rest, and changes nothing when it refuses.
 */
const enc = new DeltaEncoder();

function roundTrip(page: Uint8Array, base: Uint8Array): { bytes: number } | 'whole' {
  const out = new Uint32Array(MAX_DELTA_BYTES / 4);
  const n = enc.encode(page, base, out, 0);
  if (n < 0) return 'whole';
  // The checksum the encoder computes on its way is the one a secondary computes of its copy.
  expect(enc.baseChecksum).toBe(pageChecksum(base));
  const rebuilt = Uint8Array.from(base);
  applyDelta(rebuilt, new Uint8Array(out.buffer, 0, n * 4));
  expect(Buffer.from(rebuilt).equals(Buffer.from(page))).toBe(true);
  return { bytes: n * 4 };
}

describe('page deltas', () => {
  it('random pages and random edits: the encoding rebuilds the page, or the page goes whole', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: PAGE_BYTES, maxLength: PAGE_BYTES }),
        fc.array(fc.record({ at: fc.integer({ min: 0, max: PAGE_BYTES - 1 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 200 }) }), { maxLength: 40 }),
        (base, edits) => {
          const page = Uint8Array.from(base);
          for (const e of edits) page.set(e.bytes.subarray(0, PAGE_BYTES - e.at), e.at);
          const r = roundTrip(page, base);
          if (r !== 'whole') expect(r.bytes).toBeLessThanOrEqual(MAX_DELTA_BYTES);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('edge cases: unchanged, one byte, first and last word, everything, alternate words; unaligned pages', () => {
    const base = new Uint8Array(randomBytes(PAGE_BYTES));
    expect(roundTrip(Uint8Array.from(base), base)).toEqual({ bytes: 0 });
    const one = Uint8Array.from(base);
    one[1234] ^= 0x40;
    expect(roundTrip(one, base)).toEqual({ bytes: 8 });
    const ends = Uint8Array.from(base);
    ends[0] ^= 1;
    ends[PAGE_BYTES - 1] ^= 1;
    expect(roundTrip(ends, base)).toEqual({ bytes: 16 });
    expect(roundTrip(new Uint8Array(randomBytes(PAGE_BYTES)), base)).toBe('whole');
    const zero = new Uint8Array(PAGE_BYTES);
    const some = Uint8Array.from(zero);
    some.fill(7, 100, 164);
    expect(roundTrip(some, zero)).toEqual({ bytes: 4 + 64 });
    // Every other word changed: one run over the whole page, no smaller than the page: whole.
    const alternate = Uint8Array.from(base);
    for (let w = 0; w < PAGE_BYTES / 4; w += 2) alternate[w * 4] ^= 0xff;
    expect(roundTrip(alternate, base)).toBe('whole');
    // Every third: 342 runs of one word (8 bytes each) still beat the whole page.
    const third = Uint8Array.from(base);
    for (let w = 0; w < PAGE_BYTES / 4; w += 3) third[w * 4] ^= 0xff;
    expect(roundTrip(third, base)).toEqual({ bytes: 342 * 8 });
    // Pages that are views at odd offsets (not word aligned) encode the same.
    const buf = new Uint8Array(PAGE_BYTES * 2 + 1);
    buf.set(one, 1);
    buf.set(base, PAGE_BYTES + 1);
    expect(roundTrip(buf.subarray(1, PAGE_BYTES + 1), buf.subarray(PAGE_BYTES + 1))).toEqual({ bytes: 8 });
  });

  it('the base checksum tells apart pages that differ in one word, or in the order of two words', () => {
    const base = new Uint8Array(randomBytes(PAGE_BYTES));
    const one = Uint8Array.from(base);
    one[2000] ^= 1;
    expect(pageChecksum(one)).not.toBe(pageChecksum(base));
    const swapped = Uint8Array.from(base);
    swapped.set(base.subarray(0, 4), 4);
    swapped.set(base.subarray(4, 8), 0);
    if (!base.subarray(0, 4).every((b, i) => b === base[4 + i])) expect(pageChecksum(swapped)).not.toBe(pageChecksum(base));
  });

  it('a PAGE_DELTA body round-trips, pfns above 2^32 included', () => {
    const base = new Uint8Array(PAGE_BYTES);
    const page = Uint8Array.from(base);
    page[10] = 1;
    const out = new Uint32Array(MAX_DELTA_BYTES / 4);
    const n = enc.encode(page, base, out, 0);
    const body = encodeDeltaBody([
      { pfn: 3, baseChecksum: pageChecksum(base), words: out.slice(0, n) },
      { pfn: 2 ** 33 + 5, baseChecksum: 42, words: new Uint32Array(0) },
    ]);
    const pages = decodeDeltaBody(body, 2 ** 34);
    expect(pages.map((p) => [p.pfn, p.baseChecksum, p.encoding.byteLength])).toEqual([
      [3, pageChecksum(base), n * 4],
      [2 ** 33 + 5, 42, 0],
    ]);
    expect(() => decodeDeltaBody(body, 100)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_CORRUPT }));
  });

  it('fuzzed: truncated, oversize and random bodies and encodings are DELTA_CORRUPT, and a refused encoding changes nothing', () => {
    const base = new Uint8Array(PAGE_BYTES);
    const page = Uint8Array.from(base);
    page.fill(9, 0, 300);
    const out = new Uint32Array(MAX_DELTA_BYTES / 4);
    const n = enc.encode(page, base, out, 0);
    const body = encodeDeltaBody([{ pfn: 1, baseChecksum: 0, words: out.slice(0, n) }]);
    for (let cut = 0; cut < body.byteLength; cut += 4) {
      expect(() => decodeDeltaBody(body.subarray(0, cut), 16)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_CORRUPT }));
    }
    const longer = new Uint8Array(body.byteLength + 4);
    longer.set(body);
    expect(() => decodeDeltaBody(longer, 16)).toThrow(/after the last encoding/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 1, max: 1 << 20 }), (bytes, pages) => {
        try {
          decodeDeltaBody(bytes, pages);
        } catch (e) {
          expect((e as { code?: string }).code).toBe(CoordinatorErrorCode.DELTA_CORRUPT);
        }
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
        const target = new Uint8Array(randomBytes(PAGE_BYTES));
        const before = Uint8Array.from(target);
        try {
          applyDelta(target, bytes);
        } catch (e) {
          expect((e as { code?: string }).code).toBe(CoordinatorErrorCode.DELTA_CORRUPT);
          expect(Buffer.from(target).equals(Buffer.from(before))).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
    // An oversize encoding is refused before it is read.
    expect(() => applyDelta(new Uint8Array(PAGE_BYTES), new Uint8Array(MAX_DELTA_BYTES + 4))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_CORRUPT }));
  });

  it('device-state deltas: rebuilt exactly for any length, refused against another base, whole when not smaller', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 10 }), (base, edits) => {
        const state = Uint8Array.from(base);
        for (const e of edits) state[e % state.length] ^= 0x5a;
        const body = encodeStateDelta(state, base);
        if (!body) return;
        expect(Buffer.from(applyStateDelta(body, base)).equals(Buffer.from(state))).toBe(true);
      }),
      { numRuns: 300 },
    );
    const base = new Uint8Array(randomBytes(600_001));
    const state = Uint8Array.from(base);
    state[12345] ^= 1;
    state[600_000] ^= 1; // the last, padded word
    const body = encodeStateDelta(state, base)!;
    expect(body.byteLength).toBeLessThan(64);
    expect(Buffer.from(applyStateDelta(body, base)).equals(Buffer.from(state))).toBe(true);
    const other = Uint8Array.from(base);
    other[7] ^= 1;
    expect(() => applyStateDelta(body, other)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_BASE_MISMATCH }));
    expect(() => applyStateDelta(body, base.subarray(1))).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_BASE_MISMATCH }));
    expect(encodeStateDelta(new Uint8Array(randomBytes(1000)), new Uint8Array(randomBytes(1000)))).toBeUndefined();
    expect(encodeStateDelta(state, base.subarray(0, 100))).toBeUndefined();
    for (let cut = 0; cut < body.byteLength; cut += 4) {
      expect(() => applyStateDelta(body.subarray(0, cut), base)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.DELTA_CORRUPT }));
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        try {
          applyStateDelta(bytes, base);
        } catch (e) {
          expect([CoordinatorErrorCode.DELTA_CORRUPT, CoordinatorErrorCode.DELTA_BASE_MISMATCH]).toContain((e as { code?: string }).code);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("the primary's copy of what the secondary holds (PageDeltaSender)", () => {
  /** Four pages: 0 and 1 zeros, 2 and 3 data; `edit` changes a few bytes of a page. */
  function memory() {
    const pages = [new Uint8Array(PAGE_BYTES), new Uint8Array(PAGE_BYTES), Uint8Array.from(randomBytes(PAGE_BYTES)), Uint8Array.from(randomBytes(PAGE_BYTES))];
    const edit = (pfn: number) => pages[pfn]!.set(randomBytes(16), 64);
    return { pageOf: (pfn: number) => pages[pfn]!, edit };
  }

  it('keeps no copy of what the synchronisation sent: zero pages go as deltas against zeros, the others whole the first time, then as deltas', () => {
    const m = memory();
    const sender = new PageDeltaSender(4);
    sender.synchronised([0, 1, 2, 3], m.pageOf);
    for (const pfn of [0, 2]) m.edit(pfn);
    const first = sender.split([0, 2], m.pageOf, new Set());
    expect(first.whole).toEqual([2]);
    expect(first.deltaPages).toBe(1);
    sender.remember(first.whole, m.pageOf);
    for (const pfn of [0, 2]) m.edit(pfn);
    const second = sender.split([0, 2], m.pageOf, new Set());
    expect(second.whole).toEqual([]);
    expect(second.deltaPages).toBe(2);
    // Each delta rebuilds the page from the copy the secondary holds.
    const entries = second.bodies.flatMap((b) => decodeDeltaBody(b, 4));
    expect(entries.map((e) => e.pfn)).toEqual([0, 2]);
  });

  it('a page sent as zeros and then, in a later synchronisation round, as data is unknown again', () => {
    const m = memory();
    const sender = new PageDeltaSender(4);
    sender.synchronised([0, 1], m.pageOf);
    m.edit(1);
    sender.synchronised([1], m.pageOf);
    m.edit(1);
    expect(sender.split([1], m.pageOf, new Set()).whole).toEqual([1]);
    expect(sender.split([0], m.pageOf, new Set()).unchanged).toBe(1);
  });
});
