import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { PAGE_BYTES } from './page-delta.js';

/**
 * Resending pages whose delta base the secondary does not hold (page-delta extension). A PAGE_DELTA names a
 * checksum of its base; a secondary whose copy differs (bad memory, a bug) must not build the page from it, and
 * need not give up the checkpoint either: it asks for those pages whole, as the checkpoint has them, and applies
 * the checkpoint with them. Only that page range travels again, not the guest.
 *
 * The primary can answer from the copy it keeps of what it sent (PageDeltaSender): until the secondary confirms
 * the checkpoint (READY in COLO, the ACK in Remus) the primary sends nothing newer, so that copy is the checkpoint's.
 * A Remus pair without acknowledgements has no such point: its secondary refuses the checkpoint instead.
 *
 * PAGE_RESEND_REQUEST, back channel, libxl layer, after a complete checkpoint and before its READY/ACK.
 * Body (little-endian): u32 count, u32 reserved (0), count x u64 pfn (strictly ascending).
 */
export const PAGE_RESEND_REQUEST_RECORD = 0x80000c05;
/**
 * PAGE_RESEND, main stream, libxl layer, at the checkpoint boundary (after CHECKPOINT_END, before anything
 * else): the pages asked for, whole, as few to a record as fit one transport frame.
 * Body (little-endian): u32 count, u32 flags (bit 0: the last PAGE_RESEND of this answer), count x u64 pfn,
 * then count pages of 4,096 bytes in the same order.
 */
export const PAGE_RESEND_RECORD = 0x80000c06;
/** Pages per PAGE_RESEND record (a record of 255 pages fits a 1 MiB frame, as PAGE_DATA's do). */
export const PAGES_PER_RESEND = 255;
const LAST = 1;

export function encodeResendRequest(pfns: readonly number[]): Uint8Array {
  const b = new Uint8Array(8 + pfns.length * 8);
  const v = new DataView(b.buffer);
  v.setUint32(0, pfns.length, true);
  pfns.forEach((pfn, i) => v.setBigUint64(8 + i * 8, BigInt(pfn), true));
  return b;
}

/** The pfns a PAGE_RESEND_REQUEST asks for: ascending, each below `pageCount` (else PEER_STREAM_ERROR). */
export function decodeResendRequest(body: Uint8Array, pageCount: number): number[] {
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (body.length < 8) throw bad(`a PAGE_RESEND_REQUEST of ${body.length} bytes`);
  const count = v.getUint32(0, true);
  if (count === 0 || body.length !== 8 + count * 8) throw bad(`a PAGE_RESEND_REQUEST for ${count} pages in ${body.length} bytes`);
  const pfns: number[] = [];
  for (let i = 0; i < count; i++) {
    const pfn = v.getBigUint64(8 + i * 8, true);
    if (pfn >= BigInt(pageCount)) throw bad(`a PAGE_RESEND_REQUEST names pfn ${pfn}, the guest has ${pageCount} pages`);
    if (i > 0 && Number(pfn) <= pfns[i - 1]!) throw bad('a PAGE_RESEND_REQUEST whose pfns are not ascending');
    pfns.push(Number(pfn));
  }
  return pfns;
}

/** PAGE_RESEND bodies for `pfns`, pages read from `pageOf`; the last one flagged. */
export function encodeResend(pfns: readonly number[], pageOf: (pfn: number) => Uint8Array): Uint8Array[] {
  const bodies: Uint8Array[] = [];
  for (let at = 0; at < pfns.length; at += PAGES_PER_RESEND) {
    const batch = pfns.slice(at, at + PAGES_PER_RESEND);
    const b = new Uint8Array(8 + batch.length * (8 + PAGE_BYTES));
    const v = new DataView(b.buffer);
    v.setUint32(0, batch.length, true);
    v.setUint32(4, at + PAGES_PER_RESEND >= pfns.length ? LAST : 0, true);
    const data = 8 + batch.length * 8;
    batch.forEach((pfn, i) => {
      v.setBigUint64(8 + i * 8, BigInt(pfn), true);
      b.set(pageOf(pfn), data + i * PAGE_BYTES);
    });
    bodies.push(b);
  }
  return bodies;
}

/** One PAGE_RESEND body: its pages (copied) and whether it ends the answer (else PEER_STREAM_ERROR). */
export function decodeResend(body: Uint8Array, pageCount: number): { pfns: number[]; data: Uint8Array; last: boolean } {
  if (body.length < 8) throw bad(`a PAGE_RESEND of ${body.length} bytes`);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = v.getUint32(0, true);
  const flags = v.getUint32(4, true);
  if (count === 0 || count > PAGES_PER_RESEND || body.length !== 8 + count * (8 + PAGE_BYTES)) throw bad(`a PAGE_RESEND of ${count} pages in ${body.length} bytes`);
  if ((flags & ~LAST) !== 0) throw bad(`a PAGE_RESEND with unknown flags 0x${flags.toString(16)}`);
  const pfns: number[] = [];
  for (let i = 0; i < count; i++) {
    const pfn = v.getBigUint64(8 + i * 8, true);
    if (pfn >= BigInt(pageCount)) throw bad(`a PAGE_RESEND carries pfn ${pfn}, the guest has ${pageCount} pages`);
    pfns.push(Number(pfn));
  }
  const data = 8 + count * 8;
  return { pfns, data: body.slice(data, data + count * PAGE_BYTES), last: (flags & LAST) !== 0 };
}

function bad(message: string): CoordinatorError {
  return new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, message);
}
