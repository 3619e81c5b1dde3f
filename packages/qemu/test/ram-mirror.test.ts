import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { changedPages, QemuErrorCode, RamMirror, unionPfns } from '@colo/qemu';

/**
 * The RAM mirror on plain files standing for a guest's RAM file: every way of scanning (on this thread, split
 * across worker threads) finds exactly the pages that differ, as the reference comparison of two whole copies
 * does, and leaves the mirror equal to the file.
 */
const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'colo-ram-mirror-'));
const mirrors: RamMirror[] = [];
afterAll(() => {
  for (const m of mirrors) m.close();
  rmSync(dir, { recursive: true, force: true });
});

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('RamMirror', () => {
  it.each([1, 2, 3, 4])('finds exactly the changed pages with %i thread(s), on random edits, and takes them', async (threads) => {
    const pages = 1000 + threads; // not a multiple of the thread count or of a chunk
    const file = join(dir, `ram-${threads}`);
    let ram = randomBytes(pages * PAGE);
    writeFileSync(file, ram);
    const m = new RamMirror(pages * PAGE, { threads });
    mirrors.push(m);
    m.load(file);
    expect(m.pages.equals(ram)).toBe(true);
    const rnd = seeded(threads * 7919);
    for (let round = 0; round < 12; round++) {
      const before = Buffer.from(ram);
      // Edits: none, one byte, the first and last byte of the file, runs of pages, everything.
      const kind = round % 6;
      if (kind === 1) ram[Math.floor(rnd() * ram.length)]! ^= 0xff;
      if (kind === 2) {
        ram[0]! ^= 1;
        ram[ram.length - 1]! ^= 1;
      }
      if (kind === 3 || kind === 4) for (let k = 0; k < 50; k++) ram[Math.floor(rnd() * ram.length)]! ^= 1 + Math.floor(rnd() * 255);
      if (kind === 5) ram = randomBytes(pages * PAGE);
      writeFileSync(file, ram);
      const expected = changedPages(before, ram);
      expect(m.scanSync(file, false)).toEqual(expected);
      const got = round % 2 === 0 ? await m.scan(file) : m.scanSync(file, true);
      expect(got).toEqual(expected);
      expect(m.pages.equals(ram)).toBe(true);
      expect(await m.scan(file)).toEqual(new Uint32Array(0));
    }
  });

  it('a RAM file that is gone or too short is QEMU_EXITED, on this thread and in the workers', async () => {
    const file = join(dir, 'short');
    writeFileSync(file, randomBytes(64 * PAGE));
    const m = new RamMirror(64 * PAGE, { threads: 2 });
    mirrors.push(m);
    m.load(file);
    truncateSync(file, 10 * PAGE);
    expect(() => m.scanSync(file, true)).toThrow(expect.objectContaining({ code: QemuErrorCode.EXITED }));
    await expect(m.scan(file)).rejects.toMatchObject({ code: QemuErrorCode.EXITED });
    rmSync(file);
    expect(() => m.load(file)).toThrow(expect.objectContaining({ code: QemuErrorCode.EXITED }));
    await expect(m.scan(file)).rejects.toMatchObject({ code: QemuErrorCode.EXITED });
    // The workers survive a failed range: the next scan of a good file works.
    writeFileSync(file, m.pages);
    expect(await m.scan(file)).toEqual(new Uint32Array(0));
    expect(() => new RamMirror(100)).toThrow(expect.objectContaining({ code: QemuErrorCode.BAD_CONFIG }));
  });

  it('a mirror closed while its threads scan (its domain destroyed mid-checkpoint) ends the scan with QEMU_EXITED, not a hang', async () => {
    const file = join(dir, 'closing');
    writeFileSync(file, randomBytes(4096 * PAGE));
    const m = new RamMirror(4096 * PAGE, { threads: 2 });
    mirrors.push(m);
    const scanning = m.scan(file);
    m.close();
    await expect(scanning).rejects.toMatchObject({ code: QemuErrorCode.EXITED });
    await expect(m.scan(file)).rejects.toMatchObject({ code: QemuErrorCode.BAD_CONFIG });
  });

  it('unionPfns merges ascending lists without repeats', () => {
    const u = (a: number[], b: number[]) => Array.from(unionPfns(Uint32Array.from(a), Uint32Array.from(b)));
    expect(u([], [])).toEqual([]);
    expect(u([1, 5], [])).toEqual([1, 5]);
    expect(u([], [2])).toEqual([2]);
    expect(u([1, 3, 5], [2, 3, 6])).toEqual([1, 2, 3, 5, 6]);
    expect(u([0, 4294967295], [0])).toEqual([0, 4294967295]);
  });
});
