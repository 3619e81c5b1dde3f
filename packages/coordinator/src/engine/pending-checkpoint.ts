import type { Domain, MemoryStaging } from '@colo/domain';
import type { HvmParam, PageDataRecord, TscInfo, XenstoreEntry } from '@colo/stream';
import { PAGE_SIZE, pageTypeCarriesData } from '@colo/stream';
import { ArenaPool, type PageArena } from './page-arena.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { applyStateDelta, buildDeltaPages, type DeltaPage } from './page-delta.js';

/**
 * One checkpoint's worth of records, held in memory until CHECKPOINT_END and then applied all at once (the lesson
 * of seed 003: a secondary that applied records as they arrived was left half-updated when the primary died
 * mid-checkpoint). Everything that could make the apply fail is checked while buffering, so apply() only
 * copies: the guest ends up either untouched (discard) or holding the complete checkpoint.
 */
export class PendingCheckpoint {
  /** Each buffered record's pages, one contiguous view of an arena (see PageArena) per record. */
  private pages: { pfns: number[]; data: Uint8Array }[] = [];
  private readonly arenas: ArenaPool;
  /** Taken from `arenas` at the first buffered page, given back at apply or discard. */
  private arena: PageArena | undefined;
  /**
   * Where page data goes instead of `pages` when set (the initial synchronisation, if the guest can stage): a
   * staging copy of guest memory, written as records arrive and adopted by the guest in applyTo. Dropped by
   * discard(), so the all-or-nothing guarantee holds just as for buffered pages.
   */
  private staging: MemoryStaging | undefined;
  private tsc: TscInfo | undefined;
  private vcpu: Uint8Array | undefined;
  private params: HvmParam[] | undefined;
  private device: Uint8Array | undefined;
  private xenstore: XenstoreEntry[] | undefined;
  /** PAGE_DELTA pages (their encodings copied): built against the guest's pages at apply, before any write. */
  private deltas: DeltaPage[] = [];
  /** The delta pages built by buildDeltas (those whose base matched), written at apply. */
  private built: { pfns: number[]; data: Uint8Array } | undefined;
  /** Delta pages whose base did not match, as resent whole (PAGE_RESEND), written with the built ones. */
  private resent: { pfns: number[]; data: Uint8Array }[] = [];
  /** pfns buildDeltas left out for want of their base, not yet resent. */
  private missing = new Set<number>();
  /** An EMULATOR_DELTA body (copied): the device state as the XOR against the guest's current one. */
  private deviceDelta: Uint8Array | undefined;
  /** Pages buffered (a page sent twice counts twice). */
  pageCount = 0;
  bytes = 0;
  /** libxc CHECKPOINT seen (the libxc part is complete). */
  libxcComplete = false;
  /** When its first record arrived (performance.now(), ms): set by the engine, for diagnostics only. */
  startedAt: number | undefined;

  /** `arenas`: where buffered pages are copied; an engine passes its own so memory is reused across checkpoints. */
  constructor(arenas: ArenaPool = new ArenaPool()) {
    this.arenas = arenas;
  }

  /** Sends page data to `staging` from now on; only before any page is buffered (pages must apply in order). */
  stageInto(staging: MemoryStaging): void {
    if (this.pages.length > 0 || this.staging) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'a checkpoint can be staged only before its first page');
    this.staging = staging;
  }

  /** Whether page data goes into a memory staging (tests, logs). */
  get staged(): boolean {
    return this.staging !== undefined;
  }

  /** Buffers a PAGE_DATA record (or writes it into the staging) after checking it fits the guest. */
  addPages(r: PageDataRecord, guestPages: number): void {
    const pfns: number[] = [];
    for (let i = 0; i < r.pfns.length; i++) {
      const pfn = r.pfns[i]!;
      const carries = pageTypeCarriesData(r.types[i]!);
      if (!carries) continue; // allocate-only / broken / invalid entries carry no bytes to apply
      if (pfn >= guestPages) {
        throw new CoordinatorError(CoordinatorErrorCode.GUEST_MISMATCH, `PAGE_DATA names pfn ${pfn} but the guest has ${guestPages} pages`);
      }
      pfns.push(pfn);
    }
    if (pfns.length === 0) return;
    // The data holds exactly the pages of the entries that carry data, in order, as one view or as the pieces it
    // arrived in. Either way it is copied now, so the socket's reads can be freed at once.
    const pieces = r.dataPieces ?? [r.data];
    let have = 0;
    for (const p of pieces) have += p.length;
    // The decoder checked this; a shortfall here would apply whatever the arena held before, so check again.
    if (have < pfns.length * PAGE_SIZE) {
      throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, `PAGE_DATA carries ${have} bytes for ${pfns.length} pages`);
    }
    if (this.staging) {
      const staging = this.staging;
      forEachPageRun(pfns, pieces, (p, d) => staging.writePages(p, d));
    } else {
      // One view per record, not per page: a 1 GiB synchronisation made 262,144 of them for the collector.
      this.arena ??= this.arenas.acquire();
      this.pages.push({ pfns, data: this.arena.copy(pieces, pfns.length * PAGE_SIZE) });
    }
    this.pageCount += pfns.length;
    this.bytes += pfns.length * PAGE_SIZE;
  }

  /** Buffers a PAGE_DELTA record's pages (decoded from a body the caller copied; pfns checked by the decoder). */
  addDeltas(pages: readonly DeltaPage[]): void {
    for (const p of pages) this.deltas.push(p);
    this.pageCount += pages.length;
    for (const p of pages) this.bytes += p.encoding.byteLength;
  }

  setTsc(t: TscInfo): void {
    this.tsc = t;
  }
  /** Kept as a copy, as pages are: `blob` may be a view of a read the link reuses. */
  setVcpuContext(blob: Uint8Array): void {
    this.vcpu = new Uint8Array(blob); // a copy (Buffer#slice would be a view)
  }
  setHvmParams(p: HvmParam[]): void {
    this.params = p;
  }
  /** Kept as a copy, as above. */
  setDeviceState(blob: Uint8Array): void {
    this.device = new Uint8Array(blob);
    this.deviceDelta = undefined;
  }
  /** An EMULATOR_DELTA body, copied: the device state is built from the guest's at apply. */
  setDeviceStateDelta(body: Uint8Array): void {
    this.deviceDelta = new Uint8Array(body);
    this.device = undefined;
  }
  setXenstore(entries: XenstoreEntry[]): void {
    this.xenstore = entries;
  }

  /** Whether the checkpoint carries what a guest needs to run (vCPU context at least). */
  get complete(): boolean {
    return this.libxcComplete && this.vcpu !== undefined;
  }

  /**
   * Builds the delta pages against the guest's current pages (the guest untouched) and returns, ascending, the
   * pfns whose base did not match: applyTo then refuses the checkpoint until each is given whole by resend().
   */
  buildDeltas(domain: Domain): number[] {
    const built = buildDeltaPages(this.deltas, (pfn) => domain.page(pfn));
    this.built = built;
    this.deltas = [];
    this.missing = new Set(built.mismatched);
    return built.mismatched;
  }

  /** Pages resent whole (kept as given: the caller's copy) in place of deltas whose base did not match; others are refused. */
  resend(pfns: readonly number[], data: Uint8Array): void {
    for (const pfn of pfns) {
      if (!this.missing.delete(pfn)) throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, `page ${pfn} resent, but it was not asked for`);
    }
    this.resent.push({ pfns: [...pfns], data });
  }

  /** Pages asked for and not yet resent. */
  get missingPages(): number {
    return this.missing.size;
  }

  /**
   * Copies everything into the (suspended or never-run) guest. Later copies of a page win, as in the stream.
   * `deviceBase`: the device state the previous checkpoint carried (the base of an EMULATOR_DELTA: the bytes the
   * primary sent, not the guest's own rendering of them). Returns the device state this checkpoint carried.
   */
  applyTo(domain: Domain, deviceBase?: Uint8Array): Uint8Array | undefined {
    // Delta pages first, into memory of their own: their bases are the guest's pages as the previous checkpoint
    // left them, and a base that is not what the primary named (and was not resent) refuses the whole checkpoint
    // before any write.
    if (!this.built && this.deltas.length > 0) this.buildDeltas(domain);
    if (this.missing.size > 0) {
      const first = Math.min(...this.missing);
      throw new CoordinatorError(
        CoordinatorErrorCode.DELTA_BASE_MISMATCH,
        `${this.missing.size} delta pages (the first pfn ${first}) name a base this copy does not hold: refusing the checkpoint rather than build a wrong page`,
      );
    }
    const built = this.built;
    if (this.deviceDelta) {
      if (!deviceBase) throw new CoordinatorError(CoordinatorErrorCode.DELTA_BASE_MISMATCH, 'EMULATOR_DELTA before any device state was received');
      this.device = applyStateDelta(this.deviceDelta, deviceBase);
      this.deviceDelta = undefined;
    }
    const device = this.device;
    if (this.staging) {
      const staging = this.staging;
      this.staging = undefined;
      staging.adopt();
    }
    for (const batch of this.pages) domain.writePages(batch.pfns, batch.data);
    if (built && built.pfns.length > 0) domain.writePages(built.pfns, built.data);
    for (const r of this.resent) domain.writePages(r.pfns, r.data);
    if (this.tsc) domain.setTscInfo(this.tsc);
    if (this.vcpu) domain.setVcpuContext(this.vcpu);
    if (this.params) domain.setHvmParams(this.params);
    if (this.device) domain.setDeviceState(this.device);
    if (this.xenstore) domain.setXenstore(this.xenstore);
    this.releasePages();
    return device;
  }

  /** Drops everything buffered or staged: the guest never sees any of it. */
  discard(): void {
    this.staging?.discard();
    this.staging = undefined;
    this.releasePages();
  }

  /** The arena goes back to the pool (its memory is the next checkpoint's): nothing may read `pages` after. */
  private releasePages(): void {
    this.pages = [];
    this.deltas = [];
    this.built = undefined;
    this.resent = [];
    this.missing.clear();
    this.deviceDelta = undefined;
    if (this.arena) this.arenas.release(this.arena);
    this.arena = undefined;
  }
}

/**
 * Hands `write` the pages of `pieces` (views whose concatenation is pfns.length pages, in pfn order) in as few
 * calls as they allow: the whole pages inside one piece together, as a view; a page cut between two pieces
 * (reads do not respect page boundaries) copied into a scratch page first. `write` must copy what it is given
 * before it returns (the scratch is reused).
 */
export function forEachPageRun(pfns: readonly number[], pieces: readonly Uint8Array[], write: (pfns: number[], data: Uint8Array) => void): void {
  let page = 0;
  let piece = 0;
  let offset = 0;
  let scratch: Uint8Array | undefined;
  while (page < pfns.length) {
    const p = pieces[piece];
    if (p === undefined) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, `page data ends after ${page} of ${pfns.length} pages`);
    const whole = Math.min(Math.floor((p.length - offset) / PAGE_SIZE), pfns.length - page);
    if (whole > 0) {
      write(pfns.slice(page, page + whole), p.subarray(offset, offset + whole * PAGE_SIZE));
      page += whole;
      offset += whole * PAGE_SIZE;
    }
    if (offset === p.length) {
      piece++;
      offset = 0;
      continue;
    }
    if (page === pfns.length) break;
    // The next page starts in this piece and ends in a later one.
    scratch ??= new Uint8Array(PAGE_SIZE);
    let filled = 0;
    while (filled < PAGE_SIZE) {
      const q = pieces[piece];
      if (q === undefined) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, `page data ends inside page ${page} of ${pfns.length}`);
      const k = Math.min(q.length - offset, PAGE_SIZE - filled);
      scratch.set(q.subarray(offset, offset + k), filled);
      filled += k;
      offset += k;
      if (offset === q.length) {
        piece++;
        offset = 0;
      }
    }
    write([pfns[page]!], scratch);
    page++;
  }
}
