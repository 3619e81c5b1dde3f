import { PAGE_SIZE, pageTypeCarriesData, type HvmParam, type PageDataRecord, type StreamRecord, type TscInfo, type XenstoreEntry } from '@colo/stream';
import type { Domain } from './domain.js';
import { DomainError, DomainErrorCode } from './errors.js';

/**
 * Applying stream records to any Domain: what the restore side of a migration (Xen's libxc restore, QEMU's
 * incoming migration) does with each record. Used by restoreImage and by the coordinator's secondary.
 */

/** The pfns of a PAGE_DATA record's entries that carry data, in the order of the record's `data` pages. */
export function pagesWithData(record: PageDataRecord): number[] {
  const pfns: number[] = [];
  for (let i = 0; i < record.pfns.length; i++) if (pageTypeCarriesData(record.types[i]!)) pfns.push(record.pfns[i]!);
  return pfns;
}

/** Writes a PAGE_DATA record's pages into `domain` (entries without data, e.g. XALLOC, write nothing). */
export function applyPageData(domain: Domain, record: PageDataRecord): void {
  const pfns = pagesWithData(record);
  checkPages(domain, pfns, record.data.length);
  domain.writePages(pfns, record.data);
}

function checkPages(domain: Domain, pfns: number[], dataLength: number): void {
  if (dataLength !== pfns.length * PAGE_SIZE) {
    throw new DomainError(DomainErrorCode.BAD_PAGE_DATA, `PAGE_DATA carries ${dataLength} bytes for ${pfns.length} pages`);
  }
  for (const pfn of pfns) {
    if (pfn >= domain.pageCount) {
      throw new DomainError(DomainErrorCode.IMAGE_PAGE_COUNT_MISMATCH, `PAGE_DATA holds pfn ${pfn} but the guest has ${domain.pageCount} pages`);
    }
  }
}

/** Records a batch ignores: markers and static data a simulated HVM guest has no use for. */
const IGNORED = new Set(['END', 'LIBXC_CONTEXT', 'STATIC_DATA_END', 'X86_CPUID_POLICY', 'X86_MSR_POLICY', 'VERIFY', 'OPTIONAL']);

/**
 * Collects the records of one checkpoint (or a whole image), then applies them to a domain in one step, so a
 * secondary never holds half a checkpoint: if the stream breaks before CHECKPOINT_END the batch is dropped and
 * the domain keeps its last complete state. Later records for the same pfn override earlier ones, as in Xen.
 * The batch keeps references to the records' page data: the caller must not reuse those buffers before apply.
 */
export class RecordBatch {
  private readonly pageRecords: PageDataRecord[] = [];
  private pageBytes = 0;
  vcpuContext: Uint8Array | undefined;
  hvmParams: HvmParam[] | undefined;
  tscInfo: TscInfo | undefined;
  deviceState: Uint8Array | undefined;
  xenstore: XenstoreEntry[] | undefined;

  /**
   * Adds one record. Checkpoint markers (CHECKPOINT, CHECKPOINT_END, CHECKPOINT_STATE) are the caller's to act
   * on and are refused here, as are PV-guest records, with DomainError IMAGE_UNSUPPORTED.
   */
  add(record: StreamRecord): void {
    switch (record.kind) {
      case 'PAGE_DATA':
        this.pageRecords.push(record);
        this.pageBytes += record.data.length;
        return;
      case 'X86_TSC_INFO':
        this.tscInfo = { mode: record.mode, khz: record.khz, nsec: record.nsec, incarnation: record.incarnation };
        return;
      case 'HVM_CONTEXT':
        this.vcpuContext = record.blob;
        return;
      case 'HVM_PARAMS':
        this.hvmParams = record.params;
        return;
      case 'EMULATOR_CONTEXT':
        this.deviceState = record.blob;
        return;
      case 'EMULATOR_XENSTORE_DATA':
        this.xenstore = record.entries;
        return;
      default:
        if (IGNORED.has(record.kind)) return;
        throw new DomainError(DomainErrorCode.IMAGE_UNSUPPORTED, `a ${record.kind} record cannot be applied to a simulated HVM guest`);
    }
  }

  /** PAGE_DATA records collected so far. */
  get pageDataRecords(): readonly PageDataRecord[] {
    return this.pageRecords;
  }

  /** Bytes of page data collected so far. */
  get pageDataBytes(): number {
    return this.pageBytes;
  }

  /**
   * Applies everything to `domain` (which must accept page writes: suspended, or not yet run). Everything is
   * validated first and the contexts that can refuse their blob go first with rollback, so a refused batch
   * leaves the domain as it was.
   */
  applyTo(domain: Domain): void {
    const perRecord = this.pageRecords.map((r) => pagesWithData(r));
    this.pageRecords.forEach((r, i) => checkPages(domain, perRecord[i]!, r.data.length));
    const oldVcpu = this.vcpuContext ? domain.getVcpuContext() : undefined;
    const oldDevice = this.deviceState ? domain.getDeviceState() : undefined;
    try {
      if (this.vcpuContext) domain.setVcpuContext(this.vcpuContext);
      if (this.deviceState) domain.setDeviceState(this.deviceState);
      // Only the first write can refuse (a running guest): the pages were validated above.
      this.pageRecords.forEach((r, i) => domain.writePages(perRecord[i]!, r.data));
    } catch (e) {
      if (oldVcpu) domain.setVcpuContext(oldVcpu);
      if (oldDevice) domain.setDeviceState(oldDevice);
      throw e;
    }
    if (this.hvmParams) domain.setHvmParams(this.hvmParams);
    if (this.tscInfo) domain.setTscInfo(this.tscInfo);
    if (this.xenstore) domain.setXenstore(this.xenstore);
  }
}
