import { describe, expect, test } from 'vitest';
import { Prefaulter } from '../src/prefault.js';

const MiB = 1024 * 1024;

/** Writes `value` over [start, end) after claiming it, as the memory's owner must. */
function ownerWrite(p: Prefaulter, bytes: Uint8Array, start: number, end: number, value: number): void {
  p.claim(start, end);
  bytes.fill(value, start, end);
}

/** Every byte is either what the owner last wrote there or zero. */
function expectOnly(bytes: Uint8Array, written: Uint8Array): void {
  for (let i = 0; i < bytes.length; i += 4096) {
    // Page-sized steps with a full compare on mismatch keep 64 MiB checks fast.
    const a = bytes.subarray(i, i + 4096);
    const b = written.subarray(i, i + 4096);
    if (Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) !== 0) {
      const at = a.findIndex((x, j) => x !== b[j]);
      throw new Error(`byte ${i + at}: ${a[at]} in memory, ${b[at]} written by the owner (the helper wrote over the owner?)`);
    }
  }
}

describe('Prefaulter: the helper never writes where the owner has claimed', () => {
  test.each([
    { name: 'ascending writes, as an initial synchronisation (1 MiB chunks)', chunk: MiB, scattered: false },
    { name: 'ascending writes (64 KiB chunks: many hand-overs)', chunk: 64 * 1024, scattered: false },
    { name: 'scattered writes across the memory', chunk: MiB, scattered: true },
  ])('$name', async ({ chunk, scattered }) => {
    const size = 48 * MiB;
    const p = new Prefaulter(new SharedArrayBuffer(size), chunk);
    const bytes = new Uint8Array(p.memory);
    const written = new Uint8Array(size);
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    let at = 0;
    for (let i = 0; i < 400; i++) {
      const len = 4096 * (1 + rand(96));
      const start = scattered ? 4096 * rand(size / 4096 - 96) : at;
      if (start + len > size) break;
      const value = 1 + rand(255);
      ownerWrite(p, bytes, start, start + len, value);
      written.fill(value, start, start + len);
      at = start + len;
      // Let the helper run between some writes so the two meet at every kind of chunk state.
      if (i % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    await p.helperDone;
    expectOnly(bytes, written);
    const counts = p.chunkCounts();
    // Every chunk ended faulted by the helper or taken by the owner: none left half done.
    expect(counts.faultedByHelper + counts.owners).toBe(Math.ceil(size / chunk));
  });

  test('a claim on the chunk the helper is faulting waits for it, then the owner\'s bytes stay', async () => {
    for (let round = 0; round < 3; round++) {
      // Large chunks: faulting one takes milliseconds, long enough to catch the helper inside it.
      const chunk = 32 * MiB;
      const p = new Prefaulter(new SharedArrayBuffer(3 * chunk), chunk);
      const bytes = new Uint8Array(p.memory);
      const deadline = Date.now() + 5000;
      while (p.chunkCounts().faulting === 0 && p.chunkCounts().faultedByHelper === 0) {
        if (Date.now() > deadline) throw new Error('the helper never started');
        await new Promise((r) => setImmediate(r));
      }
      // The helper started on chunk 1 (chunk 0 is the owner's next): write all of chunk 1 now.
      ownerWrite(p, bytes, chunk, 2 * chunk, 9);
      await p.helperDone;
      const written = new Uint8Array(3 * chunk);
      written.fill(9, chunk, 2 * chunk);
      expectOnly(bytes, written);
    }
  });

  test('stop(): the untouched chunks become the owner\'s, a chunk in flight is waited for by claim', async () => {
    const size = 32 * MiB;
    const p = new Prefaulter(new SharedArrayBuffer(size), MiB);
    const bytes = new Uint8Array(p.memory);
    p.stop();
    ownerWrite(p, bytes, 0, size, 7);
    await p.helperDone;
    expectOnly(bytes, new Uint8Array(size).fill(7));
    expect(p.chunkCounts()).toMatchObject({ faulting: 0 });
    expect(p.chunkCounts().faultedByHelper + p.chunkCounts().owners).toBe(32);
  });

  test('the helper faults ahead of an owner that is slower than it, and leaves the owner its next chunk', async () => {
    const size = 32 * MiB;
    const p = new Prefaulter(new SharedArrayBuffer(size), MiB);
    await p.helperDone; // the owner has written nothing yet: the helper goes through all of it
    const counts = p.chunkCounts();
    // Chunk 0 is the owner's next chunk (front 0): left to it; all the others the helper faulted.
    expect(counts).toEqual({ faultedByHelper: 31, faulting: 0, owners: 1 });
    const bytes = new Uint8Array(p.memory);
    ownerWrite(p, bytes, 0, size, 3);
    expectOnly(bytes, new Uint8Array(size).fill(3));
  });
});
