import type { Domain, MemoryStaging } from '@colo/domain';
import type { HvmParam, PageDataRecord, TscInfo, XenstoreEntry } from '@colo/stream';
import { PAGE_SIZE, pageTypeCarriesData } from '@colo/stream';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';

/**
 * One checkpoint's worth of records, held in memory until CHECKPOINT_END and then applied all at once (the lesson
 * of seed 003: a secondary that applied records as they arrived was left half-updated when the primary died
 * mid-checkpoint). Everything that could make the apply fail is checked while buffering, so apply() only
 * copies: the guest ends up either untouched (discard) or holding the complete checkpoint.
 */
export class PendingCheckpoint {
  private pages: { pfns: number[]; data: Uint8Array }[] = [];
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
  /** Pages buffered (a page sent twice counts twice). */
  pageCount = 0;
  bytes = 0;
  /** libxc CHECKPOINT seen (the libxc part is complete). */
  libxcComplete = false;

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
    // `data` holds exactly the pages of the entries that carry data, in order: keep the view (no per-page views:
    // a 1 GiB synchronisation made 262,144 of them for the garbage collector).
    const data = r.data.subarray(0, pfns.length * PAGE_SIZE);
    if (this.staging) {
      // Copied now: the record's buffer can be reused or freed at once (no 1 GiB of records held to the end).
      this.staging.writePages(pfns, data);
    } else {
      this.pages.push({ pfns, data });
    }
    this.pageCount += pfns.length;
    this.bytes += data.length;
  }

  setTsc(t: TscInfo): void {
    this.tsc = t;
  }
  setVcpuContext(blob: Uint8Array): void {
    this.vcpu = blob;
  }
  setHvmParams(p: HvmParam[]): void {
    this.params = p;
  }
  setDeviceState(blob: Uint8Array): void {
    this.device = blob;
  }
  setXenstore(entries: XenstoreEntry[]): void {
    this.xenstore = entries;
  }

  /** Whether the checkpoint carries what a guest needs to run (vCPU context at least). */
  get complete(): boolean {
    return this.libxcComplete && this.vcpu !== undefined;
  }

  /** Copies everything into the (suspended or never-run) guest. Later copies of a page win, as in the stream. */
  applyTo(domain: Domain): void {
    if (this.staging) {
      const staging = this.staging;
      this.staging = undefined;
      staging.adopt();
    }
    for (const batch of this.pages) domain.writePages(batch.pfns, batch.data);
    if (this.tsc) domain.setTscInfo(this.tsc);
    if (this.vcpu) domain.setVcpuContext(this.vcpu);
    if (this.params) domain.setHvmParams(this.params);
    if (this.device) domain.setDeviceState(this.device);
    if (this.xenstore) domain.setXenstore(this.xenstore);
  }

  /** Drops everything buffered or staged: the guest never sees any of it. */
  discard(): void {
    this.staging?.discard();
    this.staging = undefined;
    this.pages = [];
  }
}
