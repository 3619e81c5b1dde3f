/**
 * Parsing and checking the fixed headers: xl, libxl, libxc image and domain. Each function gets exactly the
 * header's bytes and the stream offset they start at (for the error), and refuses what Xen's reader refuses.
 */
import { dataView } from './bytes.js';
import { XlMandatoryFlag } from './encode.js';
import { StreamError, StreamErrorCode } from './errors.js';
import {
  GuestType,
  LIBXC_ID,
  LIBXL_IDENT,
  LIBXL_VERSION,
  PAGE_SHIFT,
  XL_BYTEORDER,
  XL_MAGIC,
  type LibxcDomainHeader,
  type LibxcImageHeader,
  type LibxlHeader,
} from './types.js';

const C = StreamErrorCode;

export function isXlMagic(b: Uint8Array): boolean {
  for (let i = 0; i < XL_MAGIC.length; i++) if (b[i] !== XL_MAGIC.charCodeAt(i)) return false;
  return true;
}

/** The fixed 48 bytes of an xl header; returns the flags and the length of the optional data that follows. */
export function parseXlFixedHeader(b: Uint8Array, at: number, maxLength: number): { mandatoryFlags: number; optionalFlags: number; optionalLength: number } {
  if (!isXlMagic(b)) throw new StreamError(C.BAD_IDENT, at, 'not an xl save file: the 32-byte "Xen saved domain, xl format" magic is missing');
  const v = dataView(b);
  const order = v.getUint32(32, true);
  if (order !== XL_BYTEORDER) {
    throw new StreamError(C.BAD_OPTIONS, at, `xl header byte order 0x${order.toString(16)} is not 0x01020304: the file was written on a big-endian host, which colo cannot read`);
  }
  const mandatoryFlags = v.getUint32(36, true);
  const unknown = mandatoryFlags & ~(XlMandatoryFlag.CONFIG_JSON | XlMandatoryFlag.STREAM_V2);
  if (unknown !== 0) throw new StreamError(C.BAD_OPTIONS, at, `xl header sets unknown mandatory flags 0x${(unknown >>> 0).toString(16)}: written by a newer xl`);
  if ((mandatoryFlags & XlMandatoryFlag.STREAM_V2) === 0) {
    throw new StreamError(C.BAD_VERSION, at, 'xl file holds a legacy (pre-v2) stream: convert it with Xen\'s convert-legacy-stream first');
  }
  const optionalLength = v.getUint32(44, true);
  if (optionalLength > maxLength) {
    throw new StreamError(C.RECORD_TOO_LONG, at, `xl header announces ${optionalLength} bytes of optional data, above the limit of ${maxLength}; raise maxRecordLength if the file is genuine`);
  }
  return { mandatoryFlags, optionalFlags: v.getUint32(40, true), optionalLength };
}

export function parseLibxlHeader(b: Uint8Array, at: number): LibxlHeader {
  const v = dataView(b);
  if (v.getBigUint64(0, false) !== LIBXL_IDENT) throw new StreamError(C.BAD_IDENT, at, 'not a libxl stream: the header does not start with "LibxlFmt"');
  const version = v.getUint32(8, false);
  if (version !== LIBXL_VERSION) throw new StreamError(C.BAD_VERSION, at, `libxl stream version ${version} is not supported (only ${LIBXL_VERSION})`);
  const options = v.getUint32(12, false);
  if (options & 1) throw new StreamError(C.BAD_OPTIONS, at, 'libxl header says the stream is big-endian, which colo cannot read');
  if (options & ~3) throw new StreamError(C.BAD_OPTIONS, at, `libxl header sets reserved option bits 0x${((options & ~3) >>> 0).toString(16)}`);
  return { options };
}

export function parseLibxcImageHeader(b: Uint8Array, at: number): LibxcImageHeader {
  const v = dataView(b);
  if (v.getUint32(0, false) !== 0xffffffff || v.getUint32(4, false) !== 0xffffffff) {
    throw new StreamError(C.BAD_IDENT, at, 'not a libxc stream: the image header marker is not 0xFFFFFFFFFFFFFFFF');
  }
  const id = v.getUint32(8, false);
  if (id !== LIBXC_ID) throw new StreamError(C.BAD_IDENT, at, `not a libxc stream: image id 0x${id.toString(16)} is not "XENF"`);
  const version = v.getUint32(12, false);
  if (version !== 2 && version !== 3) throw new StreamError(C.BAD_VERSION, at, `libxc image version ${version} is not supported (2 or 3)`);
  const options = v.getUint16(16, false);
  if (options & 1) throw new StreamError(C.BAD_OPTIONS, at, 'libxc image header says the stream is big-endian, which colo cannot read');
  if (options & ~1) throw new StreamError(C.BAD_OPTIONS, at, `libxc image header sets reserved option bits 0x${(options & ~1).toString(16)}`);
  if (v.getUint16(18, false) !== 0 || v.getUint32(20, false) !== 0) throw new StreamError(C.BAD_OPTIONS, at, 'libxc image header has non-zero reserved fields');
  return { version, options };
}

export function parseLibxcDomainHeader(b: Uint8Array, at: number): LibxcDomainHeader {
  const v = dataView(b);
  const guestType = v.getUint32(0, true);
  if (guestType !== GuestType.X86_PV && guestType !== GuestType.X86_HVM) {
    throw new StreamError(C.BAD_DOMAIN_HEADER, at, `libxc domain header has guest type ${guestType}; only 1 (x86 PV) and 2 (x86 HVM) exist`);
  }
  const pageShift = v.getUint16(4, true);
  if (v.getUint16(6, true) !== 0) throw new StreamError(C.BAD_OPTIONS, at, 'libxc domain header has a non-zero reserved field');
  if (pageShift !== PAGE_SHIFT) throw new StreamError(C.BAD_DOMAIN_HEADER, at, `libxc domain header has page shift ${pageShift}; only ${PAGE_SHIFT} (4 KiB pages) is supported`);
  return { guestType, pageShift, xenMajor: v.getUint32(8, true), xenMinor: v.getUint32(12, true) };
}
