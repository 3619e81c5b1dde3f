/**
 * The dirty log: one bit per page, like Xen's log-dirty bitmap. Setting a bit is a couple of integer ops (it
 * runs on every guest write); read-and-clear scans 32 pages per word and skips clean words, so 256K pages cost
 * 8192 word reads when nothing is dirty.
 */
export class DirtyBitmap {
  readonly pageCount: number;
  private readonly words: Uint32Array;
  /** Scratch for collecting pfns; the result is a copy of its prefix. */
  private readonly scratch: Uint32Array;

  constructor(pageCount: number) {
    this.pageCount = pageCount;
    this.words = new Uint32Array(Math.ceil(pageCount / 32));
    this.scratch = new Uint32Array(pageCount);
  }

  mark(pfn: number): void {
    this.words[pfn >>> 5]! |= 1 << (pfn & 31);
  }

  /** Marks every page from `first` to `last` inclusive. */
  markRange(first: number, last: number): void {
    for (let p = first; p <= last; p++) this.words[p >>> 5]! |= 1 << (p & 31);
  }

  markAll(): void {
    this.words.fill(0xffffffff);
    const tail = this.pageCount & 31;
    if (tail !== 0) this.words[this.words.length - 1] = (1 << tail) - 1;
  }

  clear(): void {
    this.words.fill(0);
  }

  isDirty(pfn: number): boolean {
    return (this.words[pfn >>> 5]! & (1 << (pfn & 31))) !== 0;
  }

  /** Ascending pfns of the set pages; with `clear`, the set is emptied too. */
  collect(clear: boolean): Uint32Array {
    const n = setBits(this.words, this.scratch);
    // One memset of the words after the scan (none when nothing was set): a store inside the scan would be the
    // kind of site the note on setBits is about, unseen when peekDirty ran first.
    if (clear && n > 0) this.words.fill(0);
    return this.scratch.slice(0, n);
  }
}

/**
 * Writes the indices of the set bits of `words` to `out`, ascending, and returns how many. A function of its own
 * with nothing after its loop but the return: V8 compiles a long-running loop on-stack (OSR) before the code after
 * it has ever run, and with the copy-out in the same function that entry deoptimised on every later call (500
 * deoptimisations in 800 checkpoints of the pause bench, on each node; none now).
 */
function setBits(words: Uint32Array, out: Uint32Array): number {
  let n = 0;
  for (let w = 0; w < words.length; w++) {
    let bits = words[w]!;
    if (bits === 0) continue;
    const base = w << 5;
    while (bits !== 0) {
      const low = bits & -bits;
      out[n++] = base + 31 - Math.clz32(low);
      bits ^= low;
    }
  }
  return n;
}
