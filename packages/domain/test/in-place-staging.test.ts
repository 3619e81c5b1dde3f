import { describe, expect, it } from 'vitest';
import { DomainErrorCode, SimulatedGuest, type MemoryStaging } from '@colo/domain';
import { recordedGuest, resp } from './helpers.js';

const PAGE = 4096;
const MEMORY = 1024 * 1024;

function staged(g: SimulatedGuest): MemoryStaging {
  const s = g.stagePagesInPlace();
  if (!s) throw new Error('expected an in-place staging');
  return s;
}

/** A guest that has run (served a SET) and is now suspended, as a COLO secondary is during a checkpoint. */
async function ranAndSuspended(): Promise<SimulatedGuest> {
  const { guest, send } = recordedGuest({ memoryBytes: MEMORY });
  expect(send(1, resp('SET', 'before', 'checkpoint'))).toBe('+OK\r\n');
  await guest.suspend();
  return guest;
}

describe('SimulatedGuest.stagePagesInPlace', () => {
  it('writes pages into the suspended guest at once; adopt keeps them, equal to writePages of the same pages', async () => {
    const g = await ranAndSuspended();
    const reference = await ranAndSuspended();
    const s = staged(g);
    const a = Buffer.alloc(3 * PAGE, 0x11);
    const b = Buffer.alloc(PAGE, 0x22);
    s.writePages([40, 41, 43], a);
    s.writePages([41], b); // sent twice: the later copy wins, as in the stream
    expect(Buffer.from(g.page(40))).toEqual(Buffer.alloc(PAGE, 0x11)); // in place before the adopt
    s.adopt();
    reference.writePages([40, 41, 43], a);
    reference.writePages([41], b);
    expect(g.memoryDigest()).toBe(reference.memoryDigest());
    g.destroy();
    reference.destroy();
  });

  it('discard puts back every overwritten byte, pages written twice included', async () => {
    const g = await ranAndSuspended();
    const before = g.memoryDigest();
    const s = staged(g);
    // Pages 0.. hold the store's superblock and tables: overwrite some, one of them twice, across runs.
    s.writePages([0, 1, 2, 7], Buffer.alloc(4 * PAGE, 0x5a));
    s.writePages([1, 3], Buffer.alloc(2 * PAGE, 0xa5));
    expect(g.memoryDigest()).not.toBe(before);
    s.discard();
    expect(g.memoryDigest()).toBe(before);
    // The store reads its pages again: the key written before the checkpoint is still there.
    await g.resume();
    expect(g.keys().map(String)).toEqual(['before']);
    g.destroy();
  });

  it('resuming the guest before adopt or discard rolls the staged pages back', async () => {
    const g = await ranAndSuspended();
    const before = g.memoryDigest();
    const s = staged(g);
    s.writePages([9, 10], Buffer.alloc(2 * PAGE, 0x33));
    await g.resume();
    expect(g.memoryDigest()).toBe(before);
    expect(() => s.writePages([9], Buffer.alloc(PAGE))).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_SPENT }));
    expect(() => s.adopt()).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_SPENT }));
    g.destroy();
  });

  it('checks pfns and data length before writing anything', async () => {
    const g = await ranAndSuspended();
    const before = g.memoryDigest();
    const s = staged(g);
    expect(() => s.writePages([0, g.pageCount], Buffer.alloc(2 * PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PFN }));
    expect(() => s.writePages([-1], Buffer.alloc(PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PFN }));
    expect(() => s.writePages([1, 2], Buffer.alloc(PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PAGE_DATA }));
    s.adopt();
    expect(g.memoryDigest()).toBe(before);
    g.destroy();
  });

  it('is offered only to a guest that is not running, one at a time; while open, other page writes are refused', async () => {
    const { guest: running, send } = recordedGuest({ memoryBytes: MEMORY });
    expect(send(1, resp('PING'))).toBe('+PONG\r\n');
    expect(running.stagePagesInPlace()).toBeUndefined();
    running.destroy();

    const g = await ranAndSuspended();
    const s = staged(g);
    expect(g.stagePagesInPlace()).toBeUndefined();
    expect(g.stageMemory()).toBeUndefined();
    expect(() => g.writePages([1], Buffer.alloc(PAGE))).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_BUSY }));
    s.adopt();
    expect(g.stagePagesInPlace()).toBeDefined();
    g.destroy();
  });

  it('reuses its undo memory across checkpoints, each rolled back to its own start', async () => {
    const g = await ranAndSuspended();
    for (let cp = 0; cp < 5; cp++) {
      const before = g.memoryDigest();
      const s = staged(g);
      // 200 pages per round in scattered runs, some written twice, over pages the store does not use.
      const pfns = Array.from({ length: 200 }, (_, i) => 10 + ((i * 7 + cp * 13) % 240));
      s.writePages(pfns, Buffer.alloc(pfns.length * PAGE, 0x40 + cp));
      if (cp % 2 === 0) {
        s.discard();
        expect(g.memoryDigest(), `checkpoint ${cp}`).toBe(before);
      } else {
        s.adopt();
        expect(Buffer.from(g.page(pfns[0]!))).toEqual(Buffer.alloc(PAGE, 0x40 + cp));
      }
    }
    g.destroy();
  });

  it('rolls back a checkpoint larger than one undo slab (1,024 pages), runs split across slabs', async () => {
    const { guest: g, send } = recordedGuest({ memoryBytes: 12 * 1024 * 1024 });
    expect(send(1, resp('SET', 'k', 'v'))).toBe('+OK\r\n');
    // Give the pages distinct contents first, so a restore from the wrong slab offset would show.
    await g.suspend();
    const fill = staged(g);
    const all = Array.from({ length: 2500 }, (_, i) => 500 + i);
    const distinct = Buffer.alloc(all.length * PAGE);
    for (let i = 0; i < all.length; i++) distinct.writeUInt32LE(i + 1, i * PAGE);
    fill.writePages(all, distinct);
    fill.adopt();
    const before = g.memoryDigest();
    const s = staged(g);
    s.writePages(all.slice(0, 1000), Buffer.alloc(1000 * PAGE, 0xee));
    s.writePages(all.slice(900, 2500), Buffer.alloc(1600 * PAGE, 0xdd)); // overlaps the first run
    s.discard();
    expect(g.memoryDigest()).toBe(before);
    g.destroy();
  });
});
