import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeBarrier,
  encodeDelivered,
  encodeInput,
  encodeMessage,
  encodeOutput,
  ProxyError,
  ProxyErrorCode,
  ProxyFrameDecoder,
  type ProxyMessage,
} from '../../src/proxy/index.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProxyError);
    return (e as ProxyError).code;
  }
  throw new Error('expected a ProxyError');
}

const message: fc.Arbitrary<ProxyMessage> = fc.oneof(
  fc.record({
    type: fc.constant('input' as const),
    event: fc.oneof(
      fc.record({ seq: fc.maxSafeNat(), conn: fc.nat({ max: 0xffffffff }), kind: fc.constantFrom('open' as const, 'close' as const) }),
      fc.record({ seq: fc.maxSafeNat(), conn: fc.nat({ max: 0xffffffff }), kind: fc.constant('data' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
    ),
  }),
  fc.record({ type: fc.constant('output' as const), generation: fc.maxSafeNat(), conn: fc.nat({ max: 0xffffffff }), bytes: fc.option(fc.uint8Array({ minLength: 1, maxLength: 64 }), { nil: null }) }),
  fc.record({ type: fc.constant('barrier' as const), checkpoint: fc.maxSafeNat(), lastSeq: fc.maxSafeNat() }),
  fc.record({ type: fc.constant('delivered' as const), lastSeq: fc.maxSafeNat() }),
);

describe('proxy link wire format', () => {
  it('lays out INPUT, OUTPUT, BARRIER and DELIVERED as documented (u32 length, u8 type, little-endian fields)', () => {
    expect(hex(encodeInput({ seq: 258, conn: 7, kind: 'data', bytes: fromHex('2a2b') }))).toBe(
      '10000000' + '01' + '0201000000000000' + '07000000' + '02' + '2a2b',
    );
    expect(hex(encodeInput({ seq: 1, conn: 2, kind: 'close' }))).toBe('0e000000' + '01' + '0100000000000000' + '02000000' + '03');
    expect(hex(encodeOutput(3, 9, null))).toBe('0e000000' + '02' + '0300000000000000' + '09000000' + '01');
    expect(hex(encodeOutput(3, 9, fromHex('ff')))).toBe('0f000000' + '02' + '0300000000000000' + '09000000' + '00' + 'ff');
    expect(hex(encodeBarrier(4, 100))).toBe('11000000' + '03' + '0400000000000000' + '6400000000000000');
    expect(hex(encodeDelivered(0x10203))).toBe('09000000' + '04' + '0302010000000000');
  });

  it('decodes any sequence of messages, however the byte stream is split', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (msgs, cuts) => {
        const bytes = Buffer.concat(msgs.map((m) => encodeMessage(m)));
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const d = new ProxyFrameDecoder();
        const out: ProxyMessage[] = [];
        let at = 0;
        for (const p of [...points, bytes.length]) {
          out.push(...d.push(bytes.subarray(at, p)));
          at = p;
        }
        d.end();
        expect(out.map(normalise)).toEqual(msgs.map(normalise));
        expect(d.bufferedBytes).toBe(0);
      }),
    );
  });

  it('splits output larger than the frame limit into several frames of the same connection', () => {
    const big = new Uint8Array(1000).map((_, i) => i & 0xff);
    const bytes = encodeOutput(2, 5, big, 300);
    const msgs = new ProxyFrameDecoder({ maxFrameBytes: 300 }).push(bytes);
    expect(msgs.length).toBe(4);
    const joined = Buffer.concat(msgs.map((m) => (m.type === 'output' && m.bytes ? m.bytes : new Uint8Array(0))));
    expect(Buffer.compare(joined, big)).toBe(0);
    expect(msgs.every((m) => m.type === 'output' && m.conn === 5 && m.generation === 2)).toBe(true);
  });

  it('refuses an oversize frame from its header alone, before buffering the body', () => {
    const d = new ProxyFrameDecoder({ maxFrameBytes: 100 });
    expect(codeOf(() => d.push(fromHex('65000000 02')))).toBe(ProxyErrorCode.FRAME_TOO_LARGE);
    // The decoder stays failed: the framing is lost.
    expect(codeOf(() => d.push(encodeBarrier(1, 1)))).toBe(ProxyErrorCode.FRAME_TOO_LARGE);
  });

  it('gives typed errors for unknown types, bad kinds and flags, short bodies, huge numbers and truncation', () => {
    const cases: [string, string][] = [
      ['01000000 09', ProxyErrorCode.UNKNOWN_MESSAGE],
      ['00000000', ProxyErrorCode.MALFORMED_FRAME],
      ['0e000000 01 0100000000000000 02000000 04', ProxyErrorCode.MALFORMED_FRAME], // kind 4
      ['0f000000 01 0100000000000000 02000000 01 00', ProxyErrorCode.MALFORMED_FRAME], // open with data
      ['0e000000 02 0100000000000000 02000000 02', ProxyErrorCode.MALFORMED_FRAME], // flag 2
      ['0f000000 02 0100000000000000 02000000 01 00', ProxyErrorCode.MALFORMED_FRAME], // close with bytes
      ['05000000 01 01000000', ProxyErrorCode.MALFORMED_FRAME], // short INPUT
      ['10000000 03 0100000000000000 0100000000000000', ProxyErrorCode.MALFORMED_FRAME], // short BARRIER
      ['0a000000 04 0100000000000000 00', ProxyErrorCode.MALFORMED_FRAME], // long DELIVERED
      ['09000000 04 0000000000002000', ProxyErrorCode.MALFORMED_FRAME], // DELIVERED 2^53
      ['11000000 03 ffffffffffffffff 0100000000000000', ProxyErrorCode.MALFORMED_FRAME], // 2^64-1
    ];
    for (const [bytes, code] of cases) expect([bytes, codeOf(() => new ProxyFrameDecoder().push(fromHex(bytes)))]).toEqual([bytes, code]);
    const d = new ProxyFrameDecoder();
    expect(d.push(encodeBarrier(1, 2).subarray(0, 7))).toEqual([]);
    expect(codeOf(() => d.end())).toBe(ProxyErrorCode.TRUNCATED_FRAME);
  });

  it('accepts u64 fields up to 2^53-1 and refuses 2^53 (the largest exact JS integer is the limit)', () => {
    // 2^53-1 = 0x001fffffffffffff, 2^53 = 0x0020000000000000 (little-endian below)
    const max = new ProxyFrameDecoder().push(fromHex('11000000 03 ffffffffffff1f00 0100000000000000'));
    expect(max).toEqual([{ type: 'barrier', checkpoint: Number.MAX_SAFE_INTEGER, lastSeq: 1 }]);
    expect(codeOf(() => new ProxyFrameDecoder().push(fromHex('11000000 03 0000000000002000 0100000000000000')))).toBe(ProxyErrorCode.MALFORMED_FRAME);
    expect(codeOf(() => new ProxyFrameDecoder().push(fromHex('11000000 03 0100000000000000 0000000000002000')))).toBe(ProxyErrorCode.MALFORMED_FRAME);
  });

  it('never crashes on random bytes: messages or a ProxyError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        const d = new ProxyFrameDecoder({ maxFrameBytes: 1 << 16 });
        try {
          d.push(junk);
          d.end();
        } catch (e) {
          expect(e).toBeInstanceOf(ProxyError);
        }
      }),
    );
  });

  it('refuses to encode numbers the wire cannot carry', () => {
    expect(() => encodeBarrier(-1, 0)).toThrow(RangeError);
    expect(() => encodeInput({ seq: 1, conn: 2 ** 32, kind: 'open' })).toThrow(RangeError);
  });
});

/** Compares byte arrays by content whatever their backing buffer. */
function normalise(m: ProxyMessage): unknown {
  if (m.type === 'input') return { ...m, event: { ...m.event, bytes: m.event.bytes ? hex(m.event.bytes) : undefined } };
  if (m.type === 'output') return { ...m, bytes: m.bytes ? hex(m.bytes) : null };
  return m;
}
