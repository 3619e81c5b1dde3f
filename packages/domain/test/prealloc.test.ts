import { describe, expect, it } from 'vitest';
import { DomainErrorCode, SimulatedGuest, preallocateMemory } from '@colo/domain';
import { GuestMemoryStaging } from '../src/memory-staging.js';

const PAGE = 4096;
const MiB = 1024 * 1024;

describe('preallocateMemory', () => {
  it('returns zeroed memory of the size asked for, every page of it resident', async () => {
    const size = 128 * MiB;
    const before = process.memoryUsage().rss;
    const { memory, seconds } = await preallocateMemory(size);
    const grown = process.memoryUsage().rss - before;
    expect(memory.byteLength).toBe(size);
    expect(seconds).toBeGreaterThan(0);
    // Untouched memory costs no resident pages: growth by (nearly) the whole size means the pages were faulted in.
    expect(grown).toBeGreaterThan(0.9 * size);
    const bytes = new Uint8Array(memory);
    for (let i = 0; i < size; i += 64 * 1024) expect(bytes[i]).toBe(0);
  });

  it('refuses a size that is not a positive multiple of a page (BAD_OPTIONS)', async () => {
    for (const bad of [0, -4096, 4097, 1.5 * PAGE, Number.NaN]) {
      await expect(preallocateMemory(bad)).rejects.toMatchObject({ code: DomainErrorCode.BAD_OPTIONS });
    }
  });
});

describe('a guest created with preallocated memory', () => {
  const MEMORY = 4 * MiB;

  it('writes its first staging into that memory and runs on it once adopted; later stagings take fresh memory', async () => {
    const { memory } = await preallocateMemory(MEMORY);
    // Whatever the preallocated memory holds is not looked at: pages never staged come from the guest.
    new Uint8Array(memory).fill(0xdd);
    const target = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true, preallocated: memory });
    const reference = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const staging = target.stageMemory();
    expect((staging as GuestMemoryStaging).preallocated).toBe(true);
    const data = Buffer.alloc(3 * PAGE, 0x42);
    staging.writePages([10, 11, 500], data);
    reference.writePages([10, 11, 500], data);
    staging.adopt();
    expect(target.memoryDigest()).toBe(reference.memoryDigest());
    // The guest's memory is now the preallocated buffer itself.
    const view = new Uint8Array(memory);
    expect(view[500 * PAGE]).toBe(0x42);
    expect(Buffer.from(view.subarray(0, PAGE)).equals(target.page(0))).toBe(true);
    const second = target.stageMemory();
    expect((second as GuestMemoryStaging).preallocated).toBe(false);
    second.discard();
    target.destroy();
    reference.destroy();
  });

  it('refuses preallocated memory of another size (BAD_OPTIONS)', async () => {
    const { memory } = await preallocateMemory(2 * MiB);
    expect(() => new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true, preallocated: memory })).toThrow(
      expect.objectContaining({ code: DomainErrorCode.BAD_OPTIONS }),
    );
    expect(() => new GuestMemoryStaging(MEMORY / PAGE, () => {}, { preallocated: memory })).toThrow(expect.objectContaining({ code: DomainErrorCode.BAD_OPTIONS }));
  });
});
