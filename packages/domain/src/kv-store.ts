import type { GuestMemory } from './guest-memory.js';
import { allocBlock, classBytes, freeBlock, sizeClass } from './allocator.js';
import { add, parseInt64 } from './int64.js';
import { formatStore, planLayout, readLayout, SB, UNIT, type Layout } from './layout.js';

/**
 * The key-value store of the guest's RESP service: a chained hash table whose buckets, entries and values are
 * all in guest pages. An entry is one heap block:
 *
 *   +0 next entry in the chain (unit address, 0 = end)   +4 FNV-1a hash of the key
 *   +8 key length   +12 value length   +16 size class   +20 key bytes, then value bytes
 *
 * An update that still fits its block is written in place; otherwise the entry moves to a new block.
 */
const E_NEXT = 0;
const E_HASH = 4;
const E_KEYLEN = 8;
const E_VALLEN = 12;
const E_CLASS = 16;
export const ENTRY_HEADER = 20;

/** Thrown when the pages do not hold a consistent store (a corrupt image or checkpoint): never a crash or hang. */
export class StoreCorruptError extends Error {
  override readonly name = 'StoreCorruptError';
}

export function fnv1a(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}

/** Where a lookup found (or did not find) a key: `entry` 0 means absent; `link` is the field pointing at it. */
interface Found {
  entry: number;
  link: number;
  hash: number;
}

export type SetMode = 'always' | 'nx' | 'xx';
export type SetResult = 'ok' | 'skipped' | 'oom';

export class KvStore {
  private readonly mem: GuestMemory;
  private layout: Layout | undefined;
  /** Memory changed under the store (reload): read the layout again before using it. */
  private stale = false;
  private readonly found: Found = { entry: 0, link: 0, hash: 0 };

  constructor(mem: GuestMemory) {
    this.mem = mem;
  }

  /** Lays out an empty store (a fresh guest, FLUSHALL). */
  format(): void {
    this.stale = false;
    this.layout = planLayout(this.mem.pageCount);
    formatStore(this.mem, this.layout);
  }

  /**
   * The hypervisor replaced pages (restore, checkpoint): the layout is re-read from memory at its next use, so
   * a checkpoint applied in many writes reads it once.
   */
  reload(): void {
    this.stale = true;
  }

  private get l(): Layout {
    if (this.stale) {
      this.layout = readLayout(this.mem);
      this.stale = false;
    }
    if (!this.layout) throw new StoreCorruptError('guest memory holds no valid store superblock');
    return this.layout;
  }

  get keyCount(): number {
    this.l;
    return this.mem.u32(SB.KEY_COUNT);
  }

  get usedBytes(): number {
    return this.mem.u32(SB.USED_UNITS) * UNIT;
  }

  get capacityBytes(): number {
    const l = this.l;
    return (l.heapEndUnit - l.heapStartUnit) * UNIT;
  }

  /** Finds `key`; fills this.found. */
  private lookup(key: Uint8Array): Found {
    const l = this.l;
    const mem = this.mem;
    const hash = fnv1a(key);
    const f = this.found;
    f.hash = hash;
    let link = l.bucketsOffset + (hash & (l.bucketCount - 1)) * 4;
    let entry = mem.u32(link);
    // A chain cannot be longer than the heap has blocks: the bound turns a corrupt cycle into an error, not a hang.
    let budget = (l.heapEndUnit - l.heapStartUnit) >>> 1;
    const bytes = mem.bytes;
    while (entry !== 0) {
      if (entry < l.heapStartUnit || entry >= l.heapEndUnit || --budget < 0) throw new StoreCorruptError(`bad entry address ${entry}`);
      const off = entry * UNIT;
      if (mem.u32(off + E_HASH) === hash && mem.u32(off + E_KEYLEN) === key.length) {
        const k = off + ENTRY_HEADER;
        let same = true;
        for (let i = 0; i < key.length; i++) {
          if (bytes[k + i] !== key[i]) {
            same = false;
            break;
          }
        }
        if (same) {
          f.entry = entry;
          f.link = link;
          return f;
        }
      }
      link = off + E_NEXT;
      entry = mem.u32(link);
    }
    f.entry = 0;
    f.link = l.bucketsOffset + (hash & (l.bucketCount - 1)) * 4;
    return f;
  }

  /** Byte offset and length of the value of `key`, or undefined. The view is valid until the next write. */
  get(key: Uint8Array): { offset: number; length: number } | undefined {
    const f = this.lookup(key);
    if (f.entry === 0) return undefined;
    const off = f.entry * UNIT;
    return { offset: off + ENTRY_HEADER + this.mem.u32(off + E_KEYLEN), length: this.mem.u32(off + E_VALLEN) };
  }

  has(key: Uint8Array): boolean {
    return this.lookup(key).entry !== 0;
  }

  /** The value bytes of `key` as a view into guest memory, or undefined. */
  valueView(key: Uint8Array): Buffer | undefined {
    const v = this.get(key);
    return v ? this.mem.bytes.subarray(v.offset, v.offset + v.length) : undefined;
  }

  set(key: Uint8Array, value: Uint8Array, mode: SetMode = 'always'): SetResult {
    const f = this.lookup(key);
    if (f.entry === 0 ? mode === 'xx' : mode === 'nx') return 'skipped';
    return this.store(f, key, [value]) ? 'ok' : 'oom';
  }

  /**
   * Writes `parts` (concatenated) as the value of the looked-up key: in place if the entry's block is large
   * enough, else in a new block linked where the old one was. Returns false, changing nothing, on a full heap.
   */
  private store(f: Found, key: Uint8Array, parts: Uint8Array[], keepPrefix = 0): boolean {
    const mem = this.mem;
    let valueLength = keepPrefix;
    for (const p of parts) valueLength += p.length;
    const need = ENTRY_HEADER + key.length + valueLength;
    if (f.entry !== 0) {
      const off = f.entry * UNIT;
      const c = mem.u32(off + E_CLASS);
      if (need <= classBytes(c)) {
        let at = off + ENTRY_HEADER + key.length + keepPrefix;
        for (const p of parts) {
          mem.write(at, p);
          at += p.length;
        }
        mem.setU32(off + E_VALLEN, valueLength);
        return true;
      }
    }
    const c = sizeClass(need);
    if (c < 0) return false;
    const unit = allocBlock(mem, c);
    if (unit === 0) return false;
    const off = unit * UNIT;
    const next = f.entry !== 0 ? mem.u32(f.entry * UNIT + E_NEXT) : mem.u32(f.link);
    mem.setU32(off + E_NEXT, next);
    mem.setU32(off + E_HASH, f.hash);
    mem.setU32(off + E_KEYLEN, key.length);
    mem.setU32(off + E_VALLEN, valueLength);
    mem.setU32(off + E_CLASS, c);
    mem.write(off + ENTRY_HEADER, key);
    let at = off + ENTRY_HEADER + key.length;
    if (keepPrefix > 0) {
      const old = f.entry * UNIT + ENTRY_HEADER + key.length;
      mem.copyWithin(at, old, old + keepPrefix);
      at += keepPrefix;
    }
    for (const p of parts) {
      mem.write(at, p);
      at += p.length;
    }
    mem.setU32(f.link, unit);
    mem.setU32(SB.USED_UNITS, mem.u32(SB.USED_UNITS) + classBytes(c) / UNIT);
    if (f.entry !== 0) this.release(f.entry);
    else mem.setU32(SB.KEY_COUNT, mem.u32(SB.KEY_COUNT) + 1);
    return true;
  }

  private release(entry: number): void {
    const c = this.mem.u32(entry * UNIT + E_CLASS);
    this.mem.setU32(SB.USED_UNITS, this.mem.u32(SB.USED_UNITS) - classBytes(c) / UNIT);
    freeBlock(this.mem, entry, c);
  }

  delete(key: Uint8Array): boolean {
    const f = this.lookup(key);
    if (f.entry === 0) return false;
    this.mem.setU32(f.link, this.mem.u32(f.entry * UNIT + E_NEXT));
    this.release(f.entry);
    this.mem.setU32(SB.KEY_COUNT, this.mem.u32(SB.KEY_COUNT) - 1);
    return true;
  }

  /** APPEND: returns the new length, or -1 on a full heap (value unchanged). */
  append(key: Uint8Array, suffix: Uint8Array): number {
    const f = this.lookup(key);
    const old = f.entry === 0 ? 0 : this.mem.u32(f.entry * UNIT + E_VALLEN);
    return this.store(f, key, [suffix], old) ? old + suffix.length : -1;
  }

  /** INCRBY with one lookup: the new value, or why not (the value is then unchanged). */
  incrementBy(key: Uint8Array, delta: number | bigint): number | bigint | 'not-integer' | 'overflow' | 'oom' {
    const f = this.lookup(key);
    let current: number | bigint = 0;
    if (f.entry !== 0) {
      const off = f.entry * UNIT;
      const start = off + ENTRY_HEADER + this.mem.u32(off + E_KEYLEN);
      const v = parseInt64(this.mem.bytes.subarray(start, start + this.mem.u32(off + E_VALLEN)));
      if (v === undefined) return 'not-integer';
      current = v;
    }
    const next = add(current, delta);
    if (next === undefined) return 'overflow';
    return this.store(f, key, [Buffer.from(String(next), 'latin1')]) ? next : 'oom';
  }

  /** FLUSHALL: an empty store over the same pages. */
  flush(): void {
    this.format();
  }

  /**
   * A key chosen with `random` in [0, 1): the first non-empty bucket from a random start. Node-local by design
   * (RANDOMKEY is one of the service's declared sources of nondeterminism).
   */
  randomKey(random: number): Buffer | undefined {
    const l = this.l;
    if (this.mem.u32(SB.KEY_COUNT) === 0) return undefined;
    const start = Math.floor(random * l.bucketCount) % l.bucketCount;
    for (let i = 0; i < l.bucketCount; i++) {
      const entry = this.mem.u32(l.bucketsOffset + ((start + i) & (l.bucketCount - 1)) * 4);
      if (entry !== 0) {
        if (entry < l.heapStartUnit || entry >= l.heapEndUnit) throw new StoreCorruptError(`bad entry address ${entry}`);
        const off = entry * UNIT;
        return Buffer.from(this.mem.bytes.subarray(off + ENTRY_HEADER, off + ENTRY_HEADER + this.mem.u32(off + E_KEYLEN)));
      }
    }
    return undefined;
  }

  /** Every key (tests, tools); bucket order. */
  *keys(): Generator<Buffer> {
    const l = this.l;
    for (let b = 0; b < l.bucketCount; b++) {
      let entry = this.mem.u32(l.bucketsOffset + b * 4);
      while (entry !== 0) {
        const off = entry * UNIT;
        yield Buffer.from(this.mem.bytes.subarray(off + ENTRY_HEADER, off + ENTRY_HEADER + this.mem.u32(off + E_KEYLEN)));
        entry = this.mem.u32(off + E_NEXT);
      }
    }
  }

  /** TIME records the guest clock it read in the superblock (as a guest kernel's clock page would). */
  recordClock(seconds: number, micros: number): void {
    this.l;
    this.mem.setU32(SB.CLOCK_SECONDS, seconds >>> 0);
    this.mem.setU32(SB.CLOCK_MICROS, micros >>> 0);
  }
}
