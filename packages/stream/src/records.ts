/**
 * Record layouts and the per-record checks of Xen's reader and verifier: length rules (checked from the record
 * header, before the body is buffered, wherever the rule depends on the length alone) and field rules (checked
 * on the body). Which records are allowed *where* is the decoder's business, not this module's.
 */
import { dataView } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';
import { recordTypeName } from './names.js';
import {
  EmulatorId,
  LibxcType,
  LibxlType,
  OPTIONAL_RECORD_FLAG,
  PAGE_SIZE,
  type HvmParam,
  type LibxcRecord,
  type LibxlRecord,
  type PageDataRecord,
  type XenstoreEntry,
} from './types.js';

const C = StreamErrorCode;

export function isOptionalType(type: number): boolean {
  return type >>> 0 >= OPTIONAL_RECORD_FLAG;
}

function badLength(layer: 'libxl' | 'libxc', type: number, at: number, length: number, rule: string): StreamError {
  return new StreamError(C.BAD_LENGTH, at, `${layer} ${recordTypeName(layer, type)} record has length ${length}; ${rule}`);
}

function badRecord(layer: 'libxl' | 'libxc', type: number, at: number, what: string): StreamError {
  return new StreamError(C.BAD_RECORD, at, `${layer} ${recordTypeName(layer, type)} record: ${what}`);
}

// ------------------------------------------------------------------------------------------------- libxl

export function isKnownLibxlType(type: number): boolean {
  return type <= LibxlType.CHECKPOINT_STATE;
}

/** Length rules of libxl records that the header alone decides. */
export function checkLibxlLength(type: number, length: number, at: number): void {
  switch (type) {
    case LibxlType.END:
    case LibxlType.LIBXC_CONTEXT:
    case LibxlType.CHECKPOINT_END:
      if (length !== 0) throw badLength('libxl', type, at, length, 'it must be 0');
      return;
    case LibxlType.EMULATOR_XENSTORE_DATA:
    case LibxlType.EMULATOR_CONTEXT:
      if (length < 8) throw badLength('libxl', type, at, length, 'it needs at least the 8-byte emulator header');
      return;
    case LibxlType.CHECKPOINT_STATE:
      if (length !== 4) throw badLength('libxl', type, at, length, 'it must be 4 (a u32 control id)');
      return;
  }
}

const utf8 = new TextDecoder('utf-8');

function emulatorHeader(type: number, body: Uint8Array, at: number): { emulatorId: number; index: number } {
  const v = dataView(body);
  const emulatorId = v.getUint32(0, true);
  if (emulatorId !== EmulatorId.UNKNOWN && emulatorId !== EmulatorId.QEMU_TRADITIONAL && emulatorId !== EmulatorId.QEMU_UPSTREAM) {
    throw badRecord('libxl', type, at, `unknown emulator id ${emulatorId} (0 unknown, 1 qemu-traditional, 2 qemu-upstream)`);
  }
  return { emulatorId, index: v.getUint32(4, true) };
}

function xenstoreEntries(type: number, data: Uint8Array, at: number): XenstoreEntry[] {
  if (data.length === 0) return [];
  if (data[data.length - 1] !== 0) throw badRecord('libxl', type, at, 'xenstore data is not NUL-terminated');
  const strings: string[] = [];
  let start = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0) {
      strings.push(utf8.decode(data.subarray(start, i)));
      start = i + 1;
    }
  }
  if (strings.length % 2 !== 0) throw badRecord('libxl', type, at, `xenstore data holds ${strings.length} strings; keys and values must pair up`);
  const entries: XenstoreEntry[] = [];
  for (let i = 0; i < strings.length; i += 2) entries.push({ key: strings[i]!, value: strings[i + 1]! });
  return entries;
}

/** A libxl record's body (unpadded, length already checked) as a typed record. */
export function parseLibxlBody(type: number, body: Uint8Array, at: number): LibxlRecord {
  switch (type) {
    case LibxlType.END:
      return { layer: 'libxl', kind: 'END' };
    case LibxlType.LIBXC_CONTEXT:
      return { layer: 'libxl', kind: 'LIBXC_CONTEXT' };
    case LibxlType.CHECKPOINT_END:
      return { layer: 'libxl', kind: 'CHECKPOINT_END' };
    case LibxlType.EMULATOR_XENSTORE_DATA: {
      const h = emulatorHeader(type, body, at);
      return { layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', ...h, entries: xenstoreEntries(type, body.subarray(8), at) };
    }
    case LibxlType.EMULATOR_CONTEXT: {
      const h = emulatorHeader(type, body, at);
      return { layer: 'libxl', kind: 'EMULATOR_CONTEXT', ...h, blob: body.subarray(8) };
    }
    case LibxlType.CHECKPOINT_STATE:
      return { layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: dataView(body).getUint32(0, true) };
    default:
      return { layer: 'libxl', kind: 'OPTIONAL', type: type >>> 0, body };
  }
}

// ------------------------------------------------------------------------------------------------- libxc

export function isKnownLibxcType(type: number): boolean {
  return type <= LibxcType.X86_MSR_POLICY;
}

/** Records only an x86 PV guest's stream may carry, and only an HVM guest's. */
export const PV_ONLY_TYPES: ReadonlySet<number> = new Set([
  LibxcType.X86_PV_INFO,
  LibxcType.X86_PV_P2M_FRAMES,
  LibxcType.X86_PV_VCPU_BASIC,
  LibxcType.X86_PV_VCPU_EXTENDED,
  LibxcType.X86_PV_VCPU_XSAVE,
  LibxcType.X86_PV_VCPU_MSRS,
  LibxcType.SHARED_INFO,
]);
export const HVM_ONLY_TYPES: ReadonlySet<number> = new Set([LibxcType.HVM_CONTEXT, LibxcType.HVM_PARAMS]);

/** Length rules of libxc records that the header alone decides. */
export function checkLibxcLength(type: number, length: number, at: number): void {
  const T = LibxcType;
  switch (type) {
    case T.END:
    case T.VERIFY:
    case T.CHECKPOINT:
    case T.STATIC_DATA_END:
      if (length !== 0) throw badLength('libxc', type, at, length, 'it must be 0');
      return;
    case T.PAGE_DATA:
      if (length < 16) throw badLength('libxc', type, at, length, 'it needs the 8-byte count header and at least one pfn entry');
      return;
    case T.SHARED_INFO:
      if (length !== PAGE_SIZE) throw badLength('libxc', type, at, length, `it must be ${PAGE_SIZE}`);
      return;
    case T.X86_TSC_INFO:
      if (length !== 24) throw badLength('libxc', type, at, length, 'it must be 24');
      return;
    case T.HVM_CONTEXT:
      if (length === 0) throw badLength('libxc', type, at, length, 'an HVM context cannot be empty');
      return;
    case T.HVM_PARAMS:
      if (length < 8 || (length - 8) % 16 !== 0) throw badLength('libxc', type, at, length, 'it must be 8 + 16 x count');
      return;
    case T.CHECKPOINT_DIRTY_PFN_LIST:
      if (length % 8 !== 0) throw badLength('libxc', type, at, length, 'it must be a multiple of 8 (u64 pfns)');
      return;
    case T.X86_CPUID_POLICY:
      if (length === 0 || length % 24 !== 0) throw badLength('libxc', type, at, length, 'it must be a non-zero multiple of 24 (CPUID leaves)');
      return;
    case T.X86_MSR_POLICY:
      if (length === 0 || length % 16 !== 0) throw badLength('libxc', type, at, length, 'it must be a non-zero multiple of 16 (MSR entries)');
      return;
    case T.X86_PV_INFO:
      if (length !== 8) throw badLength('libxc', type, at, length, 'it must be 8');
      return;
    case T.X86_PV_P2M_FRAMES:
      if (length < 8 || length % 8 !== 0) throw badLength('libxc', type, at, length, 'it must be a non-zero multiple of 8');
      return;
    case T.X86_PV_VCPU_BASIC:
    case T.X86_PV_VCPU_EXTENDED:
    case T.X86_PV_VCPU_XSAVE:
    case T.X86_PV_VCPU_MSRS:
      if (length < 8) throw badLength('libxc', type, at, length, 'it needs at least the 8-byte vcpu header');
      return;
  }
}

/**
 * PAGE_DATA is decoded in three steps so its pages need no copy even when the record header and entry table
 * arrived in an earlier chunk than the pages: the 8-byte count header, the entry table, then the page bytes.
 * Entries are read as two u32s (no BigInt): bits 0-51 pfn, 52-59 reserved, 60-63 page type.
 */

/** The count header: returns the number of entries. `length` is the record's body length. */
export function parsePageDataHead(head: Uint8Array, length: number, at: number): number {
  const v = dataView(head);
  const count = v.getUint32(0, true);
  if (count === 0) throw badRecord('libxc', LibxcType.PAGE_DATA, at, 'count is 0; a PAGE_DATA record carries at least one pfn');
  if (v.getUint32(4, true) !== 0) throw badRecord('libxc', LibxcType.PAGE_DATA, at, 'reserved field is not zero');
  if (length < 8 + 8 * count) {
    throw new StreamError(C.BAD_LENGTH, at, `libxc PAGE_DATA record has length ${length}, too short for its ${count} pfn entries (${8 + 8 * count} bytes)`);
  }
  return count;
}

/** The entry table (count x 8 bytes): pfns, page types, and how many page bytes must follow. */
export function parsePageTable(table: Uint8Array, length: number, at: number): { pfns: number[]; types: Uint8Array; dataLength: number } {
  const v = dataView(table);
  const count = table.length / 8;
  const pfns = new Array<number>(count);
  const types = new Uint8Array(count);
  let withData = 0;
  for (let i = 0, o = 0; i < count; i++, o += 8) {
    const lo = v.getUint32(o, true);
    const hi = v.getUint32(o + 4, true);
    const type = hi >>> 28;
    if ((hi & 0x0ff00000) !== 0) {
      throw badRecord('libxc', LibxcType.PAGE_DATA, at, `pfn entry ${i} sets reserved bits 52-59 (high word 0x${hi.toString(16)})`);
    }
    // Types 5-8 are invalid; 0-4 and 9-12 carry a page (bit 3 is "pinned"), 13-15 do not.
    if (type >= 5 && type <= 8) throw badRecord('libxc', LibxcType.PAGE_DATA, at, `pfn entry ${i} has invalid page type ${type}`);
    if (type <= 4 || type >= 9 && type <= 12) withData++;
    pfns[i] = (hi & 0xfffff) * 0x100000000 + lo;
    types[i] = type;
  }
  const expected = 8 + table.length + PAGE_SIZE * withData;
  if (length !== expected) {
    throw new StreamError(C.BAD_LENGTH, at, `libxc PAGE_DATA record has length ${length}; ${count} entries with ${withData} pages of data need exactly ${expected}`);
  }
  return { pfns, types, dataLength: PAGE_SIZE * withData };
}

/** A whole PAGE_DATA body at once (for callers holding complete records). */
export function parsePageData(body: Uint8Array, at: number): PageDataRecord {
  const count = parsePageDataHead(body, body.length, at);
  const { pfns, types } = parsePageTable(body.subarray(8, 8 + 8 * count), body.length, at);
  return { layer: 'libxc', kind: 'PAGE_DATA', pfns, types, data: body.subarray(8 + 8 * count) };
}

function dirtyPfns(body: Uint8Array, at: number): number[] {
  const v = dataView(body);
  const pfns = new Array<number>(body.length / 8);
  for (let i = 0; i < pfns.length; i++) {
    const hi = v.getUint32(8 * i + 4, true);
    if (hi > 0xfffff) throw badRecord('libxc', LibxcType.CHECKPOINT_DIRTY_PFN_LIST, at, `pfn ${i} is above 2^52 (high word 0x${hi.toString(16)})`);
    pfns[i] = hi * 0x100000000 + v.getUint32(8 * i, true);
  }
  return pfns;
}

function hvmParams(body: Uint8Array, at: number): HvmParam[] {
  const v = dataView(body);
  const count = v.getUint32(0, true);
  if (v.getUint32(4, true) !== 0) throw badRecord('libxc', LibxcType.HVM_PARAMS, at, 'reserved field is not zero');
  if (body.length !== 8 + 16 * count) {
    throw new StreamError(C.BAD_LENGTH, at, `libxc HVM_PARAMS record has length ${body.length}; count ${count} needs exactly ${8 + 16 * count}`);
  }
  const params: HvmParam[] = [];
  for (let i = 0; i < count; i++) params.push({ index: v.getBigUint64(8 + 16 * i, true), value: v.getBigUint64(16 + 16 * i, true) });
  return params;
}

function pvVcpu(type: number, body: Uint8Array, at: number): void {
  if (dataView(body).getUint32(4, true) !== 0) throw badRecord('libxc', type, at, 'reserved field of the vcpu header is not zero');
}

/** A libxc record's body (unpadded, length already checked) as a typed record. */
export function parseLibxcBody(type: number, body: Uint8Array, at: number): LibxcRecord {
  const T = LibxcType;
  switch (type) {
    case T.END:
      return { layer: 'libxc', kind: 'END' };
    case T.PAGE_DATA:
      return parsePageData(body, at);
    case T.SHARED_INFO:
      return { layer: 'libxc', kind: 'SHARED_INFO', data: body };
    case T.X86_TSC_INFO: {
      const v = dataView(body);
      if (v.getUint32(20, true) !== 0) throw badRecord('libxc', type, at, 'reserved field is not zero');
      return { layer: 'libxc', kind: 'X86_TSC_INFO', mode: v.getUint32(0, true), khz: v.getUint32(4, true), nsec: v.getBigUint64(8, true), incarnation: v.getUint32(16, true) };
    }
    case T.HVM_CONTEXT:
      return { layer: 'libxc', kind: 'HVM_CONTEXT', blob: body };
    case T.HVM_PARAMS:
      return { layer: 'libxc', kind: 'HVM_PARAMS', params: hvmParams(body, at) };
    case T.VERIFY:
      return { layer: 'libxc', kind: 'VERIFY' };
    case T.CHECKPOINT:
      return { layer: 'libxc', kind: 'CHECKPOINT' };
    case T.CHECKPOINT_DIRTY_PFN_LIST:
      return { layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: dirtyPfns(body, at) };
    case T.STATIC_DATA_END:
      return { layer: 'libxc', kind: 'STATIC_DATA_END' };
    case T.X86_CPUID_POLICY:
      return { layer: 'libxc', kind: 'X86_CPUID_POLICY', data: body };
    case T.X86_MSR_POLICY:
      return { layer: 'libxc', kind: 'X86_MSR_POLICY', data: body };
    case T.TOOLSTACK:
      throw badRecord('libxc', type, at, 'TOOLSTACK records are deprecated and Xen refuses them');
    case T.X86_PV_INFO: {
      const width = body[0]!;
      const levels = body[1]!;
      if (width !== 4 && width !== 8) throw badRecord('libxc', type, at, `guest width ${width} is not 4 or 8`);
      if (levels !== 3 && levels !== 4) throw badRecord('libxc', type, at, `pagetable levels ${levels} is not 3 or 4`);
      if (body[2] !== 0 || body[3] !== 0 || dataView(body).getUint32(4, true) !== 0) throw badRecord('libxc', type, at, 'reserved fields are not zero');
      return { layer: 'libxc', kind: 'X86_PV_INFO', body };
    }
    case T.X86_PV_P2M_FRAMES:
      return { layer: 'libxc', kind: 'X86_PV_P2M_FRAMES', body };
    case T.X86_PV_VCPU_BASIC:
      pvVcpu(type, body, at);
      return { layer: 'libxc', kind: 'X86_PV_VCPU_BASIC', body };
    case T.X86_PV_VCPU_EXTENDED:
      pvVcpu(type, body, at);
      return { layer: 'libxc', kind: 'X86_PV_VCPU_EXTENDED', body };
    case T.X86_PV_VCPU_XSAVE:
      pvVcpu(type, body, at);
      return { layer: 'libxc', kind: 'X86_PV_VCPU_XSAVE', body };
    case T.X86_PV_VCPU_MSRS:
      pvVcpu(type, body, at);
      return { layer: 'libxc', kind: 'X86_PV_VCPU_MSRS', body };
    default:
      return { layer: 'libxc', kind: 'OPTIONAL', type: type >>> 0, body };
  }
}
