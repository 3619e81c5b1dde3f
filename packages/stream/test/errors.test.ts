import {
  StreamDecoder,
  StreamErrorCode as C,
  decodeAll,
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeRecord,
  encodeXlHeader,
  type DecoderOptions,
  type StreamKind,
  type StreamRecord,
} from '@colo/stream';
import { describe, expect, test } from 'vitest';
import { concat, patch32, patch8, prefix, rec, streamError, u32s } from './helpers.js';
import { HVM_DOMAIN, checkpointedStream, cpuid, minimalImage, page, plainHvmImage } from './samples.js';

const libxcEnd = rec(0);
const libxlEnd = rec(0);
const sde = rec(0x10);
const pages = encodePageData([1, 2], (p) => page(p));

/** A libxl stream: prefix (64 bytes), STATIC_DATA_END (at 64), then `records` from offset 72, then libxc END, libxl END. */
function withRecords(...records: Uint8Array[]): Uint8Array {
  return concat([prefix(), sde, ...records, libxcEnd, libxlEnd]);
}

function expectError(bytes: Uint8Array, code: string, offset: number, opts: DecoderOptions = { kind: 'libxl' }, message?: RegExp) {
  const e = streamError(() => decodeAll(bytes, opts));
  expect({ code: e.code, offset: e.offset }).toEqual({ code, offset });
  expect(e.message).toContain(`${code} at byte ${offset}`);
  if (message) expect(e.message).toMatch(message);
  return e;
}

describe('headers', () => {
  const img = minimalImage();
  test('BAD_IDENT: libxl ident, libxc marker and id, xl magic', () => {
    expectError(patch8(img, 0, 0x6c), C.BAD_IDENT, 0, undefined, /LibxlFmt/);
    expectError(patch8(img, 24 + 3, 0xfe), C.BAD_IDENT, 24, undefined, /marker/);
    expectError(patch8(img, 24 + 8, 0x59), C.BAD_IDENT, 24, undefined, /XENF/);
    const xl = concat([encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(0) }), img]);
    expectError(patch8(xl, 4, 0x20), C.BAD_IDENT, 0, { kind: 'xl' });
  });

  test('BAD_VERSION: libxl version 3, libxc version 1 and 4, xl legacy stream', () => {
    expectError(patch32(img, 8, 3, true), C.BAD_VERSION, 0);
    expectError(patch32(img, 24 + 12, 1, true), C.BAD_VERSION, 24);
    expectError(patch32(img, 24 + 12, 4, true), C.BAD_VERSION, 24);
    const xl = concat([encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(0) }), img]);
    expectError(patch32(xl, 36, 1), C.BAD_VERSION, 0, { kind: 'xl' }, /legacy/);
  });

  test('BAD_OPTIONS: big-endian bits, reserved bits, reserved fields, xl byte order and unknown flags', () => {
    expectError(patch32(img, 12, 1, true), C.BAD_OPTIONS, 0, undefined, /big-endian/);
    expectError(patch32(img, 12, 4, true), C.BAD_OPTIONS, 0, undefined, /reserved/);
    expectError(patch32(img, 12, 0x10000, true), C.BAD_OPTIONS, 0);
    expectError(patch8(img, 24 + 17, 1), C.BAD_OPTIONS, 24, undefined, /big-endian/);
    expectError(patch8(img, 24 + 16, 0x80), C.BAD_OPTIONS, 24, undefined, /reserved/);
    expectError(patch8(img, 24 + 19, 1), C.BAD_OPTIONS, 24);
    expectError(patch8(img, 24 + 23, 1), C.BAD_OPTIONS, 24);
    expectError(patch8(img, 48 + 6, 1), C.BAD_OPTIONS, 48);
    const xl = concat([encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(0) }), img]);
    expectError(patch32(xl, 32, 0x04030201), C.BAD_OPTIONS, 0, { kind: 'xl' }, /byte order/);
    expectError(patch32(xl, 36, 6), C.BAD_OPTIONS, 0, { kind: 'xl' }, /mandatory/);
  });

  test('BAD_DOMAIN_HEADER: unknown guest type, page shift other than 12', () => {
    expectError(patch32(img, 48, 3), C.BAD_DOMAIN_HEADER, 48, undefined, /guest type 3/);
    expectError(patch8(img, 48 + 4, 13), C.BAD_DOMAIN_HEADER, 48, undefined, /page shift 13/);
  });
});

describe('records', () => {
  test('BAD_PADDING: a non-zero pad byte', () => {
    const emu = encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: 2, index: 0, blob: new Uint8Array(3) });
    const bytes = concat([prefix(), sde, libxcEnd, emu, libxlEnd]);
    expectError(patch8(bytes, 80 + 8 + 11, 1), C.BAD_PADDING, 80);
    // the back channel's CHECKPOINT_STATE: length 4 + 4 pad
    const back = encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 2 });
    expectError(concat([back, patch8(back, 15, 9)]), C.BAD_PADDING, 16, { kind: 'back-channel' });
  });

  test('BAD_LENGTH: fixed-length records, HVM_PARAMS, PAGE_DATA, policies', () => {
    expectError(withRecords(rec(0x0d, new Uint8Array(8))), C.BAD_LENGTH, 72, undefined, /VERIFY/);
    expectError(withRecords(rec(0x08, new Uint8Array(16))), C.BAD_LENGTH, 72, undefined, /TSC/);
    expectError(withRecords(rec(0x0a, u32s(1, 0))), C.BAD_LENGTH, 72, undefined, /HVM_PARAMS/);
    expectError(withRecords(rec(0x0a, concat([u32s(2, 0), new Uint8Array(16)]))), C.BAD_LENGTH, 72, undefined, /count 2/);
    expectError(withRecords(rec(0x09)), C.BAD_LENGTH, 72, undefined, /HVM context/);
    expectError(withRecords(rec(0x11, new Uint8Array(25))), C.BAD_LENGTH, 72);
    expectError(withRecords(rec(0x12, new Uint8Array(0))), C.BAD_LENGTH, 72);
    // PAGE_DATA whose length claims one page less than its entries need
    expectError(withRecords(patch32(pages, 4, 16 + 4096)), C.BAD_LENGTH, 72);
    expectError(withRecords(rec(0x01, u32s(5, 0, 1, 0))), C.BAD_LENGTH, 72, undefined, /5 pfn entries/);
    expectError(concat([encodeLibxlHeader(), rec(1, new Uint8Array(8))]), C.BAD_LENGTH, 16, undefined, /LIBXC_CONTEXT/);
    expectError(concat([encodeLibxlHeader(), rec(5, new Uint8Array(8))]), C.BAD_LENGTH, 16);
    expectError(rec(5, new Uint8Array(8)), C.BAD_LENGTH, 0, { kind: 'back-channel' });
    expectError(rec(0xf, new Uint8Array(12)), C.BAD_LENGTH, 0, { kind: 'back-channel' });
  });

  test('BAD_RECORD: PAGE_DATA count 0, reserved field, reserved pfn bits, invalid page types', () => {
    expectError(withRecords(rec(0x01, u32s(0, 0, 0, 0))), C.BAD_RECORD, 72, undefined, /count is 0/);
    expectError(withRecords(patch32(pages, 12, 1)), C.BAD_RECORD, 72, undefined, /reserved field/);
    for (const bit of [52, 55, 59]) {
      expectError(withRecords(patch32(pages, 16 + 8 + 4, 1 << (bit - 32))), C.BAD_RECORD, 72, undefined, /entry 1 sets reserved bits/);
    }
    for (const type of [5, 6, 7, 8]) {
      expectError(withRecords(patch32(pages, 16 + 4, type * 0x10000000)), C.BAD_RECORD, 72, undefined, new RegExp(`entry 0 has invalid page type ${type}`));
    }
  });

  test('BAD_RECORD: other fields (TSC and HVM_PARAMS reserved, emulator id, xenstore data, TOOLSTACK, dirty pfn above 2^52)', () => {
    expectError(withRecords(rec(0x08, u32s(0, 0, 0, 0, 0, 1))), C.BAD_RECORD, 72, undefined, /TSC/);
    expectError(withRecords(rec(0x0a, u32s(0, 1))), C.BAD_RECORD, 72);
    expectError(withRecords(rec(0x0b, new Uint8Array(8))), C.BAD_RECORD, 72, undefined, /TOOLSTACK/);
    const tail = (r: Uint8Array) => concat([prefix(), sde, libxcEnd, r, libxlEnd]);
    expectError(tail(rec(3, u32s(7, 0))), C.BAD_RECORD, 80, undefined, /emulator id 7/);
    expectError(tail(rec(2, concat([u32s(2, 0), new TextEncoder().encode('key\0value')]))), C.BAD_RECORD, 80, undefined, /NUL-terminated/);
    expectError(tail(rec(2, concat([u32s(2, 0), new TextEncoder().encode('a\0b\0c\0')]))), C.BAD_RECORD, 80, undefined, /3 strings/);
    expectError(rec(0xf, u32s(0, 0x100000)), C.BAD_RECORD, 0, { kind: 'back-channel' });
  });

  test('UNKNOWN_RECORD: unknown mandatory types of each layer; optional types pass', () => {
    expectError(withRecords(rec(0x13)), C.UNKNOWN_RECORD, 72, undefined, /0x13/);
    expectError(withRecords(rec(0x7fffffff)), C.UNKNOWN_RECORD, 72);
    expectError(concat([encodeLibxlHeader(), rec(6)]), C.UNKNOWN_RECORD, 16);
    expectError(rec(0x99), C.UNKNOWN_RECORD, 0, { kind: 'back-channel' });
    expect(() => decodeAll(withRecords(rec(0x80000000, new Uint8Array(3))), { kind: 'libxl' })).not.toThrow();
  });

  test('RECORD_TOO_LONG: from the 8-byte header alone, before any body byte arrives', () => {
    const d = new StreamDecoder({ kind: 'libxl' });
    d.push(prefix());
    const e = streamError(() => d.push(u32s(0x01, 0xfffffff0)));
    expect({ code: e.code, offset: e.offset }).toEqual({ code: C.RECORD_TOO_LONG, offset: 64 });
    expectError(withRecords(rec(0x09, new Uint8Array(4097))), C.RECORD_TOO_LONG, 72, { kind: 'libxl', maxRecordLength: 4096 });
    expect(() => decodeAll(withRecords(rec(0x09, new Uint8Array(4096))), { kind: 'libxl', maxRecordLength: 4096 })).not.toThrow();
    const xl = encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(0) });
    expectError(patch32(xl, 44, 0x7fffffff), C.RECORD_TOO_LONG, 0, { kind: 'xl' });
  });
});

describe('placement (MISPLACED_RECORD)', () => {
  test('a second LIBXC_CONTEXT', () => {
    expectError(concat([prefix(), sde, libxcEnd, rec(1), libxlEnd]), C.MISPLACED_RECORD, 80, undefined, /twice/);
  });

  test('CHECKPOINT_END outside a checkpoint', () => {
    expectError(concat([prefix(), sde, libxcEnd, rec(4), libxlEnd]), C.MISPLACED_RECORD, 80, undefined, /outside a checkpoint/);
    expectError(concat([encodeLibxlHeader(), rec(4)]), C.MISPLACED_RECORD, 16);
  });

  test('CHECKPOINT_STATE on the main channel anywhere but right after CHECKPOINT_END', () => {
    expectError(concat([prefix(), sde, libxcEnd, encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 }), libxlEnd]), C.MISPLACED_RECORD, 80);
    // inside a checkpoint (libxl layer between CHECKPOINT and CHECKPOINT_END)
    expectError(concat([prefix(), sde, rec(0x0e), encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 })]), C.MISPLACED_RECORD, 80);
    // a second one after CHECKPOINT_END is a libxc type 5: a PV record in an HVM stream
    const cs = encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 });
    expectError(concat([prefix(), sde, rec(0x0e), rec(4), cs, cs]), C.MISPLACED_RECORD, 104, undefined, /PV/);
  });

  test('END inside a checkpoint', () => {
    expectError(concat([prefix(), sde, rec(0x0e), libxlEnd]), C.MISPLACED_RECORD, 80, undefined, /inside checkpoint 1/);
  });

  test('STATIC_DATA_END twice, in a v2 stream; PAGE_DATA before it; policies in v2', () => {
    expectError(withRecords(sde), C.MISPLACED_RECORD, 72, undefined, /twice/);
    expectError(concat([prefix(2), sde]), C.MISPLACED_RECORD, 64, undefined, /version 2/);
    expectError(concat([prefix(), pages]), C.MISPLACED_RECORD, 64, undefined, /before STATIC_DATA_END/);
    expectError(concat([prefix(2), encodeRecord(cpuid)]), C.MISPLACED_RECORD, 64, undefined, /version 2/);
    expect(() => decodeAll(concat([prefix(2), pages, libxcEnd, libxlEnd]), { kind: 'libxl' })).not.toThrow();
  });

  test('CHECKPOINT_DIRTY_PFN_LIST on the main channel; PV records in HVM and HVM records in PV streams', () => {
    expectError(withRecords(rec(0x0f, new Uint8Array(8))), C.MISPLACED_RECORD, 72, undefined, /back channel/);
    expectError(withRecords(rec(0x07, new Uint8Array(4096))), C.MISPLACED_RECORD, 72, undefined, /PV/);
    const pv = concat([encodeLibxcImageHeader({ version: 2 }), encodeLibxcDomainHeader({ ...HVM_DOMAIN, guestType: 1 })]);
    expectError(concat([pv, rec(0x09, new Uint8Array(8))]), C.MISPLACED_RECORD, 40, { kind: 'libxc' }, /HVM/);
  });

  test('back channel: main-channel records are refused', () => {
    expectError(concat([encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 1 }), pages]), C.MISPLACED_RECORD, 16, { kind: 'back-channel' });
    expectError(rec(0), C.MISPLACED_RECORD, 0, { kind: 'back-channel' });
  });
});

describe('end of input', () => {
  const img = plainHvmImage({ pages: 3 });
  test('TRUNCATED inside a header, inside a record, and before END', () => {
    expectError(img.subarray(0, 10), C.TRUNCATED, 0, undefined, /libxl header/);
    expectError(img.subarray(0, 30), C.TRUNCATED, 24, undefined, /libxc image header/);
    expectError(img.subarray(0, 68), C.TRUNCATED, 64, undefined, /record header/);
    expectError(img.subarray(0, 100), C.TRUNCATED, 64, undefined, /X86_CPUID_POLICY/);
    expectError(img.subarray(0, 144), C.TRUNCATED, 144, undefined, /before its END/);
    expectError(img.subarray(0, img.length - 8), C.TRUNCATED, img.length - 8);
    const xl = encodeXlHeader({ mandatoryFlags: 2, optionalFlags: 0, optionalData: new Uint8Array(10) });
    expectError(xl.subarray(0, 50), C.TRUNCATED, 0, { kind: 'xl' }, /optional data/);
  });

  test('a checkpointed stream ends at a checkpoint boundary only with acceptCheckpointBoundary', () => {
    const s = checkpointedStream({ checkpoints: 2, finish: false });
    expectError(s, C.TRUNCATED, s.length, undefined, /after checkpoint 2/);
    expect(() => decodeAll(s, { kind: 'libxl', acceptCheckpointBoundary: true })).not.toThrow();
    // but not in the middle of one
    const mid = concat([prefix(), sde, rec(0x0e)]);
    expectError(mid, C.TRUNCATED, 80, { kind: 'libxl', acceptCheckpointBoundary: true }, /inside checkpoint 1/);
  });

  test('a back channel may end at any record boundary, not inside a record', () => {
    const r = encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 2 });
    expect(decodeAll(concat([r, r]), { kind: 'back-channel' })).toHaveLength(2);
    expect(decodeAll(new Uint8Array(0), { kind: 'back-channel' })).toEqual([]);
    expectError(concat([r, r.subarray(0, 12)]), C.TRUNCATED, 16, { kind: 'back-channel' });
  });

  test('TRAILING_DATA after the final END, whether in the same chunk or a later one', () => {
    expectError(concat([img, new Uint8Array(1)]), C.TRAILING_DATA, img.length);
    const d = new StreamDecoder({ kind: 'libxl' });
    d.push(img);
    expect(d.done).toBe(true);
    const e = streamError(() => d.push(new Uint8Array(8)));
    expect({ code: e.code, offset: e.offset }).toEqual({ code: C.TRAILING_DATA, offset: img.length });
  });
});

describe('decoder discipline', () => {
  test('after an error the decoder is poisoned: push() and end() rethrow the same error', () => {
    const d = new StreamDecoder({ kind: 'libxl' });
    const e = streamError(() => d.push(patch8(minimalImage(), 0, 0)));
    expect(streamError(() => d.push(new Uint8Array(1)))).toBe(e);
    expect(streamError(() => d.end())).toBe(e);
  });

  test('misuse is a StreamError too: push after end, non-byte chunks, unknown kind', () => {
    const d = new StreamDecoder({ kind: 'back-channel' });
    d.end();
    expect(streamError(() => d.push(new Uint8Array(1))).code).toBe(C.INTERNAL);
    const d2 = new StreamDecoder({ kind: 'back-channel' });
    expect(streamError(() => d2.push('abc' as unknown as Uint8Array)).code).toBe(C.INTERNAL);
    expect(streamError(() => new StreamDecoder({ kind: 'nope' as StreamKind })).code).toBe(C.INTERNAL);
  });

  test('pushInto keeps the items decoded before the error', () => {
    const d = new StreamDecoder({ kind: 'libxl' });
    const out: unknown[] = [];
    expect(() => d.pushInto(concat([prefix(), rec(0x13)]), out as never)).toThrow();
    expect(out).toHaveLength(4);
  });
});

describe('encoders refuse what the format cannot carry (UNENCODABLE)', () => {
  const bad: [string, () => unknown][] = [
    ['TOOLSTACK', () => encodeRecord({ layer: 'libxc', kind: 'TOOLSTACK', body: new Uint8Array(8) })],
    ['empty HVM_CONTEXT', () => encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: new Uint8Array(0) })],
    ['PAGE_DATA without pfns', () => encodeRecord({ layer: 'libxc', kind: 'PAGE_DATA', pfns: [], types: new Uint8Array(0), data: new Uint8Array(0) })],
    ['PAGE_DATA data size', () => encodeRecord({ layer: 'libxc', kind: 'PAGE_DATA', pfns: [1], types: new Uint8Array(1), data: new Uint8Array(10) })],
    ['pfn above 2^52', () => encodePageData([2 ** 52], (p) => page(p))],
    ['invalid page type', () => encodePageData([1], (p) => page(p), { types: [6] })],
    ['short page', () => encodePageData([1], () => new Uint8Array(100))],
    ['batch above 1024', () => encodePageData([1], (p) => page(p), { batch: 1025 })],
    ['policy size', () => encodeRecord({ layer: 'libxc', kind: 'X86_CPUID_POLICY', data: new Uint8Array(23) })],
    ['optional type below 0x80000000', () => encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: 7, body: new Uint8Array(0) })],
    ['xenstore NUL', () => encodeRecord({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: 0, index: 0, entries: [{ key: 'a\0b', value: '' }] })],
    ['emulator id', () => encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: 9, index: 0, blob: new Uint8Array(0) })],
    ['control id', () => encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: -1 })],
    ['hvm param', () => encodeRecord({ layer: 'libxc', kind: 'HVM_PARAMS', params: [{ index: -1n, value: 0n }] })],
    ['libxl big-endian', () => encodeLibxlHeader({ options: 1 })],
    ['libxc version', () => encodeLibxcImageHeader({ version: 4 })],
    ['guest type', () => encodeLibxcDomainHeader({ ...HVM_DOMAIN, guestType: 3 })],
    ['xl legacy', () => encodeXlHeader({ mandatoryFlags: 1, optionalFlags: 0, optionalData: new Uint8Array(0) })],
  ];
  for (const [name, f] of bad) {
    test(name, () => expect(streamError(f).code).toBe(C.UNENCODABLE));
  }
  test('the records above are all valid when corrected', () => {
    const ok: StreamRecord = { layer: 'libxc', kind: 'HVM_CONTEXT', blob: new Uint8Array(1) };
    expect(encodeRecord(ok)).toHaveLength(16);
  });
});
