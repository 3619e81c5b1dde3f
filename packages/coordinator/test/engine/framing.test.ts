import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeLibxcDomainHeader, encodeLibxcImageHeader, encodeLibxlHeader, encodePageData, encodeRecord, GuestType } from '@colo/stream';
import { CoordinatorErrorCode, RecordFramer, unionAscending } from '../internals.js';

/** A realistic main stream: headers, pages, a checkpoint's tail, COLO's NEW_CHECKPOINT, another checkpoint. */
function mainStream(): { bytes: Uint8Array; units: number[] } {
  const page = (pfn: number) => new Uint8Array(4096).fill(pfn & 0xff);
  const parts: Uint8Array[] = [
    encodeLibxlHeader(),
    encodeRecord({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }),
    Buffer.concat([encodeLibxcImageHeader(), encodeLibxcDomainHeader({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 })]),
    encodeRecord({ layer: 'libxc', kind: 'STATIC_DATA_END' }),
    encodePageData([1, 2, 3], page),
    encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: new Uint8Array([1, 2, 3, 4, 5]) }),
    encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
    encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_END' }),
    encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: 0 }),
    encodePageData([9], page),
  ];
  return { bytes: Buffer.concat(parts), units: parts.map((p) => p.length) };
}

describe('RecordFramer', () => {
  it('cuts the same units whatever the frame boundaries', () => {
    const { bytes, units } = mainStream();
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 40 }), (cuts) => {
        const framer = new RecordFramer({ firstHeaderBytes: 16, maxRecordLength: 1 << 20 });
        const got: number[] = [];
        const pieces: Uint8Array[] = [];
        const take = (us: ReturnType<RecordFramer['push']>) => {
          for (const u of us) {
            got.push(u.length);
            expect(u.pieces.reduce((n, p) => n + p.length, 0)).toBe(u.length);
            pieces.push(...u.pieces);
          }
        };
        let at = 0;
        for (const c of cuts) {
          if (at >= bytes.length) break;
          take(framer.push(bytes.subarray(at, at + c)));
          at += c;
        }
        take(framer.push(bytes.subarray(at)));
        expect(got).toEqual(units);
        // The units' pieces are the stream, in order, and views of what was pushed (nothing copied).
        expect(Buffer.compare(Buffer.concat(pieces), Buffer.from(bytes))).toBe(0);
        for (const p of pieces) expect(p.buffer).toBe(bytes.buffer);
        expect(framer.pendingBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses an oversize record from its 8-byte header, before buffering it', () => {
    const framer = new RecordFramer({ firstHeaderBytes: 0, maxRecordLength: 1024, libxcStarted: true });
    const head = new Uint8Array(8);
    new DataView(head.buffer).setUint32(4, 1 << 30, true);
    expect(() => framer.push(head)).toThrow(expect.objectContaining({ code: CoordinatorErrorCode.PEER_STREAM_ERROR }));
  });
});

describe('unionAscending', () => {
  it('is the sorted set union of two ascending lists', () => {
    const asc = fc.uniqueArray(fc.nat(5000)).map((a) => a.sort((x, y) => x - y));
    fc.assert(
      fc.property(asc, asc, (a, b) => {
        expect(unionAscending(a, b)).toEqual([...new Set([...a, ...b])].sort((x, y) => x - y));
      }),
    );
  });
});
