import { PAGE_SIZE } from '@colo/stream';

/**
 * A Remus checkpoint's dirty pages, copied while the guest is suspended so that they can be encoded and sent
 * after it resumes (Xen's Remus buffers a checkpoint the same way). What this buys: the guest's pause is the copy
 * (about 0.3 us a page), not the encoding and the transfer. Why that is safe: the guest's output since the
 * checkpoint stays held until the secondary acknowledges it, and the secondary is sent exactly the pages as they
 * were at the suspend.
 *
 * The memory is kept from one checkpoint to the next (the next capture comes after this one's acknowledgement,
 * when every byte has left the process); it grows to the largest checkpoint seen.
 */
export class PageCapture {
  private memory = new Uint8Array(0);
  private pfns: ArrayLike<number> = [];
  /** pfn -> 1 + its index in `memory` (0: not captured), for the pages of the current capture. */
  private readonly index: Uint32Array;

  constructor(pageCount: number) {
    this.index = new Uint32Array(pageCount);
  }

  /**
   * Copies `pfns` (ascending, below the page count) from the guest and forgets the previous capture. `pageRun`,
   * when the guest has it, copies a run of consecutive pages at once (a dirty set is mostly runs).
   */
  take(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, pageRun?: (first: number, count: number) => Uint8Array): void {
    const bytes = pfns.length * PAGE_SIZE;
    if (this.memory.length < bytes) this.memory = new Uint8Array(bytes);
    for (let i = 0; i < this.pfns.length; i++) this.index[this.pfns[i]!] = 0;
    for (let i = 0; i < pfns.length; ) {
      const first = pfns[i]!;
      let n = 1;
      if (pageRun) while (i + n < pfns.length && pfns[i + n] === first + n) n++;
      this.memory.set(n === 1 ? pageOf(first) : pageRun!(first, n), i * PAGE_SIZE);
      for (let k = 0; k < n; k++) this.index[first + k] = i + k + 1;
      i += n;
    }
    this.pfns = pfns;
  }

  /** The captured pages' numbers, ascending. */
  get captured(): ArrayLike<number> {
    return this.pfns;
  }

  /** The captured copy of page `pfn` (a view, valid until the next take). */
  readonly page = (pfn: number): Uint8Array => {
    const i = this.at(pfn);
    return this.memory.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  };

  /**
   * `count` captured pages from `first` as one view: consecutive pfns were captured side by side (the pfns are
   * ascending), so a run of them is one piece of memory, sent without a copy.
   */
  readonly pages = (first: number, count: number): Uint8Array => {
    const i = this.at(first);
    return this.memory.subarray(i * PAGE_SIZE, (i + count) * PAGE_SIZE);
  };

  private at(pfn: number): number {
    const i = this.index[pfn];
    if (!i) throw new RangeError(`page ${pfn} was not captured`);
    return i - 1;
  }
}
