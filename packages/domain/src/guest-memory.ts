import { PAGE_SHIFT, PAGE_SIZE } from '@colo/stream';
import { copyInto } from './copy.js';
import { DirtyBitmap } from './dirty-bitmap.js';

/**
 * Guest RAM: one Buffer of `pageCount` 4 KiB pages plus the dirty log. Every write the *guest* makes goes
 * through the methods below, which mark the touched pages dirty while log-dirty mode is on; the hypervisor's
 * own writes (restore, checkpoint apply) use `hypervisorWrite` and mark nothing, as in Xen.
 */
export class GuestMemory {
  readonly pageCount: number;
  /** Replaced (never resized) only by `adopt`; hold `this` (the GuestMemory), not the buffer. */
  bytes: Buffer;
  /** Word view over the same bytes, for the 4-byte-aligned fields of the service's data structures. */
  words: Uint32Array;
  readonly dirty: DirtyBitmap;
  /** Whether guest writes are being logged (Xen: log-dirty mode on). */
  logging = false;

  constructor(pageCount: number) {
    this.pageCount = pageCount;
    // Buffer.alloc: a dedicated buffer (never a slice of Node's shared pool) whose zeroes come from calloc, i.e.
    // from the kernel's zero pages, faulted in as the guest first touches them. Filling it by hand (as before)
    // cost 0.9-2.8 s for a 1 GiB secondary before a single page arrived; the bytes are zero either way.
    this.bytes = Buffer.alloc(pageCount * PAGE_SIZE);
    this.words = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, this.bytes.length >>> 2);
    this.dirty = new DirtyBitmap(pageCount);
  }

  get byteLength(): number {
    return this.bytes.length;
  }

  u32(offset: number): number {
    return this.words[offset >>> 2]!;
  }

  setU32(offset: number, value: number): void {
    this.words[offset >>> 2] = value;
    if (this.logging) this.dirty.mark(offset >>> PAGE_SHIFT);
  }

  /** Copies `src` into guest memory at `offset`. */
  write(offset: number, src: Uint8Array, srcStart = 0, srcEnd = src.length): void {
    const n = srcEnd - srcStart;
    if (n <= 0) return;
    if (n < 32) {
      // Short keys and values dominate; a byte loop beats the native copy's call overhead for them.
      const b = this.bytes;
      for (let i = 0; i < n; i++) b[offset + i] = src[srcStart + i]!;
    } else {
      copyInto(this.bytes, offset, src.subarray(srcStart, srcEnd));
    }
    if (this.logging) this.dirty.markRange(offset >>> PAGE_SHIFT, (offset + n - 1) >>> PAGE_SHIFT);
  }

  /** Writes an ASCII string (decimal numbers written back by INCR). */
  writeLatin1(offset: number, s: string): void {
    if (s.length === 0) return;
    this.bytes.write(s, offset, 'latin1');
    if (this.logging) this.dirty.markRange(offset >>> PAGE_SHIFT, (offset + s.length - 1) >>> PAGE_SHIFT);
  }

  /** Moves bytes inside guest memory (a value relocated to a larger block). */
  copyWithin(target: number, start: number, end: number): void {
    if (end <= start) return;
    this.bytes.copyWithin(target, start, end);
    if (this.logging) this.dirty.markRange(target >>> PAGE_SHIFT, (target + end - start - 1) >>> PAGE_SHIFT);
  }

  fillZero(offset: number, length: number): void {
    if (length <= 0) return;
    this.bytes.fill(0, offset, offset + length);
    if (this.logging) this.dirty.markRange(offset >>> PAGE_SHIFT, (offset + length - 1) >>> PAGE_SHIFT);
  }

  /** A page as a view, not a copy. */
  page(pfn: number): Uint8Array {
    const start = pfn * PAGE_SIZE;
    return this.bytes.subarray(start, start + PAGE_SIZE);
  }

  /**
   * The hypervisor's write (restore, checkpoint apply) of `pages` consecutive pages from `pfn` on, taken from
   * data[dataOffset...]: one copy for the run, not logged.
   */
  hypervisorWrite(pfn: number, data: Uint8Array, dataOffset: number, pages = 1): void {
    copyInto(this.bytes, pfn * PAGE_SIZE, data.subarray(dataOffset, dataOffset + pages * PAGE_SIZE));
  }

  /**
   * Takes `staged` (same size) as the guest's memory: pages marked in `stagedPages` keep the staged bytes, every
   * other page is copied over from the current memory, so the result is what writing the staged pages would
   * have given, without copying them a second time. Not logged (a hypervisor write).
   */
  adopt(staged: Buffer, stagedPages: DirtyBitmap): void {
    if (staged.length !== this.bytes.length) throw new RangeError(`staged memory is ${staged.length} bytes, the guest's ${this.bytes.length}`);
    const old = this.bytes;
    let pfn = 0;
    while (pfn < this.pageCount) {
      if (stagedPages.isDirty(pfn)) {
        pfn++;
        continue;
      }
      // One copy per run of pages that were not staged.
      const first = pfn;
      while (pfn < this.pageCount && !stagedPages.isDirty(pfn)) pfn++;
      staged.set(old.subarray(first * PAGE_SIZE, pfn * PAGE_SIZE), first * PAGE_SIZE);
    }
    this.bytes = staged;
    this.words = new Uint32Array(staged.buffer, staged.byteOffset, staged.length >>> 2);
  }
}
