import { PAGE_SIZE } from '@colo/stream';
import type { GuestMemory } from './guest-memory.js';

/**
 * Where the simulated guest keeps things in its pages. Everything the key-value service needs lives here, so a
 * copy of the pages (a checkpoint, a save image) is a copy of the service:
 *
 *   pfn 0                      superblock: the fields below (little-endian u32s)
 *   pfn 1 .. B                 background region: the "guest kernel timer" pages dirtied by background activity;
 *                              nothing reads them back, so they never affect output
 *   pfn B+1 .. H-1             bucket array: bucketCount u32 heads of the hash chains (0 = empty)
 *   pfn H .. pageCount-1       heap: entry blocks and free blocks, addressed in 16-byte units
 */
export const SB = {
  MAGIC: 0,
  VERSION: 4,
  PAGE_COUNT: 8,
  BG_FIRST_PFN: 12,
  BG_PAGE_COUNT: 16,
  BUCKETS_OFFSET: 20,
  BUCKET_COUNT: 24,
  HEAP_START_UNIT: 28,
  HEAP_END_UNIT: 32,
  /** Next never-used heap unit (bump allocation when a size class's free list is empty). */
  BUMP_UNIT: 36,
  KEY_COUNT: 40,
  /** Heap units held by live entries (INFO's used_memory). */
  USED_UNITS: 44,
  /** The guest clock as last read by TIME (seconds, microseconds): the one page TIME writes. */
  CLOCK_SECONDS: 48,
  CLOCK_MICROS: 52,
  /** Free-list heads, one u32 per size class (class c holds blocks of 32 << c bytes). */
  FREE_HEADS: 64,
} as const;

export const STORE_MAGIC = 0x53564b43; // "CKVS"
export const STORE_VERSION = 1;
/** Heap addresses are in units of this many bytes, so a u32 reaches 64 GiB. */
export const UNIT = 16;
/** Size classes: 32 B .. 4 GiB. */
export const SIZE_CLASSES = 28;
export const MIN_PAGES = 16;

export interface Layout {
  pageCount: number;
  bgFirstPfn: number;
  bgPageCount: number;
  bucketsOffset: number;
  bucketCount: number;
  heapStartUnit: number;
  heapEndUnit: number;
}

/** The layout for a guest of `pageCount` pages: deterministic, so equal-sized guests lay out identically. */
export function planLayout(pageCount: number): Layout {
  // About 1/16 of memory (at most 1024 pages, 4 MiB) for background activity: enough to study checkpoint size.
  const bgPageCount = Math.max(1, Math.min(1024, Math.floor(pageCount / 16)));
  // Four buckets per page of memory, a power of two: chains stay short until memory is nearly full of small keys.
  let bucketCount = 64;
  while (bucketCount < pageCount * 4) bucketCount *= 2;
  const bucketPages = Math.ceil((bucketCount * 4) / PAGE_SIZE);
  const bgFirstPfn = 1;
  const bucketsPfn = bgFirstPfn + bgPageCount;
  const heapPfn = bucketsPfn + bucketPages;
  return {
    pageCount,
    bgFirstPfn,
    bgPageCount,
    bucketsOffset: bucketsPfn * PAGE_SIZE,
    bucketCount,
    heapStartUnit: (heapPfn * PAGE_SIZE) / UNIT,
    heapEndUnit: (pageCount * PAGE_SIZE) / UNIT,
  };
}

/** Writes an empty store: superblock, empty buckets, empty free lists. */
export function formatStore(mem: GuestMemory, layout: Layout): void {
  mem.fillZero(0, PAGE_SIZE);
  mem.fillZero(layout.bucketsOffset, layout.bucketCount * 4);
  mem.setU32(SB.MAGIC, STORE_MAGIC);
  mem.setU32(SB.VERSION, STORE_VERSION);
  mem.setU32(SB.PAGE_COUNT, layout.pageCount);
  mem.setU32(SB.BG_FIRST_PFN, layout.bgFirstPfn);
  mem.setU32(SB.BG_PAGE_COUNT, layout.bgPageCount);
  mem.setU32(SB.BUCKETS_OFFSET, layout.bucketsOffset);
  mem.setU32(SB.BUCKET_COUNT, layout.bucketCount);
  mem.setU32(SB.HEAP_START_UNIT, layout.heapStartUnit);
  mem.setU32(SB.HEAP_END_UNIT, layout.heapEndUnit);
  mem.setU32(SB.BUMP_UNIT, layout.heapStartUnit);
}

/** Reads the layout back from the superblock (after a restore the pages are the truth), or undefined if unformatted. */
export function readLayout(mem: GuestMemory): Layout | undefined {
  if (mem.u32(SB.MAGIC) !== STORE_MAGIC || mem.u32(SB.VERSION) !== STORE_VERSION) return undefined;
  const layout: Layout = {
    pageCount: mem.u32(SB.PAGE_COUNT),
    bgFirstPfn: mem.u32(SB.BG_FIRST_PFN),
    bgPageCount: mem.u32(SB.BG_PAGE_COUNT),
    bucketsOffset: mem.u32(SB.BUCKETS_OFFSET),
    bucketCount: mem.u32(SB.BUCKET_COUNT),
    heapStartUnit: mem.u32(SB.HEAP_START_UNIT),
    heapEndUnit: mem.u32(SB.HEAP_END_UNIT),
  };
  const expected = planLayout(mem.pageCount);
  for (const k of Object.keys(expected) as (keyof Layout)[]) if (layout[k] !== expected[k]) return undefined;
  return layout;
}
