const MiB = 1024 * 1024;

/** Size of one slab of an arena: eight 1 MiB frames' worth of pages. */
export const ARENA_SLAB_BYTES = 8 * MiB;
/** Slab memory an arena keeps from one checkpoint to the next (what a 65,536-page checkpoint needs). */
export const ARENA_KEEP_BYTES = 256 * MiB;

/**
 * Memory for the page data of one checkpoint in flight on the secondary, reused from one checkpoint to the next.
 *
 * Why: the pages of a checkpoint must be held until its CHECKPOINT_END (seed 003), and they arrive as views of
 * the socket's 64 KiB reads. Holding those reads kept 3,200 of them per 50,000 pages alive until the end (and
 * applying from them meant a page cut between two reads every 16 pages); holding 1 MiB reassembled frames, as
 * ws made them, cost a copy into fresh memory per frame and, through V8's external-memory accounting, ~40
 * collections per 50,000-page checkpoint. Copying each record's pages on arrival into memory that was already
 * used by the last checkpoint lets every read die young, and apply() copies from one contiguous view per record.
 *
 * Slabs are kept up to ARENA_KEEP_BYTES: a larger checkpoint still works, its extra slabs are dropped at reset.
 */
export class PageArena {
  private readonly slabBytes: number;
  private readonly keepBytes: number;
  private slabs: Uint8Array[] = [];
  /** Slab being filled, and how much of it is used. */
  private slab = 0;
  private used = 0;

  constructor(opts: { slabBytes?: number; keepBytes?: number } = {}) {
    this.slabBytes = opts.slabBytes ?? ARENA_SLAB_BYTES;
    this.keepBytes = opts.keepBytes ?? ARENA_KEEP_BYTES;
  }

  /**
   * Copies `pieces` (whose lengths add up to at least `n`) into the arena and returns the first `n` bytes as one
   * view, valid until reset(). A record larger than a slab gets memory of its own.
   */
  copy(pieces: readonly Uint8Array[], n: number): Uint8Array {
    const out = this.take(n);
    let at = 0;
    for (let i = 0; i < pieces.length && at < n; i++) {
      const p = pieces[i]!;
      const k = Math.min(p.length, n - at);
      out.set(k === p.length ? p : p.subarray(0, k), at);
      at += k;
    }
    return out;
  }

  private take(n: number): Uint8Array {
    if (n > this.slabBytes) return new Uint8Array(n);
    if (this.slabs.length > 0 && this.used + n > this.slabBytes) {
      this.slab++;
      this.used = 0;
    }
    let s = this.slabs[this.slab];
    if (s === undefined) {
      s = new Uint8Array(this.slabBytes);
      this.slabs.push(s);
    }
    const out = s.subarray(this.used, this.used + n);
    this.used += n;
    return out;
  }

  /** Everything copied may be overwritten from now on; slabs beyond the keep limit are let go. */
  reset(): void {
    this.slab = 0;
    this.used = 0;
    const keep = Math.floor(this.keepBytes / this.slabBytes);
    if (this.slabs.length > keep) this.slabs.length = keep;
  }

  /** Slab memory the arena holds (tests, logs). */
  get heldBytes(): number {
    return this.slabs.length * this.slabBytes;
  }
}

/**
 * The arenas of one secondary engine: a checkpoint takes one when its first page arrives and gives it back when
 * it is applied or discarded. Two are in use at once at most in a running pair (one received whole and waiting for
 * its apply, the next arriving), so two are made; one never given back is simply collected.
 */
export class ArenaPool {
  private readonly free: PageArena[] = [];
  private readonly make: () => PageArena;

  constructor(make: () => PageArena = () => new PageArena()) {
    this.make = make;
  }

  acquire(): PageArena {
    return this.free.pop() ?? this.make();
  }

  release(arena: PageArena): void {
    arena.reset();
    this.free.push(arena);
  }
}
