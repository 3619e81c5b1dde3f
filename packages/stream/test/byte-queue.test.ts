import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ByteQueue } from '@colo/stream';

/** A stream of n distinct-looking bytes, pushed in chunks cut at `cuts`. */
function filled(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}

const op = fc.oneof(
  fc.record({ kind: fc.constant('take' as const), n: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ kind: fc.constant('pieces' as const), n: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ kind: fc.constant('peek' as const), n: fc.integer({ min: 0, max: 300 }) }),
);

describe('ByteQueue', () => {
  it('hands out the pushed bytes in order, whatever the chunk cuts and the mix of take, takePieces and peek', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 30 }), fc.array(op, { maxLength: 60 }), (cuts, ops) => {
        const bytes = filled(cuts.reduce((a, b) => a + b, 0));
        const q = new ByteQueue();
        let pushed = 0;
        for (const c of cuts) {
          q.push(bytes.subarray(pushed, pushed + c));
          pushed += c;
        }
        let consumed = 0;
        for (const { kind, n: asked } of ops) {
          const n = Math.min(asked, q.length);
          const want = Buffer.from(bytes.subarray(consumed, consumed + n));
          if (kind === 'peek') {
            expect(Buffer.from(q.peek(n)).equals(want)).toBe(true);
            continue; // nothing consumed
          }
          const got = kind === 'take' ? q.take(n) : Buffer.concat(q.takePieces(n));
          expect(Buffer.from(got).equals(want)).toBe(true);
          consumed += n;
          expect(q.length).toBe(bytes.length - consumed);
        }
        // What is left is the rest of the stream.
        expect(Buffer.concat(q.takePieces(q.length)).equals(Buffer.from(bytes.subarray(consumed)))).toBe(true);
        expect(q.length).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('peeks and takes pieces as views of the pushed chunks, copying only a peek that straddles two', () => {
    const bytes = filled(64);
    const q = new ByteQueue();
    q.push(bytes.subarray(0, 10));
    q.push(bytes.subarray(10, 64));
    expect(q.peek(8).buffer).toBe(bytes.buffer); // inside the first chunk: a view
    const straddling = q.peek(16);
    expect(straddling.buffer).not.toBe(bytes.buffer); // across the two: a copy
    expect(Buffer.from(straddling).equals(Buffer.from(bytes.subarray(0, 16)))).toBe(true);
    const pieces = q.takePieces(16);
    expect(pieces.map((p) => p.length)).toEqual([10, 6]);
    for (const p of pieces) expect(p.buffer).toBe(bytes.buffer);
    expect(q.peek(8).buffer).toBe(bytes.buffer);
  });
});
