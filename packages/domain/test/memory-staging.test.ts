import { describe, expect, it } from 'vitest';
import { DomainErrorCode, SimulatedGuest } from '@colo/domain';
import { recordedGuest, resp } from './helpers.js';

const PAGE = 4096;
const MEMORY = 1024 * 1024;

/** All pages of `g`, in pfn order, and their pfns (what an initial synchronisation carries). */
function allPages(g: SimulatedGuest): { pfns: number[]; data: Buffer } {
  const pfns = Array.from({ length: g.pageCount }, (_, i) => i);
  return { pfns, data: Buffer.concat(pfns.map((p) => g.page(p))) };
}

describe('SimulatedGuest.stageMemory', () => {
  it('leaves the guest untouched until adopt, then equals writePages of the same pages', () => {
    const target = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const reference = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const before = target.memoryDigest();
    const staging = target.stageMemory();
    const a = Buffer.alloc(3 * PAGE, 0x11);
    const b = Buffer.alloc(PAGE, 0x22);
    staging.writePages([5, 6, 9], a);
    staging.writePages([6], b); // sent twice: the later copy wins, as in the stream
    expect(target.memoryDigest()).toBe(before);
    staging.adopt();
    reference.writePages([5, 6, 9], a);
    reference.writePages([6], b);
    // Pages never staged (0..4 hold the store the guest formatted) keep the guest's bytes.
    expect(target.memoryDigest()).toBe(reference.memoryDigest());
    expect(target.memoryDigest()).not.toBe(before);
    target.destroy();
    reference.destroy();
  });

  it('a discarded (or dropped) staging leaves no trace, and a spent one refuses use with STAGING_SPENT', () => {
    const g = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const before = g.memoryDigest();
    const s = g.stageMemory();
    s.writePages([1, 2], Buffer.alloc(2 * PAGE, 0x7f));
    s.discard();
    expect(g.memoryDigest()).toBe(before);
    expect(() => s.adopt()).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_SPENT }));
    expect(() => s.writePages([1], Buffer.alloc(PAGE))).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_SPENT }));
    const adopted = g.stageMemory();
    adopted.adopt();
    expect(() => adopted.adopt()).toThrow(expect.objectContaining({ code: DomainErrorCode.STAGING_SPENT }));
    expect(g.memoryDigest()).toBe(before);
    g.destroy();
  });

  it('checks pfns and data length like writePages, before writing anything', () => {
    const g = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const before = g.memoryDigest();
    const s = g.stageMemory();
    expect(() => s.writePages([0, g.pageCount], Buffer.alloc(2 * PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PFN }));
    expect(() => s.writePages([-1], Buffer.alloc(PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PFN }));
    expect(() => s.writePages([1, 2], Buffer.alloc(PAGE, 1))).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_PAGE_DATA }));
    s.adopt(); // nothing was staged by the refused writes
    expect(g.memoryDigest()).toBe(before);
    g.destroy();
  });

  it('refuses to adopt into a guest that is running after it ran (NOT_SUSPENDED), guest unchanged, staging still usable', async () => {
    const h = recordedGuest();
    expect(h.send(1, resp('SET', 'k', 'v'))).toBe('+OK\r\n');
    const before = h.guest.memoryDigest();
    const s = h.guest.stageMemory();
    s.writePages([0], Buffer.alloc(PAGE, 0xee));
    expect(() => s.adopt()).toThrow(expect.objectContaining({ code: DomainErrorCode.NOT_SUSPENDED }));
    expect(h.guest.memoryDigest()).toBe(before);
    await h.guest.suspend();
    s.adopt();
    expect(h.guest.page(0)[0]).toBe(0xee);
    h.guest.destroy();
  });

  it('the adopted memory is the memory the service runs on (store, replies, dirty log)', async () => {
    const source = recordedGuest();
    expect(source.send(1, resp('SET', 'greeting', 'hello from the primary'))).toBe('+OK\r\n');
    const h = recordedGuest({ startSuspended: true });
    const s = h.guest.stageMemory();
    const { pfns, data } = allPages(source.guest);
    s.writePages(pfns, data);
    s.adopt();
    expect(h.guest.memoryDigest()).toBe(source.guest.memoryDigest());
    h.guest.enableLogDirty();
    h.guest.readAndClearDirty();
    await h.guest.resume();
    expect(h.send(1, resp('GET', 'greeting'))).toBe('$22\r\nhello from the primary\r\n');
    expect(h.send(1, resp('SET', 'greeting', 'changed'))).toBe('+OK\r\n');
    expect(h.guest.readKey('greeting')?.toString()).toBe('changed');
    expect(h.guest.readAndClearDirty().length).toBeGreaterThan(0);
    // The writes went to the adopted memory only: the source is unchanged.
    expect(source.guest.readKey('greeting')?.toString()).toBe('hello from the primary');
    source.guest.destroy();
    h.guest.destroy();
  });
});

describe('a large staging (memory faulted in on a helper thread)', () => {
  it('holds exactly the staged pages, whatever the order of the writes relative to the helper', async () => {
    const BIG = 64 * 1024 * 1024; // PREFAULT_MIN_BYTES: the helper thread runs
    const target = new SimulatedGuest({ memoryBytes: BIG, startSuspended: true });
    const reference = new SimulatedGuest({ memoryBytes: BIG, startSuspended: true });
    const staging = target.stageMemory();
    // Writes ahead of, behind and inside the helper's progress: the last pages first, then every 7th page from
    // the start while yielding (the helper runs meanwhile), then a run across many chunks.
    const n = target.pageCount;
    const writes: { pfns: number[]; fill: number }[] = [
      { pfns: [n - 3, n - 2, n - 1], fill: 0xa1 },
      ...Array.from({ length: 40 }, (_, i) => ({ pfns: [i * 7 * 41], fill: 0x10 + i })),
      { pfns: Array.from({ length: 3000 }, (_, i) => 5000 + i), fill: 0x5c },
    ];
    for (const w of writes) {
      const data = Buffer.alloc(w.pfns.length * PAGE, w.fill);
      staging.writePages(w.pfns, data);
      reference.writePages(w.pfns, data);
      await new Promise((r) => setImmediate(r));
    }
    staging.adopt();
    expect(target.memoryDigest()).toBe(reference.memoryDigest());
    target.destroy();
    reference.destroy();
  });

  it('discarded while the helper runs: the guest is untouched', () => {
    const g = new SimulatedGuest({ memoryBytes: 64 * 1024 * 1024, startSuspended: true });
    const before = g.memoryDigest();
    const s = g.stageMemory();
    s.writePages([100], Buffer.alloc(PAGE, 9));
    s.discard();
    expect(g.memoryDigest()).toBe(before);
    g.destroy();
  });
});
