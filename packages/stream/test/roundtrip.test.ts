import {
  LibxcType,
  PAGE_SIZE,
  PageType,
  StreamDecoder,
  StreamWriter,
  XL_MAGIC,
  decodeAll,
  decodeStream,
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeRecord,
  encodeXlHeader,
  type StreamItem,
  type StreamRecord,
} from '@colo/stream';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { canon, decodeChunked, prefix } from './helpers.js';
import { HVM_DOMAIN, backChannel, checkpointedStream, concat, cpuid, emulatorContext, hvmContext, hvmParams, msr, page, plainHvmImage, range, tsc } from './samples.js';

function records(items: StreamItem[]): StreamRecord[] {
  return items.flatMap((i) => (i.item === 'record' ? [i.record] : []));
}

describe('headers', () => {
  test('libxl header: 16 bytes, big-endian, as Xen writes it', () => {
    expect(Buffer.from(encodeLibxlHeader()).toString('hex')).toBe('4c6962786c466d74' + '00000002' + '00000000');
    expect(Buffer.from(encodeLibxlHeader({ options: 2 })).toString('hex')).toBe('4c6962786c466d74' + '00000002' + '00000002');
  });

  test('libxc image header: 24 bytes, version 3 by default', () => {
    expect(Buffer.from(encodeLibxcImageHeader()).toString('hex')).toBe('ffffffffffffffff' + '58454e46' + '00000003' + '0000' + '0000' + '00000000');
    expect(encodeLibxcImageHeader({ version: 2 })[15]).toBe(2);
  });

  test('libxc domain header: 16 bytes, little-endian', () => {
    expect(Buffer.from(encodeLibxcDomainHeader(HVM_DOMAIN)).toString('hex')).toBe('02000000' + '0c00' + '0000' + '04000000' + '11000000');
  });

  test('xl header: magic, byte order, flags, optional data', () => {
    const config = new TextEncoder().encode('{"c_info":{}}');
    const h = encodeXlHeader({ mandatoryFlags: 3, optionalFlags: 0, optionalData: config });
    expect(new TextDecoder().decode(h.subarray(0, 32))).toBe(XL_MAGIC);
    expect(Buffer.from(h.subarray(32, 48)).toString('hex')).toBe('04030201' + '03000000' + '00000000' + config.length.toString(16).padStart(2, '0') + '000000');
    const items = decodeAll(concat([h, encodeLibxlHeader(), encodeRecord({ layer: 'libxl', kind: 'END' })]), { kind: 'xl' });
    expect(items[0]).toEqual({ item: 'xl-header', offset: 0, header: { mandatoryFlags: 3, optionalFlags: 0, optionalData: config } });
    expect(items[1]).toEqual({ item: 'libxl-header', offset: h.length, header: { options: 0 } });
  });

  test('every header decodes to what was encoded, with its offset', () => {
    const bytes = concat([prefix(2), encodeRecord({ layer: 'libxc', kind: 'END' }), encodeRecord({ layer: 'libxl', kind: 'END' })]);
    expect(decodeAll(bytes, { kind: 'libxl' })).toEqual([
      { item: 'libxl-header', offset: 0, header: { options: 0 } },
      { item: 'record', offset: 16, record: { layer: 'libxl', kind: 'LIBXC_CONTEXT' } },
      { item: 'libxc-image-header', offset: 24, header: { version: 2, options: 0 } },
      { item: 'libxc-domain-header', offset: 48, header: HVM_DOMAIN },
      { item: 'record', offset: 64, record: { layer: 'libxc', kind: 'END' } },
      { item: 'record', offset: 72, record: { layer: 'libxl', kind: 'END' } },
    ]);
  });
});

describe('records round trip', () => {
  const libxc: StreamRecord[] = [
    cpuid,
    msr,
    { layer: 'libxc', kind: 'STATIC_DATA_END' },
    {
      layer: 'libxc',
      kind: 'PAGE_DATA',
      pfns: [0, 7, 2 ** 52 - 1, 9, 10, 11],
      types: Uint8Array.from([PageType.NORMAL, PageType.L1TAB, PageType.L4TAB_PINNED, PageType.XTAB, PageType.BROKEN, PageType.XALLOC]),
      data: concat([page(0), page(7), page(2 ** 40)]),
    },
    { layer: 'libxc', kind: 'VERIFY' },
    tsc,
    hvmContext,
    hvmParams,
    { layer: 'libxc', kind: 'HVM_PARAMS', params: [] },
    { layer: 'libxc', kind: 'OPTIONAL', type: 0xfffffffe, body: new Uint8Array([9, 9, 9, 9, 9]) },
    { layer: 'libxc', kind: 'CHECKPOINT' },
  ];
  const libxl: StreamRecord[] = [
    { layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 1, index: 3, entries: [{ key: 'physmap/0/start_addr', value: 'f0000000' }, { key: 'k', value: '' }] },
    { layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 0, index: 0, entries: [] },
    emulatorContext,
    { layer: 'libxl', kind: 'OPTIONAL', type: 0x80000000, body: new Uint8Array(0) },
    { layer: 'libxl', kind: 'CHECKPOINT_END' },
    { layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 },
  ];

  test('every main-channel record type, in a checkpointed stream', () => {
    const bytes = concat([prefix(), ...libxc.map(encodeRecord), ...libxl.map(encodeRecord), encodeRecord({ layer: 'libxc', kind: 'END' }), encodeRecord({ layer: 'libxl', kind: 'END' })]);
    const got = records(decodeAll(bytes, { kind: 'libxl' }));
    expect(got).toEqual([{ layer: 'libxl', kind: 'LIBXC_CONTEXT' }, ...libxc, ...libxl, { layer: 'libxc', kind: 'END' }, { layer: 'libxl', kind: 'END' }]);
  });

  test('every back-channel record type', () => {
    const recs: StreamRecord[] = [
      { layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 2 },
      { layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: [1, 2 ** 52 - 1, 0] },
      { layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: [] },
      { layer: 'libxl', kind: 'OPTIONAL', type: 0x80001234, body: new Uint8Array([1]) },
    ];
    expect(records(decodeAll(concat(recs.map(encodeRecord)), { kind: 'back-channel' }))).toEqual(recs);
  });

  test('CHECKPOINT_STATE is written with length 4 and 4 bytes of zero padding, as Xen does', () => {
    expect(Buffer.from(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 3 })).toString('hex')).toBe('05000000' + '04000000' + '03000000' + '00000000');
  });

  test('PV records round trip in a PV stream', () => {
    const pv = { ...HVM_DOMAIN, guestType: 1 };
    const recs: StreamRecord[] = [
      { layer: 'libxc', kind: 'X86_PV_INFO', body: Uint8Array.from([8, 4, 0, 0, 0, 0, 0, 0]) },
      { layer: 'libxc', kind: 'X86_PV_P2M_FRAMES', body: new Uint8Array(16).fill(3) },
      { layer: 'libxc', kind: 'X86_PV_VCPU_BASIC', body: Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 5]) },
      { layer: 'libxc', kind: 'X86_PV_VCPU_EXTENDED', body: new Uint8Array(8) },
      { layer: 'libxc', kind: 'X86_PV_VCPU_XSAVE', body: new Uint8Array(24) },
      { layer: 'libxc', kind: 'X86_PV_VCPU_MSRS', body: new Uint8Array(16) },
      { layer: 'libxc', kind: 'SHARED_INFO', data: page(1) },
      { layer: 'libxc', kind: 'END' },
    ];
    const bytes = concat([encodeLibxcImageHeader({ version: 2 }), encodeLibxcDomainHeader(pv), ...recs.map(encodeRecord)]);
    expect(records(decodeAll(bytes, { kind: 'libxc' }))).toEqual(recs);
  });

  test('records start 8-aligned: every encoded record is a multiple of 8 bytes', () => {
    for (const r of [...libxc, ...libxl]) expect(encodeRecord(r).length % 8).toBe(0);
  });
});

describe('page data', () => {
  test('encodePageData: ceil(n/1024) records of at most 1024 pfns, each page fetched once', () => {
    const calls: number[] = [];
    const pfns = range(100, 2500);
    const bytes = encodePageData(pfns, (pfn) => {
      calls.push(pfn);
      return page(pfn);
    });
    expect(calls).toEqual(pfns);
    const recs = records(decodeAll(concat([prefix(2), bytes, encodeRecord({ layer: 'libxc', kind: 'END' }), encodeRecord({ layer: 'libxl', kind: 'END' })]), { kind: 'libxl' }));
    const pd = recs.filter((r) => r.kind === 'PAGE_DATA');
    expect(pd.map((r) => r.pfns.length)).toEqual([1024, 1024, 452]);
    expect(pd.flatMap((r) => r.pfns)).toEqual(pfns);
    expect(bytes.length).toBe(3 * 16 + 8 * 2500 + PAGE_SIZE * 2500);
    const r = pd[1]!;
    expect(r.data.subarray(5 * PAGE_SIZE, 6 * PAGE_SIZE)).toEqual(page(100 + 1024 + 5));
  });

  test('pages of types without data are not fetched and carry no bytes', () => {
    const fetched: number[] = [];
    const bytes = encodePageData([1, 2, 3], (p) => (fetched.push(p), page(p)), { types: [PageType.XTAB, PageType.NORMAL, PageType.XALLOC] });
    expect(fetched).toEqual([2]);
    expect(bytes.length).toBe(16 + 24 + PAGE_SIZE);
  });

  test('decoded page data is a view of the pushed chunk (no per-page copy) when the record arrived whole', () => {
    const img = plainHvmImage({ pages: 100 });
    const d = new StreamDecoder({ kind: 'libxl' });
    const items = d.push(img);
    const pd = records(items).find((r) => r.kind === 'PAGE_DATA')!;
    expect(pd.kind === 'PAGE_DATA' && pd.data.buffer).toBe(img.buffer);
  });

  test('pages are still a view when the record header and entry table came in an earlier chunk', () => {
    const head = prefix(2);
    const pd = encodePageData([3, 4, 5], (p) => page(p));
    const tail = concat([encodeRecord({ layer: 'libxc', kind: 'END' }), encodeRecord({ layer: 'libxl', kind: 'END' })]);
    const pagesChunk = pd.slice(16 + 24); // exactly the three pages, in a chunk of their own
    const d = new StreamDecoder({ kind: 'libxl' });
    d.push(concat([head, pd.subarray(0, 16 + 24)]));
    const [item] = d.push(pagesChunk);
    expect(item?.item === 'record' && item.record.kind === 'PAGE_DATA' && item.record.data.buffer).toBe(pagesChunk.buffer);
    d.push(tail);
    expect(d.end()).toEqual([]);
  });

  test('a record straddling chunks is copied once and decodes the same', () => {
    const img = plainHvmImage({ pages: 100 });
    const whole = decodeAll(img, { kind: 'libxl' });
    expect(canon(decodeChunked(img, [4096 + 13], { kind: 'libxl' }))).toBe(canon(whole));
  });
});

describe('StreamWriter', () => {
  test('chunks are at most chunkSize, concatenate to the same bytes as the encoders, and take() clears them', () => {
    const w = new StreamWriter({ chunkSize: 10_000 });
    w.libxlHeader().record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }).libxcHeaders(HVM_DOMAIN);
    const first = w.take();
    expect(first.reduce((n, c) => n + c.length, 0)).toBe(64);
    expect(w.byteLength).toBe(0);
    w.pageData(range(0, 30), (p) => page(p));
    expect(w.byteLength).toBe(16 + 30 * 8 + 30 * PAGE_SIZE);
    const chunks = w.take();
    expect(chunks.every((c) => c.length <= 10_000)).toBe(true);
    expect(concat(chunks)).toEqual(encodePageData(range(0, 30), (p) => page(p)));
    expect(w.take()).toEqual([]);
    expect(w.offset).toBe(64 + 16 + 30 * 8 + 30 * PAGE_SIZE);
  });

  test('a taken chunk is never written again', () => {
    const w = new StreamWriter({ chunkSize: 64 });
    w.record({ layer: 'libxc', kind: 'END' });
    const [c] = w.take();
    const snapshot = c!.slice();
    w.record(hvmContext).record(hvmContext);
    w.take();
    expect(c).toEqual(snapshot);
  });
});

test('StreamWriter.recycle: buffers are reused only once every chunk cut from them is back (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ pages: fc.integer({ min: 0, max: 40 }), recycleOld: fc.boolean(), blob: fc.integer({ min: 1, max: 5000 }) }), { minLength: 1, maxLength: 25 }),
      (steps) => {
        const w = new StreamWriter({ chunkSize: 16 * 1024, maxFreeChunks: 2 });
        const live: { chunk: Uint8Array; copy: Uint8Array }[] = [];
        const all: Uint8Array[] = [];
        const expected: Uint8Array[] = [];
        steps.forEach((st, k) => {
          const r: StreamRecord = { layer: 'libxc', kind: 'HVM_CONTEXT', blob: new Uint8Array(st.blob).fill(k + 1) };
          w.record(r);
          expected.push(encodeRecord(r));
          if (st.pages > 0) {
            w.pageData(range(k * 50, st.pages), (p) => page(p, k));
            expected.push(encodePageData(range(k * 50, st.pages), (p) => page(p, k)));
          }
          for (const chunk of w.take()) {
            live.push({ chunk, copy: chunk.slice() });
            all.push(chunk.slice());
          }
          // Chunks not yet recycled must be untouched by everything written since.
          for (const l of live) expect(Buffer.from(l.chunk.buffer, l.chunk.byteOffset, l.chunk.length).equals(l.copy)).toBe(true);
          if (st.recycleOld) for (const l of live.splice(0, Math.ceil(live.length / 2))) w.recycle(l.chunk);
        });
        expect(Buffer.from(concat(all)).equals(concat(expected))).toBe(true);
      },
    ),
    { numRuns: 80 },
  );
});

test('StreamWriter.recycle lets a steady sender run on a few buffers', () => {
  const w = new StreamWriter({ chunkSize: 64 * 1024 });
  const buffers = new Set<ArrayBufferLike>();
  for (let i = 0; i < 200; i++) {
    w.pageData(range(i * 16, 16), (p) => page(p));
    for (const c of w.take()) {
      buffers.add(c.buffer);
      w.recycle(c);
    }
  }
  expect(buffers.size).toBeLessThanOrEqual(4); // 200 x 64 KiB written
});

describe('any chunking yields the same items', () => {
  const streams: [string, Uint8Array, 'libxl' | 'back-channel'][] = [
    ['plain HVM image', plainHvmImage({ pages: 40 }), 'libxl'],
    ['COLO checkpointed main channel', checkpointedStream({ checkpoints: 3 }), 'libxl'],
    ['back channel', backChannel(3), 'back-channel'],
  ];
  for (const [name, bytes, kind] of streams) {
    test(`${name}: random splits (property)`, () => {
      const whole = canon(decodeAll(bytes, { kind }));
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 20 }), (sizes) => {
          expect(canon(decodeChunked(bytes, sizes, { kind }))).toBe(whole);
        }),
        { numRuns: 60 },
      );
    });
  }

  test('1-byte chunks', () => {
    const bytes = checkpointedStream({ checkpoints: 2 });
    expect(canon(decodeChunked(bytes, [1], { kind: 'libxl' }))).toBe(canon(decodeAll(bytes, { kind: 'libxl' })));
  });

  test('decodeStream over an async source yields the same items', async () => {
    const bytes = checkpointedStream({ checkpoints: 2 });
    async function* source() {
      for (let i = 0; i < bytes.length; i += 999) yield bytes.subarray(i, i + 999);
    }
    const got: StreamItem[] = [];
    for await (const item of decodeStream(source(), { kind: 'libxl' })) got.push(item);
    expect(canon(got)).toBe(canon(decodeAll(bytes, { kind: 'libxl' })));
  });
});

/** Random valid libxc records for an HVM v3 stream (after STATIC_DATA_END). */
const pageRecord = fc
  .array(fc.record({ pfn: fc.integer({ min: 0, max: 2 ** 52 - 1 }), type: fc.constantFrom(0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15) }), { minLength: 1, maxLength: 12 })
  .map((entries): StreamRecord => {
    const withData = entries.filter((e) => e.type <= 4 || (e.type >= 9 && e.type <= 12));
    return { layer: 'libxc', kind: 'PAGE_DATA', pfns: entries.map((e) => e.pfn), types: Uint8Array.from(entries.map((e) => e.type)), data: concat(withData.map((e) => page(e.pfn % 1000))) };
  });
const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });
const libxcRecord: fc.Arbitrary<StreamRecord> = fc.oneof(
  pageRecord,
  bytesArb(1, 300).map((blob): StreamRecord => ({ layer: 'libxc', kind: 'HVM_CONTEXT', blob })),
  fc.array(fc.record({ index: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }), { maxLength: 5 }).map((params): StreamRecord => ({ layer: 'libxc', kind: 'HVM_PARAMS', params })),
  fc.record({ mode: fc.nat(), khz: fc.nat(), nsec: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), incarnation: fc.nat() }).map((t): StreamRecord => ({ layer: 'libxc', kind: 'X86_TSC_INFO', ...t })),
  fc.integer({ min: 1, max: 4 }).map((n): StreamRecord => ({ layer: 'libxc', kind: 'X86_MSR_POLICY', data: new Uint8Array(16 * n).fill(n) })),
  fc.constant<StreamRecord>({ layer: 'libxc', kind: 'VERIFY' }),
  fc.tuple(fc.integer({ min: 0x80000000, max: 0xffffffff }), bytesArb(0, 40)).map(([type, body]): StreamRecord => ({ layer: 'libxc', kind: 'OPTIONAL', type, body })),
);
const libxlRecord: fc.Arbitrary<StreamRecord> = fc.oneof(
  fc.tuple(fc.constantFrom(0, 1, 2), fc.nat(), fc.array(fc.record({ key: fc.string({ unit: 'grapheme-ascii' }), value: fc.string() }), { maxLength: 4 })).map(
    ([emulatorId, index, entries]): StreamRecord => ({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId, index, entries: entries.map((e) => ({ key: e.key.replace(/\0/g, ''), value: e.value.replace(/\0/g, '') })) }),
  ),
  fc.tuple(fc.constantFrom(0, 1, 2), fc.nat(), bytesArb(0, 100)).map(([emulatorId, index, blob]): StreamRecord => ({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId, index, blob })),
  fc.tuple(fc.integer({ min: 0x80000000, max: 0xffffffff }), bytesArb(0, 20)).map(([type, body]): StreamRecord => ({ layer: 'libxl', kind: 'OPTIONAL', type, body })),
);

/** A random stream: plain or checkpointed, as the records it should decode to. */
export const randomStream = fc
  .record({
    initial: fc.array(libxcRecord, { maxLength: 6 }),
    checkpoints: fc.array(fc.record({ libxc: fc.array(libxcRecord, { maxLength: 4 }), libxl: fc.array(libxlRecord, { maxLength: 3 }), colo: fc.boolean() }), { maxLength: 3 }),
    tail: fc.array(libxlRecord, { maxLength: 3 }),
  })
  .map(({ initial, checkpoints, tail }) => {
    const recs: StreamRecord[] = [{ layer: 'libxl', kind: 'LIBXC_CONTEXT' }, cpuid, { layer: 'libxc', kind: 'STATIC_DATA_END' }, ...initial];
    for (const c of checkpoints) {
      recs.push(...c.libxc, { layer: 'libxc', kind: 'CHECKPOINT' }, ...c.libxl, { layer: 'libxl', kind: 'CHECKPOINT_END' });
      if (c.colo) recs.push({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 });
    }
    recs.push({ layer: 'libxc', kind: 'END' }, ...tail, { layer: 'libxl', kind: 'END' });
    const w = new StreamWriter({ chunkSize: 4096 });
    w.libxlHeader();
    recs.forEach((r, i) => {
      w.record(r);
      if (i === 0) w.libxcHeaders(HVM_DOMAIN);
    });
    return { recs, bytes: concat(w.take()) };
  });

test('random streams round trip whatever the chunking (property)', () => {
  fc.assert(
    fc.property(randomStream, fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }), ({ recs, bytes }, sizes) => {
      const items = decodeChunked(bytes, sizes, { kind: 'libxl' });
      expect(canon(records(items))).toBe(canon(recs));
      expect(items.filter((i) => i.item !== 'record').map((i) => i.item)).toEqual(['libxl-header', 'libxc-image-header', 'libxc-domain-header']);
    }),
    { numRuns: 150 },
  );
});

test('type numbers mean what their layer says: libxl 5 after CHECKPOINT_END is CHECKPOINT_STATE, libxc 5 in a PV stream is a vcpu record', () => {
  expect(LibxcType.X86_PV_VCPU_EXTENDED).toBe(5);
  const recs = records(decodeAll(checkpointedStream({ checkpoints: 2 }), { kind: 'libxl' }));
  expect(recs.filter((r) => r.kind === 'CHECKPOINT_STATE')).toHaveLength(1);
});
