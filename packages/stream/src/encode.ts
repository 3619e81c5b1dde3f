/**
 * Encoders, byte for byte Xen's layout: headers big-endian (except the xl header and the libxc domain header,
 * which are little-endian), records little-endian, each record body zero-padded to 8 bytes. Encoders write only
 * valid streams: anything the format cannot carry (or that Xen's reader would refuse) is an UNENCODABLE error.
 */
import { allocBytes, dataView, pad8 } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';
import {
  EmulatorId,
  GuestType,
  LIBXC_ID,
  LIBXC_VERSION,
  LIBXL_IDENT,
  LIBXL_VERSION,
  LibxcType,
  LibxlType,
  MAX_PFNS_PER_PAGE_DATA,
  OPTIONAL_RECORD_FLAG,
  PAGE_SHIFT,
  PAGE_SIZE,
  XL_BYTEORDER,
  XL_MAGIC,
  pageTypeCarriesData,
  type LibxcDomainHeader,
  type LibxcImageHeader,
  type LibxlHeader,
  type StreamRecord,
  type XlHeader,
} from './types.js';

/** Size of a record header (type u32, length u32). */
export const RECORD_HEADER_SIZE = 8;
export const XL_HEADER_SIZE = 48;
export const LIBXL_HEADER_SIZE = 16;
export const LIBXC_IMAGE_HEADER_SIZE = 24;
export const LIBXC_DOMAIN_HEADER_SIZE = 16;

/** libxl header option bits. */
export const LibxlOption = { BIG_ENDIAN: 1, LEGACY: 2 } as const;
/** xl header mandatory flags. */
export const XlMandatoryFlag = { CONFIG_JSON: 1, STREAM_V2: 2 } as const;

const MAX_PFN = 2 ** 52 - 1;

function unencodable(message: string): StreamError {
  return new StreamError(StreamErrorCode.UNENCODABLE, -1, message);
}

function u32(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw unencodable(`${name} must be an integer in 0..2^32-1, got ${v}`);
  return v;
}

function u16(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw unencodable(`${name} must be an integer in 0..65535, got ${v}`);
  return v;
}

function u64(name: string, v: bigint): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw unencodable(`${name} must be a bigint in 0..2^64-1, got ${String(v)}`);
  return v;
}

function pfnOf(name: string, v: number): number {
  if (!isPfn(v)) throw unencodable(`${name} must be a pfn in 0..2^52-1, got ${v}`);
  return v;
}

function isPfn(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= MAX_PFN;
}

// ------------------------------------------------------------------------------------------------ headers

export function encodeXlHeader(h: XlHeader): Uint8Array {
  const flags = u32('xl mandatoryFlags', h.mandatoryFlags);
  if ((flags & ~3) !== 0) throw unencodable(`xl mandatoryFlags ${flags}: only bits 0 (JSON config) and 1 (v2 stream) exist`);
  if ((flags & XlMandatoryFlag.STREAM_V2) === 0) throw unencodable('xl mandatoryFlags must set bit 1 (v2 stream): colo writes no legacy streams');
  const out = new Uint8Array(XL_HEADER_SIZE + h.optionalData.length);
  for (let i = 0; i < XL_MAGIC.length; i++) out[i] = XL_MAGIC.charCodeAt(i);
  const v = dataView(out);
  v.setUint32(32, XL_BYTEORDER, true);
  v.setUint32(36, flags, true);
  v.setUint32(40, u32('xl optionalFlags', h.optionalFlags), true);
  v.setUint32(44, h.optionalData.length, true);
  out.set(h.optionalData, XL_HEADER_SIZE);
  return out;
}

export function encodeLibxlHeader(h: Partial<LibxlHeader> = {}): Uint8Array {
  const options = u32('libxl header options', h.options ?? 0);
  if ((options & ~LibxlOption.LEGACY) !== 0) throw unencodable(`libxl header options ${options}: only bit 1 (legacy) may be set; big-endian streams are not written`);
  const out = new Uint8Array(LIBXL_HEADER_SIZE);
  const v = dataView(out);
  v.setBigUint64(0, LIBXL_IDENT, false);
  v.setUint32(8, LIBXL_VERSION, false);
  v.setUint32(12, options, false);
  return out;
}

export function encodeLibxcImageHeader(h: Partial<LibxcImageHeader> = {}): Uint8Array {
  const version = h.version ?? LIBXC_VERSION;
  if (version !== 2 && version !== 3) throw unencodable(`libxc image version ${version}: only 2 and 3 exist`);
  const options = h.options ?? 0;
  if (options !== 0) throw unencodable(`libxc image options ${options}: must be 0 (little-endian, no reserved bits)`);
  const out = new Uint8Array(LIBXC_IMAGE_HEADER_SIZE);
  const v = dataView(out);
  v.setBigUint64(0, 0xffffffffffffffffn, false);
  v.setUint32(8, LIBXC_ID, false);
  v.setUint32(12, version, false);
  // options u16, reserved u16, reserved u32: all zero
  return out;
}

export function encodeLibxcDomainHeader(h: LibxcDomainHeader): Uint8Array {
  if (h.guestType !== GuestType.X86_PV && h.guestType !== GuestType.X86_HVM) throw unencodable(`guest type ${h.guestType}: only 1 (x86 PV) and 2 (x86 HVM) exist`);
  if (h.pageShift !== PAGE_SHIFT) throw unencodable(`page shift ${h.pageShift}: must be ${PAGE_SHIFT}`);
  const out = new Uint8Array(LIBXC_DOMAIN_HEADER_SIZE);
  const v = dataView(out);
  v.setUint32(0, h.guestType, true);
  v.setUint16(4, u16('page shift', h.pageShift), true);
  v.setUint32(8, u32('xen major', h.xenMajor), true);
  v.setUint32(12, u32('xen minor', h.xenMinor), true);
  return out;
}

// ------------------------------------------------------------------------------------------------ records

/** A record with the given type and body: header, body, zero pad to 8. */
export function encodeRawRecord(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER_SIZE + pad8(body.length));
  const v = dataView(out);
  v.setUint32(0, u32('record type', type), true);
  v.setUint32(4, u32('record length', body.length), true);
  out.set(body, RECORD_HEADER_SIZE);
  return out;
}

function emulatorHeader(emulatorId: number, index: number, extra: number): { body: Uint8Array; view: DataView } {
  if (emulatorId !== EmulatorId.UNKNOWN && emulatorId !== EmulatorId.QEMU_TRADITIONAL && emulatorId !== EmulatorId.QEMU_UPSTREAM) {
    throw unencodable(`emulator id ${emulatorId}: only 0 (unknown), 1 (qemu-traditional), 2 (qemu-upstream) exist`);
  }
  const body = new Uint8Array(8 + extra);
  const view = dataView(body);
  view.setUint32(0, emulatorId, true);
  view.setUint32(4, u32('emulator index', index), true);
  return { body, view };
}

const utf8 = new TextEncoder();

function xenstoreBody(emulatorId: number, index: number, entries: { key: string; value: string }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const { key, value } of entries) {
    for (const s of [key, value]) {
      if (s.includes('\0')) throw unencodable(`xenstore key/value ${JSON.stringify(s)} contains NUL, which the record uses as separator`);
      parts.push(utf8.encode(s));
    }
  }
  const size = parts.reduce((n, p) => n + p.length + 1, 0);
  const { body } = emulatorHeader(emulatorId, index, size);
  let at = 8;
  for (const p of parts) {
    body.set(p, at);
    at += p.length + 1; // the NUL terminator is already zero
  }
  return body;
}

/** The body (unpadded) of a record: what its `length` field counts. */
export function encodeRecordBody(r: StreamRecord): { type: number; body: Uint8Array } {
  if (r.layer === 'libxl') {
    switch (r.kind) {
      case 'END':
      case 'LIBXC_CONTEXT':
      case 'CHECKPOINT_END':
        return { type: LibxlType[r.kind], body: new Uint8Array(0) };
      case 'EMULATOR_XENSTORE_DATA':
        return { type: LibxlType.EMULATOR_XENSTORE_DATA, body: xenstoreBody(r.emulatorId, r.index, r.entries) };
      case 'EMULATOR_CONTEXT': {
        const { body } = emulatorHeader(r.emulatorId, r.index, r.blob.length);
        body.set(r.blob, 8);
        return { type: LibxlType.EMULATOR_CONTEXT, body };
      }
      case 'CHECKPOINT_STATE': {
        const body = new Uint8Array(4);
        dataView(body).setUint32(0, u32('control id', r.controlId), true);
        return { type: LibxlType.CHECKPOINT_STATE, body };
      }
      case 'OPTIONAL':
        return { type: optionalType(r.type), body: r.body };
    }
  }
  switch (r.kind) {
    case 'END':
    case 'VERIFY':
    case 'CHECKPOINT':
    case 'STATIC_DATA_END':
      return { type: LibxcType[r.kind], body: new Uint8Array(0) };
    case 'PAGE_DATA':
      return { type: LibxcType.PAGE_DATA, body: pageDataBody(r.pfns, r.types, r.data) };
    case 'SHARED_INFO':
      if (r.data.length !== PAGE_SIZE) throw unencodable(`SHARED_INFO must be ${PAGE_SIZE} bytes, got ${r.data.length}`);
      return { type: LibxcType.SHARED_INFO, body: r.data };
    case 'X86_TSC_INFO': {
      const body = new Uint8Array(24);
      const v = dataView(body);
      v.setUint32(0, u32('tsc mode', r.mode), true);
      v.setUint32(4, u32('tsc khz', r.khz), true);
      v.setBigUint64(8, u64('tsc nsec', r.nsec), true);
      v.setUint32(16, u32('tsc incarnation', r.incarnation), true);
      return { type: LibxcType.X86_TSC_INFO, body };
    }
    case 'HVM_CONTEXT':
      if (r.blob.length === 0) throw unencodable('HVM_CONTEXT must not be empty');
      return { type: LibxcType.HVM_CONTEXT, body: r.blob };
    case 'HVM_PARAMS': {
      const body = new Uint8Array(8 + 16 * r.params.length);
      const v = dataView(body);
      v.setUint32(0, r.params.length, true);
      r.params.forEach((p, i) => {
        v.setBigUint64(8 + 16 * i, u64('hvm param index', p.index), true);
        v.setBigUint64(16 + 16 * i, u64('hvm param value', p.value), true);
      });
      return { type: LibxcType.HVM_PARAMS, body };
    }
    case 'CHECKPOINT_DIRTY_PFN_LIST': {
      const body = new Uint8Array(8 * r.pfns.length);
      const v = dataView(body);
      // The name is built only for an error: these loops run once per page.
      r.pfns.forEach((p, i) => writeEntry(v, 8 * i, isPfn(p) ? p : pfnOf(`dirty pfn[${i}]`, p), 0));
      return { type: LibxcType.CHECKPOINT_DIRTY_PFN_LIST, body };
    }
    case 'X86_CPUID_POLICY':
    case 'X86_MSR_POLICY': {
      const leaf = r.kind === 'X86_CPUID_POLICY' ? 24 : 16;
      if (r.data.length === 0 || r.data.length % leaf !== 0) throw unencodable(`${r.kind} must be a non-empty array of ${leaf}-byte entries, got ${r.data.length} bytes`);
      return { type: LibxcType[r.kind], body: r.data };
    }
    case 'TOOLSTACK':
      throw unencodable('TOOLSTACK records are deprecated and refused by Xen; never write them');
    case 'X86_PV_INFO':
    case 'X86_PV_P2M_FRAMES':
    case 'X86_PV_VCPU_BASIC':
    case 'X86_PV_VCPU_EXTENDED':
    case 'X86_PV_VCPU_XSAVE':
    case 'X86_PV_VCPU_MSRS':
      return { type: LibxcType[r.kind], body: r.body };
    case 'OPTIONAL':
      return { type: optionalType(r.type), body: r.body };
  }
}

function optionalType(type: number): number {
  if (!Number.isInteger(type) || type < OPTIONAL_RECORD_FLAG || type > 0xffffffff) {
    throw unencodable(`optional record type ${type} must be in 0x80000000..0xffffffff`);
  }
  return type;
}

/** A whole record: header, body, zero pad to 8 bytes. */
export function encodeRecord(r: StreamRecord): Uint8Array {
  const { type, body } = encodeRecordBody(r);
  return encodeRawRecord(type, body);
}

// ---------------------------------------------------------------------------------------------- page data

/** Writes a PAGE_DATA entry: pfn in bits 0-51, page type in bits 60-63, as two u32s (no BigInt). */
function writeEntry(v: DataView, at: number, pfn: number, type: number): void {
  v.setUint32(at, pfn % 0x100000000, true);
  v.setUint32(at + 4, Math.floor(pfn / 0x100000000) + type * 0x10000000, true);
}

function pageType(types: ArrayLike<number> | undefined, i: number): number {
  const t = types ? types[i]! : 0;
  if (!Number.isInteger(t) || t < 0 || t > 15 || (t >= 5 && t <= 8)) throw unencodable(`page type ${t} of entry ${i} is not a valid PAGE_DATA type`);
  return t;
}

function pageDataBody(pfns: ArrayLike<number>, types: ArrayLike<number>, data: Uint8Array): Uint8Array {
  const n = pfns.length;
  if (n === 0) throw unencodable('PAGE_DATA needs at least one pfn');
  if (types.length !== n) throw unencodable(`PAGE_DATA has ${n} pfns but ${types.length} types`);
  let withData = 0;
  for (let i = 0; i < n; i++) if (pageTypeCarriesData(pageType(types, i))) withData++;
  if (data.length !== withData * PAGE_SIZE) throw unencodable(`PAGE_DATA has ${withData} pages with data, so needs ${withData * PAGE_SIZE} data bytes, got ${data.length}`);
  const body = new Uint8Array(8 + 8 * n + data.length);
  const v = dataView(body);
  v.setUint32(0, n, true);
  for (let i = 0; i < n; i++) {
    const pfn = pfns[i]!;
    writeEntry(v, 8 + 8 * i, isPfn(pfn) ? pfn : pfnOf(`pfn[${i}]`, pfn), types[i]!);
  }
  body.set(data, 8 + 8 * n);
  return body;
}

export interface PageDataOptions {
  /** Page type of each pfn (PageType values); default all NORMAL. Pages of types without data are not fetched. */
  types?: ArrayLike<number>;
  /** Pfns per record, 1..1024 (Xen's batch, the default). */
  batch?: number;
  /**
   * A view of `count` consecutive pages from `firstPfn` on (count x 4096 bytes, in pfn order), for callers whose
   * memory is one buffer (Domain.pages): a run of consecutive pfns then costs one view instead of one per page
   * (100,000 views were ~35 ms of a 100,000-page checkpoint). Without it, `pageOf` is asked for every page.
   */
  pageRun?: (firstPfn: number, count: number) => Uint8Array;
}

/** Where page records are written: a flat buffer or a StreamWriter's chunks. */
export interface ByteSink {
  write(bytes: Uint8Array): void;
}

/** The encoded size of `n` pfns of which `withData` carry pages, in records of at most `batch` pfns. */
export function pageDataSize(n: number, withData: number, batch: number): number {
  return Math.ceil(n / batch) * (RECORD_HEADER_SIZE + 8) + 8 * n + PAGE_SIZE * withData;
}

function batchOf(opts: PageDataOptions | undefined): number {
  const batch = opts?.batch ?? MAX_PFNS_PER_PAGE_DATA;
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_PFNS_PER_PAGE_DATA) throw unencodable(`page batch ${batch} must be 1..${MAX_PFNS_PER_PAGE_DATA}`);
  return batch;
}

/** Counts the pfns whose type carries data, validating every type and pfn first (so nothing half-written). */
function countPages(pfns: ArrayLike<number>, types: ArrayLike<number> | undefined): number {
  if (types && types.length !== pfns.length) throw unencodable(`${pfns.length} pfns but ${types.length} page types`);
  let withData = 0;
  for (let i = 0; i < pfns.length; i++) {
    // The name is built only for an error: this loop runs once per page.
    if (!isPfn(pfns[i]!)) pfnOf(`pfn[${i}]`, pfns[i]!);
    if (types === undefined || pageTypeCarriesData(pageType(types, i))) withData++;
  }
  return withData;
}

/**
 * Writes PAGE_DATA records for `pfns` into `sink`, fetching each page from `pageOf` (typically a view into guest
 * memory) and handing it to the sink once. The record header and entry table of each batch go out as one piece.
 */
export function writePageData(sink: ByteSink, pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, opts?: PageDataOptions): void {
  forEachPageDataRecord(pfns, pageOf, opts, (head, pages) => {
    sink.write(head);
    for (const run of pages) sink.write(run);
  }, false);
}

/**
 * PAGE_DATA records for `pfns` as pieces, without copying a single page: each record is its header and entry
 * table (a fresh small buffer) followed by views of the pages as `pageOf` returned them, runs of pages that lie
 * back to back in one buffer (consecutive pfns of guest memory) joined into one view. Concatenated, the pieces
 * of a record are exactly encodePageData's bytes for it. For a transport that writes several buffers at once
 * (writev): the views reference guest memory, so the pages must not change until the transport has written them.
 */
export function pageDataRecordPieces(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, opts?: PageDataOptions): Uint8Array[][] {
  const records: Uint8Array[][] = [];
  forEachPageDataRecord(pfns, pageOf, opts, (head, pages) => records.push([head, ...pages]), true);
  return records;
}

/**
 * The one PAGE_DATA encoder: calls `emit` per record of at most `batch` pfns with the record's header + entry
 * table and its pages as views (runs of adjacent pages joined). With `freshHeads` every record gets its own
 * header buffer (the caller keeps them); without, one buffer is reused (the caller copies it before returning).
 */
function forEachPageDataRecord(
  pfns: ArrayLike<number>,
  pageOf: (pfn: number) => Uint8Array,
  opts: PageDataOptions | undefined,
  emit: (head: Uint8Array, pages: Uint8Array[]) => void,
  freshHeads: boolean,
): void {
  const batch = batchOf(opts);
  const types = opts?.types;
  const pageRun = opts?.pageRun;
  countPages(pfns, types);
  const headBytes = (n: number) => RECORD_HEADER_SIZE + 8 + 8 * n;
  let shared = freshHeads ? undefined : new Uint8Array(headBytes(Math.min(batch, pfns.length)));
  for (let start = 0; start < pfns.length; start += batch) {
    const n = Math.min(batch, pfns.length - start);
    const head = shared ? shared.subarray(0, headBytes(n)) : new Uint8Array(headBytes(n));
    const hv = dataView(head);
    // Entries are written as u32 pairs straight into a Uint32Array on little-endian hosts (all x86 and ARM
    // Linux ones); the DataView path keeps big-endian hosts correct.
    const h32 = LITTLE_ENDIAN_HOST ? new Uint32Array(head.buffer, head.byteOffset, head.length / 4) : undefined;
    let withData = 0;
    for (let i = 0; i < n; i++) {
      const t = types ? types[start + i]! : 0;
      if (t <= 4 || (t >= 9 && t <= 12)) withData++;
      const pfn = pfns[start + i]!;
      const lo = pfn >>> 0; // ToUint32 is exact modulo 2^32 for any pfn < 2^53
      const hi = (pfn - lo) / 0x100000000 + t * 0x10000000;
      if (h32) {
        h32[4 + 2 * i] = lo;
        h32[5 + 2 * i] = hi;
      } else {
        hv.setUint32(16 + 8 * i, lo, true);
        hv.setUint32(20 + 8 * i, hi, true);
      }
    }
    hv.setUint32(0, LibxcType.PAGE_DATA, true);
    hv.setUint32(4, 8 + 8 * n + PAGE_SIZE * withData, true);
    hv.setUint32(8, n, true);
    hv.setUint32(12, 0, true);
    // Pages that lie back to back in one buffer (consecutive pfns of guest memory) go out as one view:
    // a single large copy (or iovec) is much cheaper than a thousand 4 KiB ones.
    const pages: Uint8Array[] = [];
    let run: Uint8Array | undefined;
    let runBuffer: ArrayBufferLike | undefined;
    let runEnd = 0;
    // Without types every page carries data (the common case: this loop runs once per page, so it stays lean).
    const carries = (j: number) => types === undefined || pageTypeCarriesData(pageType(types, start + j));
    for (let i = 0; i < n; i++) {
      if (types !== undefined && !carries(i)) continue;
      const pfn = pfns[start + i]!;
      if (pageRun) {
        let k = 1;
        while (i + k < n && pfns[start + i + k] === pfn + k && carries(i + k)) k++;
        const view = pageRun(pfn, k);
        if (view.length !== k * PAGE_SIZE) throw unencodable(`pageRun(${pfn}, ${k}) returned ${view.length} bytes, expected ${k * PAGE_SIZE}`);
        pages.push(view);
        i += k - 1;
        continue;
      }
      const page = pageOf(pfn);
      if (page.length !== PAGE_SIZE) throw unencodable(`pageOf(${pfn}) returned ${page.length} bytes, expected ${PAGE_SIZE}`);
      const offset = page.byteOffset;
      if (run !== undefined && offset === runEnd && page.buffer === runBuffer) {
        runEnd += PAGE_SIZE;
      } else {
        if (run !== undefined) pages.push(new Uint8Array(runBuffer!, run.byteOffset, runEnd - run.byteOffset));
        run = page;
        runBuffer = page.buffer;
        runEnd = offset + PAGE_SIZE;
      }
    }
    if (run !== undefined) pages.push(new Uint8Array(runBuffer!, run.byteOffset, runEnd - run.byteOffset));
    emit(head, pages);
  }
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * PAGE_DATA records for `pfns` (ceil(n/batch) records of at most 1024 pfns, as Xen batches them), written into
 * one preallocated buffer with each page copied exactly once from `pageOf(pfn)`.
 */
export function encodePageData(pfns: ArrayLike<number>, pageOf: (pfn: number) => Uint8Array, opts?: PageDataOptions): Uint8Array {
  const batch = batchOf(opts);
  const withData = countPages(pfns, opts?.types);
  // Every byte is written below (headers, entries, pages), so uninitialised memory is safe.
  const out = allocBytes(pageDataSize(pfns.length, withData, batch));
  let at = 0;
  writePageData(
    {
      write(bytes) {
        out.set(bytes, at);
        at += bytes.length;
      },
    },
    pfns,
    pageOf,
    opts,
  );
  return out;
}
