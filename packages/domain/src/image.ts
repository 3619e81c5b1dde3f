import {
  decodeStream,
  EmulatorId,
  GuestType,
  MAX_PFNS_PER_PAGE_DATA,
  PAGE_SHIFT,
  PAGE_SIZE,
  StreamWriter,
  type StreamRecord,
} from '@colo/stream';
import type { Domain } from './domain.js';
import { DomainError, DomainErrorCode } from './errors.js';
import { RecordBatch, pagesWithData } from './apply.js';
import { decodeDeviceState } from './device-state.js';
import { SimulatedGuest, type SimulatedGuestOptions } from './simulated-guest.js';

/**
 * Save and restore of a plain libxl v2 image, as `xl save` writes one for an HVM guest:
 *
 *   libxl header, LIBXC_CONTEXT,
 *     libxc image header (v3), domain header (x86 HVM, page shift 12, Xen 4.17),
 *     X86_CPUID_POLICY, X86_MSR_POLICY, STATIC_DATA_END,
 *     PAGE_DATA x ceil(pages / 1024), X86_TSC_INFO, HVM_CONTEXT, HVM_PARAMS, END,
 *   EMULATOR_XENSTORE_DATA (only when the guest has xenstore entries), EMULATOR_CONTEXT, END
 */

/** The Xen version the domain header claims (the one whose format this image follows). */
export const IMAGE_XEN_VERSION = { major: 4, minor: 17 } as const;

/**
 * The simulated CPU's CPUID policy: leaf 0 (max basic leaf 1, vendor "ColoSimGuest") and leaf 1 (family 6),
 * as xen_cpuid_leaf_t entries {leaf, subleaf = 0xffffffff (none), eax, ebx, ecx, edx}.
 */
function cpuidPolicy(): Uint8Array {
  const b = Buffer.alloc(48);
  const vendor = Buffer.from('ColoSimGuest', 'latin1');
  const leaves = [
    [0, 0xffffffff, 1, vendor.readUInt32LE(0), vendor.readUInt32LE(8), vendor.readUInt32LE(4)],
    [1, 0xffffffff, 0x000606a6, 0, 0, 0],
  ];
  leaves.forEach((leaf, i) => leaf.forEach((v, j) => b.writeUInt32LE(v >>> 0, i * 24 + j * 4)));
  return b;
}

/** The MSR policy: one xen_msr_entry_t {idx u32, flags u32, val u64} for MSR_INTEL_PLATFORM_INFO (0xce) = 0. */
function msrPolicy(): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(0xce, 0);
  return b;
}

export interface SaveImageOptions {
  /** Size of the chunks yielded (default the StreamWriter's, 4 MiB). */
  chunkSize?: number;
}

/**
 * Writes a plain image of `domain` as a sequence of chunks (a large guest is never one buffer). The domain must
 * be suspended for the whole save (pages are read as views): DomainError NOT_SUSPENDED otherwise; a guest
 * resumed during the save is detected and the save fails the same way rather than write a torn image.
 */
export async function* saveImage(domain: Domain, opts: SaveImageOptions = {}): AsyncGenerator<Uint8Array> {
  const mustBeSuspended = () => {
    if (domain.state !== 'suspended') throw new DomainError(DomainErrorCode.NOT_SUSPENDED, 'saving an image needs a suspended guest');
  };
  mustBeSuspended();
  const w = new StreamWriter(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {});
  w.libxlHeader();
  w.record({ layer: 'libxl', kind: 'LIBXC_CONTEXT' });
  w.libxcHeaders({ guestType: GuestType.X86_HVM, pageShift: PAGE_SHIFT, xenMajor: IMAGE_XEN_VERSION.major, xenMinor: IMAGE_XEN_VERSION.minor });
  w.record({ layer: 'libxc', kind: 'X86_CPUID_POLICY', data: cpuidPolicy() });
  w.record({ layer: 'libxc', kind: 'X86_MSR_POLICY', data: msrPolicy() });
  w.record({ layer: 'libxc', kind: 'STATIC_DATA_END' });
  const pageOf = (pfn: number) => domain.page(pfn);
  // Consecutive pages as one view where the domain offers it: one copy per record instead of one view per page.
  const runs = domain.pages ? { pageRun: (first: number, count: number) => domain.pages!(first, count) } : undefined;
  for (let start = 0; start < domain.pageCount; start += MAX_PFNS_PER_PAGE_DATA) {
    const n = Math.min(MAX_PFNS_PER_PAGE_DATA, domain.pageCount - start);
    const pfns = new Array<number>(n);
    for (let i = 0; i < n; i++) pfns[i] = start + i;
    w.pageData(pfns, pageOf, runs);
    yield* w.take();
    mustBeSuspended();
  }
  w.record({ layer: 'libxc', kind: 'X86_TSC_INFO', ...domain.getTscInfo() });
  w.record({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: domain.getVcpuContext() });
  w.record({ layer: 'libxc', kind: 'HVM_PARAMS', params: domain.getHvmParams() });
  w.record({ layer: 'libxc', kind: 'END' });
  const xenstore = domain.getXenstore();
  if (xenstore.length > 0) w.record({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: EmulatorId.UNKNOWN, index: 0, entries: xenstore });
  w.record({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.UNKNOWN, index: 0, blob: domain.getDeviceState() });
  w.record({ layer: 'libxl', kind: 'END' });
  yield* w.take();
}

/** Collects a whole image into one buffer (tests, small guests). */
export async function saveImageToBuffer(domain: Domain, opts?: SaveImageOptions): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of saveImage(domain, opts)) chunks.push(c);
  return Buffer.concat(chunks);
}

export interface RestoreImageOptions {
  /** Refuse an image whose guest does not have this many pages (IMAGE_PAGE_COUNT_MISMATCH). */
  expectPageCount?: number;
  /** Options for the restored guest (random, clock, background rate, ...); its name, uuid and size come from the image. */
  guest?: Omit<SimulatedGuestOptions, 'memoryBytes' | 'name' | 'uuid' | 'startSuspended'>;
  /** Leave the restored guest suspended (default: it is resumed, like `xl restore` without -p). */
  paused?: boolean;
  /** Longest record accepted (default the codec's, Xen's 128 MiB). */
  maxRecordLength?: number;
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/**
 * Reads a plain image and returns the guest it describes. The whole image is decoded and checked before a
 * guest is built, so a corrupt, truncated or mismatched image yields an error and no guest: StreamError (the
 * codec's codes) for bytes that are not a valid stream, DomainError for a valid stream that is not a whole
 * simulated guest (missing or extra pages, missing HVM_CONTEXT/EMULATOR_CONTEXT, a PV image, a checkpoint).
 */
export async function restoreImage(source: Uint8Array | AsyncIterable<Uint8Array>, opts: RestoreImageOptions = {}): Promise<SimulatedGuest> {
  const batch = new RecordBatch();
  const decodeOpts = { kind: 'libxl' as const, ...(opts.maxRecordLength !== undefined ? { maxRecordLength: opts.maxRecordLength } : {}) };
  for await (const item of decodeStream(source instanceof Uint8Array ? once(source) : source, decodeOpts)) {
    if (item.item === 'libxc-domain-header') {
      if (item.header.guestType !== GuestType.X86_HVM) {
        throw new DomainError(DomainErrorCode.IMAGE_UNSUPPORTED, `the image is of a PV guest (type ${item.header.guestType}); the simulated guest is HVM`);
      }
    } else if (item.item === 'record') {
      refuseCheckpointRecords(item.record);
      batch.add(item.record);
    }
  }
  if (!batch.vcpuContext) throw new DomainError(DomainErrorCode.IMAGE_INCOMPLETE, 'the image has no HVM_CONTEXT record');
  if (!batch.deviceState) throw new DomainError(DomainErrorCode.IMAGE_INCOMPLETE, 'the image has no EMULATOR_CONTEXT record (device state)');
  const device = decodeDeviceState(batch.deviceState);
  const pageCount = device.pageCount;
  if (opts.expectPageCount !== undefined && opts.expectPageCount !== pageCount) {
    throw new DomainError(DomainErrorCode.IMAGE_PAGE_COUNT_MISMATCH, `the image is of a guest of ${pageCount} pages, expected ${opts.expectPageCount}`);
  }
  checkCoverage(batch, pageCount);

  const guest = new SimulatedGuest({ ...opts.guest, name: device.name, uuid: device.uuid, memoryBytes: pageCount * PAGE_SIZE, startSuspended: true });
  try {
    batch.applyTo(guest);
    if (!guest.storeValid) throw new DomainError(DomainErrorCode.IMAGE_BAD_MEMORY, "the image's pages hold no valid simulated-guest store (superblock)");
  } catch (e) {
    guest.destroy();
    throw e;
  }
  if (!opts.paused) await guest.resume();
  return guest;
}

function refuseCheckpointRecords(r: StreamRecord): void {
  if (r.kind === 'CHECKPOINT' || r.kind === 'CHECKPOINT_END' || r.kind === 'CHECKPOINT_STATE' || r.kind === 'CHECKPOINT_DIRTY_PFN_LIST') {
    throw new DomainError(DomainErrorCode.IMAGE_UNSUPPORTED, `a ${r.kind} record: this is a checkpointed (Remus/COLO) stream, not a save image`);
  }
}

/** Every pfn 0..pageCount-1 must be present, and none beyond. */
function checkCoverage(batch: RecordBatch, pageCount: number): void {
  const seen = new Uint8Array(pageCount);
  let covered = 0;
  for (const r of batch.pageDataRecords) {
    for (const pfn of pagesWithData(r)) {
      if (pfn >= pageCount) {
        throw new DomainError(DomainErrorCode.IMAGE_PAGE_COUNT_MISMATCH, `the image holds pfn ${pfn} but its guest has ${pageCount} pages`);
      }
      if (seen[pfn] === 0) {
        seen[pfn] = 1;
        covered++;
      }
    }
  }
  if (covered !== pageCount) {
    throw new DomainError(DomainErrorCode.IMAGE_PAGE_COUNT_MISMATCH, `the image holds ${covered} of its guest's ${pageCount} pages`);
  }
}
