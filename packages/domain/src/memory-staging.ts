import { PAGE_SIZE } from '@colo/stream';
import type { MemoryStaging } from './domain.js';
import { copyInto } from './copy.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { DomainError, DomainErrorCode } from './errors.js';
import { Prefaulter } from './prefault.js';

/**
 * Stagings of at least this size fault their memory in on a helper thread (Prefaulter): below it, the thread
 * costs more than the faults (a 64 MiB staging faults in about 40 ms here).
 */
export const PREFAULT_MIN_BYTES = 64 * 1024 * 1024;

/** Preallocated memory (preallocateMemory) must be exactly the guest's size: DomainError BAD_OPTIONS otherwise. */
export function checkPreallocatedSize(memory: SharedArrayBuffer, guestBytes: number): void {
  if (memory.byteLength !== guestBytes) {
    throw new DomainError(DomainErrorCode.BAD_OPTIONS, `preallocated memory is ${memory.byteLength} bytes, the guest's ${guestBytes}`);
  }
}

/**
 * A staging copy of a guest's memory (Domain.stageMemory): a second buffer of the guest's size that pages are
 * written into as they arrive, plus a bitmap of the pages written. The guest's own memory is not touched until
 * `adopt`, which hands the buffer to the guest (see GuestMemory.adopt): a secondary's initial synchronisation
 * thus copies each page once, from the received record into what becomes guest memory, and keeps no 1 GiB of
 * records waiting for CHECKPOINT_END.
 */
export class GuestMemoryStaging implements MemoryStaging {
  private readonly pageCount: number;
  private readonly adoptInto: (bytes: Buffer, staged: DirtyBitmap) => void;
  private bytes: Buffer | undefined;
  private readonly staged: DirtyBitmap;
  private readonly prefaulter: Prefaulter | undefined;

  /** Whether the staging writes into memory faulted in ahead (preallocateMemory) rather than fresh memory. */
  readonly preallocated: boolean;

  /**
   * `adoptInto` checks the guest can take the write (throwing leaves the staging usable) and adopts.
   * `memory.preallocated`: zeroed memory of the guest's size, faulted in already (preallocateMemory), to write
   * into. Otherwise fresh memory; `memory.prefault` (default: from PREFAULT_MIN_BYTES) then faults it in on a
   * helper thread ahead of the writes.
   */
  constructor(
    pageCount: number,
    adoptInto: (bytes: Buffer, staged: DirtyBitmap) => void,
    memory: { preallocated?: SharedArrayBuffer; prefault?: boolean } = {},
  ) {
    this.pageCount = pageCount;
    this.adoptInto = adoptInto;
    const prefault = memory.prefault ?? pageCount * PAGE_SIZE >= PREFAULT_MIN_BYTES;
    this.preallocated = memory.preallocated !== undefined;
    if (memory.preallocated) {
      checkPreallocatedSize(memory.preallocated, pageCount * PAGE_SIZE);
      this.bytes = Buffer.from(memory.preallocated);
    } else if (prefault) {
      // Shared, so the helper thread can touch it; zero-filled like Buffer.alloc (calloc: faulted in on first write).
      this.prefaulter = new Prefaulter(new SharedArrayBuffer(pageCount * PAGE_SIZE));
      this.bytes = Buffer.from(this.prefaulter.memory);
    } else {
      this.bytes = Buffer.alloc(pageCount * PAGE_SIZE);
    }
    this.staged = new DirtyBitmap(pageCount);
  }

  writePages(pfns: ArrayLike<number>, data: Uint8Array): void {
    const bytes = this.usable();
    if (data.length !== pfns.length * PAGE_SIZE) {
      throw new DomainError(DomainErrorCode.BAD_PAGE_DATA, `writePages: ${pfns.length} pfns need ${pfns.length * PAGE_SIZE} bytes, got ${data.length}`);
    }
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.pageCount) {
        throw new DomainError(DomainErrorCode.BAD_PFN, `pfn ${pfn} is outside 0..${this.pageCount - 1}`);
      }
    }
    let i = 0;
    while (i < pfns.length) {
      // Consecutive pfns (the usual case in a synchronisation) go in one copy.
      const first = pfns[i]!;
      let n = 1;
      while (i + n < pfns.length && pfns[i + n] === first + n) n++;
      this.prefaulter?.claim(first * PAGE_SIZE, (first + n) * PAGE_SIZE);
      copyInto(bytes, first * PAGE_SIZE, data.subarray(i * PAGE_SIZE, (i + n) * PAGE_SIZE));
      this.staged.markRange(first, first + n - 1);
      i += n;
    }
  }

  adopt(): void {
    const bytes = this.usable();
    // The pages never staged are copied in by the adopt: the whole buffer must be ours, the helper done with it.
    this.prefaulter?.claim(0, bytes.length);
    this.adoptInto(bytes, this.staged);
    this.bytes = undefined;
  }

  discard(): void {
    this.prefaulter?.stop();
    this.bytes = undefined;
  }

  private usable(): Buffer {
    if (!this.bytes) throw new DomainError(DomainErrorCode.STAGING_SPENT, 'the memory staging was already adopted or discarded');
    return this.bytes;
  }
}
