/**
 * The records and headers of Xen's migration v2 stream (libxl layer + libxc layer), as typed values.
 * Layouts are in docs/protocol.md; numbers below are Xen's own.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Xen's reader refuses records longer than this; ours is configurable with this default. */
export const DEFAULT_MAX_RECORD_LENGTH = 128 * 1024 * 1024;

/** Xen batches at most this many pfns per PAGE_DATA record. */
export const MAX_PFNS_PER_PAGE_DATA = 1024;

export const LIBXL_IDENT = 0x4c6962786c466d74n; // "LibxlFmt"
export const LIBXL_VERSION = 2;
export const LIBXC_MARKER = 0xffffffffffffffffn;
export const LIBXC_ID = 0x58454e46; // "XENF"
export const LIBXC_VERSION = 3;
export const XL_MAGIC = 'Xen saved domain, xl format\n \0 \r';
export const XL_BYTEORDER = 0x01020304;

export const LibxlType = {
  END: 0x0,
  LIBXC_CONTEXT: 0x1,
  EMULATOR_XENSTORE_DATA: 0x2,
  EMULATOR_CONTEXT: 0x3,
  CHECKPOINT_END: 0x4,
  CHECKPOINT_STATE: 0x5,
} as const;
export type LibxlTypeName = keyof typeof LibxlType;

export const LibxcType = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;
export type LibxcTypeName = keyof typeof LibxcType;

/** Types at or above this are optional: a reader may skip them. */
export const OPTIONAL_RECORD_FLAG = 0x80000000;

/** COLO control messages carried in CHECKPOINT_STATE.control_id. */
export const ColoControl = {
  NEW_CHECKPOINT: 0,
  SVM_SUSPENDED: 1,
  SVM_READY: 2,
  SVM_RESUMED: 3,
} as const;
export type ColoControlId = (typeof ColoControl)[keyof typeof ColoControl];

/** Emulator ids of the EMULATOR_* records' sub-header. */
export const EmulatorId = { UNKNOWN: 0, QEMU_TRADITIONAL: 1, QEMU_UPSTREAM: 2 } as const;

/** libxc domain header guest types. */
export const GuestType = { X86_PV: 1, X86_HVM: 2 } as const;

/** PAGE_DATA entry page types (bits 60-63 of each entry). 5-8 are invalid values. */
export const PageType = {
  NORMAL: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PINNED: 0x9,
  L2TAB_PINNED: 0xa,
  L3TAB_PINNED: 0xb,
  L4TAB_PINNED: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;

/** Whether a PAGE_DATA entry of this page type carries 4096 bytes of data. */
export function pageTypeCarriesData(type: number): boolean {
  return type <= 4 || (type >= 9 && type <= 12);
}

// ---------------------------------------------------------------------------------------------- headers

export interface XlHeader {
  /** bit 0: JSON config present; bit 1: v2 stream follows. */
  mandatoryFlags: number;
  optionalFlags: number;
  /** The optional data as written (a u32 length and the JSON domain config, when present). */
  optionalData: Uint8Array;
}

export interface LibxlHeader {
  /** bit 1: produced by the legacy converter. (bit 0, big-endian, is always refused.) */
  options: number;
}

export interface LibxcImageHeader {
  /** 2 or 3; Xen writes 3 (which requires STATIC_DATA_END). */
  version: number;
  options: number;
}

export interface LibxcDomainHeader {
  guestType: number;
  pageShift: number;
  xenMajor: number;
  xenMinor: number;
}

// ---------------------------------------------------------------------------------------------- records

export interface XenstoreEntry {
  key: string;
  value: string;
}

export type LibxlRecord =
  | { layer: 'libxl'; kind: 'END' }
  | { layer: 'libxl'; kind: 'LIBXC_CONTEXT' }
  | { layer: 'libxl'; kind: 'EMULATOR_XENSTORE_DATA'; emulatorId: number; index: number; entries: XenstoreEntry[] }
  | { layer: 'libxl'; kind: 'EMULATOR_CONTEXT'; emulatorId: number; index: number; blob: Uint8Array }
  | { layer: 'libxl'; kind: 'CHECKPOINT_END' }
  | { layer: 'libxl'; kind: 'CHECKPOINT_STATE'; controlId: number }
  | { layer: 'libxl'; kind: 'OPTIONAL'; type: number; body: Uint8Array };

/**
 * PAGE_DATA, decoded without per-page copies.
 * `pfns[i]` and `types[i]` describe entry i (pfns are < 2^52, exact as JS numbers). `data` holds the pages of
 * the entries whose type carries data, in entry order, 4096 bytes each; it is a view of the received bytes
 * when they arrived contiguously.
 */
export interface PageDataRecord {
  layer: 'libxc';
  kind: 'PAGE_DATA';
  pfns: number[];
  types: Uint8Array;
  data: Uint8Array;
  /**
   * Only from a decoder made with `pageDataPieces`: the page bytes as views of the chunks that were pushed, in
   * order (their concatenation is the data; nothing was copied). `data` is then the one piece, or empty when the
   * bytes arrived in several.
   */
  dataPieces?: Uint8Array[];
}

export interface TscInfo {
  mode: number;
  khz: number;
  nsec: bigint;
  incarnation: number;
}

export interface HvmParam {
  index: bigint;
  value: bigint;
}

export type LibxcRecord =
  | { layer: 'libxc'; kind: 'END' }
  | PageDataRecord
  | { layer: 'libxc'; kind: 'SHARED_INFO'; data: Uint8Array }
  | ({ layer: 'libxc'; kind: 'X86_TSC_INFO' } & TscInfo)
  | { layer: 'libxc'; kind: 'HVM_CONTEXT'; blob: Uint8Array }
  | { layer: 'libxc'; kind: 'HVM_PARAMS'; params: HvmParam[] }
  | { layer: 'libxc'; kind: 'VERIFY' }
  | { layer: 'libxc'; kind: 'CHECKPOINT' }
  | { layer: 'libxc'; kind: 'CHECKPOINT_DIRTY_PFN_LIST'; pfns: number[] }
  | { layer: 'libxc'; kind: 'STATIC_DATA_END' }
  /** 24-byte leaves, kept as bytes. */
  | { layer: 'libxc'; kind: 'X86_CPUID_POLICY'; data: Uint8Array }
  /** 16-byte entries, kept as bytes. */
  | { layer: 'libxc'; kind: 'X86_MSR_POLICY'; data: Uint8Array }
  /** PV-only records (0x02-0x06, 0x0C) and the deprecated TOOLSTACK (0x0B): body kept as bytes. */
  | {
      layer: 'libxc';
      kind: 'X86_PV_INFO' | 'X86_PV_P2M_FRAMES' | 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE' | 'X86_PV_VCPU_MSRS' | 'TOOLSTACK';
      body: Uint8Array;
    }
  | { layer: 'libxc'; kind: 'OPTIONAL'; type: number; body: Uint8Array };

export type StreamRecord = LibxlRecord | LibxcRecord;

/** What a decoder yields, in stream order. `offset` is the byte offset of the item's first byte. */
export type StreamItem =
  | { item: 'xl-header'; offset: number; header: XlHeader }
  | { item: 'libxl-header'; offset: number; header: LibxlHeader }
  | { item: 'libxc-image-header'; offset: number; header: LibxcImageHeader }
  | { item: 'libxc-domain-header'; offset: number; header: LibxcDomainHeader }
  | { item: 'record'; offset: number; record: StreamRecord };

/**
 * Which stream a decoder reads:
 * - 'xl': an `xl save` file (xl header, then a libxl stream);
 * - 'libxl': a libxl stream (plain save image, or the checkpointed main channel of Remus/COLO);
 * - 'libxc': a bare libxc stream;
 * - 'back-channel': the header-less secondary-to-primary channel (CHECKPOINT_STATE and
 *   CHECKPOINT_DIRTY_PFN_LIST records).
 */
export type StreamKind = 'xl' | 'libxl' | 'libxc' | 'back-channel';
