/**
 * Copying into guest memory that may be a SharedArrayBuffer.
 *
 * Why: a secondary's guest memory is shared memory whenever it was faulted in ahead by a helper thread (a
 * preallocated or prefaulted staging, adopted by the guest after the initial synchronisation). V8 copies into
 * or out of shared memory with relaxed atomic word moves, and falls back to one byte at a time when the source
 * and the destination do not share their alignment modulo the word (8 bytes). Pages arrive at whatever offset
 * the stream puts them (a 1 MiB WebSocket frame has a 10-byte header), so most of a synchronisation was copied
 * byte by byte: 1 GiB took 1.16 s in the staging's writes, 0.8-1.0 GB/s, against 6 GB/s for an aligned copy
 * into the same memory and 11 GB/s into unshared memory (docs/performance.md, eleventh round). A misaligned
 * copy is therefore made in two steps through an aligned scratch buffer of unshared memory: ~5 GB/s.
 */

/** V8's atomic word: source and destination addresses must agree modulo this for the word-wise copy. */
const WORD = 8;

/** Below this a byte-wise copy costs less than the detour. */
const SCRATCH_MIN_BYTES = 512;

/** Small enough to stay in cache between its two copies. */
const SCRATCH_BYTES = 256 * 1024;

let scratch: Uint8Array | undefined;

/** `dst.set(src, offset)`, without V8's byte-wise path for misaligned copies into or out of shared memory. */
export function copyInto(dst: Uint8Array, offset: number, src: Uint8Array): void {
  const n = src.byteLength;
  if (
    n < SCRATCH_MIN_BYTES ||
    (dst.byteOffset + offset - src.byteOffset) % WORD === 0 ||
    !(dst.buffer instanceof SharedArrayBuffer || src.buffer instanceof SharedArrayBuffer)
  ) {
    dst.set(src, offset);
    return;
  }
  // As dst.set: nothing written if it does not fit (the pieces below would otherwise write a prefix first).
  if (!(offset >= 0 && offset + n <= dst.length)) throw new RangeError(`copyInto: ${n} bytes at offset ${offset} do not fit in ${dst.length}`);
  // Each piece goes into the scratch at the destination's alignment: the first step is between unshared memories
  // (a plain memmove, any alignment; the sources here are socket reads, arenas and client buffers), the second
  // is word-wise.
  scratch ??= new Uint8Array(SCRATCH_BYTES);
  const shift = (dst.byteOffset + offset) % WORD;
  for (let at = 0; at < n; ) {
    const k = Math.min(SCRATCH_BYTES - shift, n - at);
    const piece = scratch.subarray(shift, shift + k);
    piece.set(src.subarray(at, at + k));
    dst.set(piece, offset + at);
    at += k;
  }
}
