import type { GuestMemory } from './guest-memory.js';
import { SB, SIZE_CLASSES, UNIT } from './layout.js';

/**
 * The heap allocator, with all of its state in guest pages (superblock fields + the free blocks themselves).
 * Segregated power-of-two size classes (32 B .. 4 GiB): a class's free list is a LIFO stack threaded through
 * the first word of each free block; when it is empty the block is carved from the never-used tail (bump
 * pointer). No splitting, no coalescing: simple, O(1), and the same sequence of requests always yields the
 * same addresses, which is what keeps two replicas byte-identical. The price is internal fragmentation (up to
 * half a block) and free blocks that only their own class reuses; FLUSHALL resets the heap.
 */

/** The size class of a block holding `bytes` bytes, or -1 if no class is that large. */
export function sizeClass(bytes: number): number {
  let c = 0;
  let size = 32;
  while (size < bytes) {
    size *= 2;
    c++;
  }
  return c < SIZE_CLASSES ? c : -1;
}

export function classBytes(c: number): number {
  return 32 * 2 ** c;
}

/** Allocates a block of class `c`; returns its unit address, or 0 when memory is full. */
export function allocBlock(mem: GuestMemory, c: number): number {
  const headField = SB.FREE_HEADS + c * 4;
  const head = mem.u32(headField);
  if (head !== 0) {
    mem.setU32(headField, mem.u32(head * UNIT));
    return head;
  }
  const units = classBytes(c) / UNIT;
  const bump = mem.u32(SB.BUMP_UNIT);
  if (bump + units > mem.u32(SB.HEAP_END_UNIT)) return 0;
  mem.setU32(SB.BUMP_UNIT, bump + units);
  return bump;
}

export function freeBlock(mem: GuestMemory, unit: number, c: number): void {
  const headField = SB.FREE_HEADS + c * 4;
  mem.setU32(unit * UNIT, mem.u32(headField));
  mem.setU32(headField, unit);
}
