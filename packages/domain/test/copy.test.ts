import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { copyInto } from '../src/copy.js';

describe('copyInto', () => {
  it('copies exactly what dst.set would, into shared and unshared memory, at any alignment and length', () => {
    const source = new Uint8Array(700 * 1024).map((_, i) => (i * 7 + (i >> 8)) & 0xff);
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.nat({ max: 64 }),
        fc.nat({ max: 64 }),
        // Across the 512-byte threshold and the 256 KiB scratch (a copy in several pieces).
        fc.oneof(fc.nat({ max: 2048 }), fc.integer({ min: 255 * 1024, max: 600 * 1024 })),
        fc.nat({ max: 31 }),
        (shared, srcOffset, dstOffset, length, viewOffset) => {
          const size = 640 * 1024;
          const backing = shared ? new SharedArrayBuffer(size + 32) : new ArrayBuffer(size + 32);
          // A destination view that itself starts at an odd place in its buffer, as a subarray would.
          const dst = new Uint8Array(backing, viewOffset, size).fill(0xee);
          const expected = new Uint8Array(size).fill(0xee);
          const src = source.subarray(srcOffset, srcOffset + length);
          const at = Math.min(dstOffset, size - length);
          copyInto(dst, at, src);
          expected.set(src, at);
          expect(Buffer.compare(Buffer.from(dst.buffer, dst.byteOffset, dst.length), Buffer.from(expected))).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws as dst.set does when the source does not fit, and writes nothing', () => {
    const dst = new Uint8Array(new SharedArrayBuffer(4096));
    expect(() => copyInto(dst, 4000, new Uint8Array(1000).fill(1))).toThrow(RangeError);
    expect(() => copyInto(dst, 4095, new Uint8Array(2).fill(1))).toThrow(RangeError);
    // Misaligned and long enough to go through the scratch buffer.
    expect(() => copyInto(dst, 3001, new Uint8Array(2000).fill(1))).toThrow(RangeError);
    expect(() => copyInto(dst, -3, new Uint8Array(2000).fill(1))).toThrow(RangeError);
    expect(dst.every((b) => b === 0)).toBe(true);
  });
});
