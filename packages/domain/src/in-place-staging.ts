import { PAGE_SIZE } from '@colo/stream';
import { DirtyBitmap } from './dirty-bitmap.js';
import type { MemoryStaging } from './domain.js';
import { DomainError, DomainErrorCode } from './errors.js';
import type { GuestMemory } from './guest-memory.js';

/** Undo memory comes in slabs of this many pages, kept from one checkpoint to the next. */
const SLAB_PAGES = 1024;

/**
 * The bytes a checkpoint overwrote, page by page: the old contents of every page the first time the checkpoint
 * writes it, so they can be put back. The slabs stay allocated between checkpoints (up to `retainBytes`): fresh
 * memory costs a page fault per 4 KiB, which on the machines measured cost more than the copies themselves.
 */
export class UndoLog {
  private readonly slabs: Buffer[] = [];
  private readonly retainSlabs: number;
  /** Pages saved so far in the current checkpoint (each at most once: its contents before the checkpoint). */
  private readonly saved: DirtyBitmap;
  /** Saved runs as flat triples: first pfn, page count, page index in the undo memory. */
  private runs: number[] = [];
  private usedPages = 0;

  constructor(pageCount: number, retainBytes: number) {
    this.saved = new DirtyBitmap(pageCount);
    this.retainSlabs = Math.max(1, Math.floor(retainBytes / (SLAB_PAGES * PAGE_SIZE)));
  }

  /** Pages saved in the current checkpoint. */
  get pages(): number {
    return this.usedPages;
  }

  /** Keeps the current bytes of pages [first, first + count) of `memory` that were not saved yet. */
  save(memory: Buffer, first: number, count: number): void {
    let pfn = first;
    const end = first + count;
    while (pfn < end) {
      if (this.saved.isDirty(pfn)) {
        pfn++;
        continue;
      }
      let n = 1;
      while (pfn + n < end && !this.saved.isDirty(pfn + n)) n++;
      this.saved.markRange(pfn, pfn + n - 1);
      this.copyOut(memory, pfn, n);
      pfn += n;
    }
  }

  /** Puts every saved page back into `memory` and forgets them. */
  restore(memory: Buffer): void {
    const r = this.runs;
    for (let i = 0; i < r.length; i += 3) {
      const first = r[i]!;
      const count = r[i + 1]!;
      const at = r[i + 2]!;
      const slab = this.slabs[Math.floor(at / SLAB_PAGES)]!;
      const offset = (at % SLAB_PAGES) * PAGE_SIZE;
      memory.set(slab.subarray(offset, offset + count * PAGE_SIZE), first * PAGE_SIZE);
    }
    this.reset();
  }

  /** Forgets the saved pages (the checkpoint was kept); frees slabs beyond what is retained. */
  reset(): void {
    const r = this.runs;
    for (let i = 0; i < r.length; i += 3) this.saved.clearRange(r[i]!, r[i]! + r[i + 1]! - 1);
    this.runs = [];
    this.usedPages = 0;
    if (this.slabs.length > this.retainSlabs) this.slabs.length = this.retainSlabs;
  }

  /** Appends pages [pfn, pfn + n) to the undo memory, split at slab boundaries (each run stays in one slab). */
  private copyOut(memory: Buffer, pfn: number, n: number): void {
    while (n > 0) {
      const slabIndex = Math.floor(this.usedPages / SLAB_PAGES);
      const inSlab = this.usedPages % SLAB_PAGES;
      const take = Math.min(n, SLAB_PAGES - inSlab);
      // Written completely before it is read: no need to zero it.
      const slab = (this.slabs[slabIndex] ??= Buffer.allocUnsafeSlow(SLAB_PAGES * PAGE_SIZE));
      memory.copy(slab, inSlab * PAGE_SIZE, pfn * PAGE_SIZE, (pfn + take) * PAGE_SIZE);
      this.runs.push(pfn, take, this.usedPages);
      this.usedPages += take;
      pfn += take;
      n -= take;
    }
  }
}

export interface InPlaceStagingHooks {
  /** Throws (DomainError) when the guest cannot take a hypervisor write now (it runs, it was destroyed). */
  checkWritable(): void;
  /** The staging was adopted or discarded: the guest re-reads whatever it caches from its pages. */
  settled(): void;
}

/**
 * A later checkpoint's pages written straight into the suspended guest as they arrive, with an undo log of the
 * bytes they replace (Domain.stagePagesInPlace). Buffering the checkpoint and copying it at CHECKPOINT_END put
 * that copy (12-35 ms for 10,000-50,000 pages) between the last byte and READY, i.e. in the primary's pause;
 * here the copy happens while the stream is still arriving, and CHECKPOINT_END only drops the undo log.
 * All or nothing as before: `discard()` copies the saved pages back, so the guest is byte for byte what it was.
 */
export class InPlaceStaging implements MemoryStaging {
  private readonly mem: GuestMemory;
  private readonly undo: UndoLog;
  private readonly hooks: InPlaceStagingHooks;
  private spent = false;

  constructor(mem: GuestMemory, undo: UndoLog, hooks: InPlaceStagingHooks) {
    this.mem = mem;
    this.undo = undo;
    this.hooks = hooks;
  }

  writePages(pfns: ArrayLike<number>, data: Uint8Array): void {
    this.usable();
    this.hooks.checkWritable();
    if (data.length !== pfns.length * PAGE_SIZE) {
      throw new DomainError(DomainErrorCode.BAD_PAGE_DATA, `writePages: ${pfns.length} pfns need ${pfns.length * PAGE_SIZE} bytes, got ${data.length}`);
    }
    const pageCount = this.mem.pageCount;
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (!Number.isInteger(pfn) || pfn < 0 || pfn >= pageCount) {
        throw new DomainError(DomainErrorCode.BAD_PFN, `pfn ${pfn} is outside 0..${pageCount - 1}`);
      }
    }
    const bytes = this.mem.bytes;
    let i = 0;
    while (i < pfns.length) {
      // Runs of consecutive pfns (the usual case) are saved and written with one copy each.
      const first = pfns[i]!;
      let n = 1;
      while (i + n < pfns.length && pfns[i + n] === first + n) n++;
      this.undo.save(bytes, first, n);
      bytes.set(data.subarray(i * PAGE_SIZE, (i + n) * PAGE_SIZE), first * PAGE_SIZE);
      i += n;
    }
  }

  adopt(): void {
    this.usable();
    this.spent = true;
    this.undo.reset();
    this.hooks.settled();
  }

  discard(): void {
    if (this.spent) return;
    this.spent = true;
    this.undo.restore(this.mem.bytes);
    this.hooks.settled();
  }

  /** Pages written so far whose old contents are kept (distinct pages). */
  get savedPages(): number {
    return this.undo.pages;
  }

  private usable(): void {
    if (this.spent) throw new DomainError(DomainErrorCode.STAGING_SPENT, 'the in-place staging was already adopted or discarded');
  }
}
