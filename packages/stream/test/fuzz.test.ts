/**
 * Mutation fuzzing: whatever is done to a valid stream (truncation, bit flips, rewritten length fields, junk),
 * decoding yields items or a StreamError with a known code, never another exception, never a hang, and never
 * a buffer sized from an absurd length field.
 */
import { StreamDecoder, StreamError, StreamErrorCode, decodeAll, type StreamKind } from '@colo/stream';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { backChannel, checkpointedStream, plainHvmImage } from './samples.js';

const codes = new Set<string>(Object.values(StreamErrorCode));

/** Decodes in chunks of `sizes` (cycled); returns 'ok' or the StreamError's code; rethrows anything else. */
function outcome(bytes: Uint8Array, kind: StreamKind, sizes: number[], maxRecordLength?: number): string {
  const d = new StreamDecoder({ kind, maxRecordLength });
  try {
    let at = 0;
    let i = 0;
    while (at < bytes.length) {
      const n = sizes[i++ % sizes.length]!;
      d.push(bytes.subarray(at, at + n));
      at += n;
    }
    d.end();
    return 'ok';
  } catch (e) {
    if (!(e instanceof StreamError)) throw e;
    expect(codes.has(e.code)).toBe(true);
    expect(e.code).not.toBe(StreamErrorCode.INTERNAL); // INTERNAL from a well-used decoder would be a bug
    expect(e.offset).toBeGreaterThanOrEqual(0);
    expect(e.offset).toBeLessThanOrEqual(bytes.length);
    return e.code;
  }
}

/** Offsets of every record header in a valid stream (where length fields live). */
function recordOffsets(bytes: Uint8Array, kind: StreamKind): number[] {
  return decodeAll(bytes, { kind }).flatMap((i) => (i.item === 'record' ? [i.offset] : []));
}

const samples: [string, Uint8Array, StreamKind][] = [
  ['plain image', plainHvmImage({ pages: 20 }), 'libxl'],
  ['checkpointed stream', checkpointedStream({ checkpoints: 2 }), 'libxl'],
  ['back channel', backChannel(3), 'back-channel'],
];

const mutation = (len: number, heads: number[]) =>
  fc.oneof(
    fc.record({ op: fc.constant('truncate' as const), at: fc.integer({ min: 0, max: len - 1 }) }),
    fc.record({ op: fc.constant('flip' as const), at: fc.integer({ min: 0, max: len - 1 }), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({
      op: fc.constant('length' as const),
      head: fc.constantFrom(...heads),
      value: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0xffffffff, 0x80000000, 128 * 1024 * 1024 + 1)),
    }),
    fc.record({ op: fc.constant('type' as const), head: fc.constantFrom(...heads), value: fc.oneof(fc.integer({ min: 0, max: 0x14 }), fc.integer({ min: 0, max: 0xffffffff })) }),
    fc.record({ op: fc.constant('junk' as const), at: fc.integer({ min: 0, max: len }), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }),
  );

type Mutation = { op: 'truncate'; at: number } | { op: 'flip'; at: number; bit: number } | { op: 'length' | 'type'; head: number; value: number } | { op: 'junk'; at: number; bytes: Uint8Array };

function apply(bytes: Uint8Array, m: Mutation): Uint8Array {
  switch (m.op) {
    case 'truncate':
      return bytes.subarray(0, m.at);
    case 'flip': {
      if (m.at >= bytes.length) return bytes;
      const b = bytes.slice();
      b[m.at]! ^= 1 << m.bit;
      return b;
    }
    case 'length':
    case 'type': {
      if (m.head + 8 > bytes.length) return bytes;
      const b = bytes.slice();
      new DataView(b.buffer).setUint32(m.head + (m.op === 'length' ? 4 : 0), m.value >>> 0, true);
      return b;
    }
    case 'junk': {
      const at = Math.min(m.at, bytes.length);
      const b = new Uint8Array(bytes.length + m.bytes.length);
      b.set(bytes.subarray(0, at));
      b.set(m.bytes, at);
      b.set(bytes.subarray(at), at + m.bytes.length);
      return b;
    }
  }
}

describe('mutated streams yield items or a StreamError', () => {
  for (const [name, bytes, kind] of samples) {
    test(name, () => {
      const heads = recordOffsets(bytes, kind);
      fc.assert(
        fc.property(fc.array(mutation(bytes.length, heads), { minLength: 1, maxLength: 3 }), fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 5 }), (ms, sizes) => {
          const mutated = ms.reduce<Uint8Array>((b, m) => (b.length > 0 ? apply(b, m as Mutation) : b), bytes);
          outcome(mutated, kind, sizes);
        }),
        { numRuns: 400 },
      );
    });
  }

  test('random bytes of any kind', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom<StreamKind>('xl', 'libxl', 'libxc', 'back-channel'), fc.integer({ min: 1, max: 50 }), (bytes, kind, size) => {
        outcome(bytes, kind, [size]);
      }),
      { numRuns: 500 },
    );
  });

  test('every truncation of a checkpointed stream is TRUNCATED (or ok at a checkpoint boundary when allowed)', () => {
    const bytes = checkpointedStream({ checkpoints: 2 });
    const step = 7; // every 7th prefix keeps this fast while crossing every header and record
    for (let n = 0; n < bytes.length; n += step) expect(outcome(bytes.subarray(0, n), 'libxl', [4096])).toBe(StreamErrorCode.TRUNCATED);
  });

  test('absurd lengths are refused from the record header, before anything is allocated for them', () => {
    const bytes = plainHvmImage({ pages: 2 });
    for (const head of recordOffsets(bytes, 'libxl')) {
      const b = bytes.slice();
      new DataView(b.buffer).setUint32(head + 4, 0xfffffff8, true);
      const d = new StreamDecoder({ kind: 'libxl' });
      // Only the bytes up to the end of that record header: the refusal cannot wait for the body.
      let err: unknown;
      try {
        d.push(b.subarray(0, head + 8));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StreamError);
      expect((err as StreamError).code).toBe(StreamErrorCode.RECORD_TOO_LONG);
      expect((err as StreamError).offset).toBe(head);
    }
  });

  test('a length under the limit but beyond the input waits, then ends TRUNCATED: no buffer is made for it', () => {
    const bytes = plainHvmImage({ pages: 2 });
    const b = bytes.slice();
    new DataView(b.buffer).setUint32(64 + 4, 24 * 4_000_000, true); // the CPUID policy claims 96 MB
    const before = process.memoryUsage().arrayBuffers;
    expect(outcome(b, 'libxl', [1024])).toBe(StreamErrorCode.TRUNCATED);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(50 * 1024 * 1024);
  });
});
