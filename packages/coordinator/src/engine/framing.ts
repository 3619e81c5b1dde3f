import { ByteQueue } from '@colo/stream';
import { concat } from '../bytes.js';
import { CoordinatorError, CoordinatorErrorCode } from '../errors.js';

/**
 * Cuts the main stream into whole units (the libxl header, the two libxc headers, each record) before they go to
 * the codec's decoder. The transport delivers bytes as the socket reads them, not lined up with records; the checkpoint
 * engine needs record boundaries for three reasons: a stall is "no complete record for a while", a checkpoint's
 * records are buffered whole, and in COLO the libxl layer keeps the channel after CHECKPOINT_END for one
 * CHECKPOINT_STATE record (Xen's libxl reads it before handing the stream back to libxc), which a layer-tracking
 * decoder would otherwise read as libxc type 5.
 *
 * It reads only the 8-byte record header (type, length) and the padding rule; every other check is the codec's.
 */
export const LIBXL_HEADER_BYTES = 16;
export const LIBXC_HEADERS_BYTES = 24 + 16;
const LIBXC_CONTEXT_TYPE = 1;

export interface FramedUnit {
  /** 'header' for fixed-size headers, 'record' for a type/length record. */
  kind: 'header' | 'record';
  /** For records: the type field. */
  type: number;
  /**
   * The unit's bytes as views of the pushed chunks, in order: a record spread over several reads is not
   * copied together here (the decoder copies what it needs contiguous, and hands page data on as pieces).
   */
  pieces: Uint8Array[];
  length: number;
}

/** A unit's bytes in one buffer: the piece itself when there is one (small units: headers, control records). */
export function unitBytes(unit: FramedUnit): Uint8Array {
  return unit.pieces.length === 1 ? unit.pieces[0]! : concat(unit.pieces);
}

export class RecordFramer {
  private readonly queue = new ByteQueue();
  /** Size of the next fixed-size header to cut, or 0 when records follow. */
  private nextHeader: number;
  private readonly maxRecordLength: number;
  private libxcStarted: boolean;

  constructor(opts: { firstHeaderBytes: number; maxRecordLength: number; libxcStarted?: boolean }) {
    this.nextHeader = opts.firstHeaderBytes;
    this.maxRecordLength = opts.maxRecordLength;
    this.libxcStarted = opts.libxcStarted ?? false;
  }

  get pendingBytes(): number {
    return this.queue.length;
  }

  push(chunk: Uint8Array): FramedUnit[] {
    this.queue.push(chunk);
    const out: FramedUnit[] = [];
    for (;;) {
      const unit = this.next();
      if (!unit) return out;
      out.push(unit);
      // Before the libxc headers, the stream is in the libxl layer, where type 1 is LIBXC_CONTEXT: the libxc
      // image and domain headers follow it.
      if (unit.kind === 'record' && unit.type === LIBXC_CONTEXT_TYPE && !this.libxcStarted) {
        this.libxcStarted = true;
        this.nextHeader = LIBXC_HEADERS_BYTES;
      }
    }
  }

  private next(): FramedUnit | undefined {
    const buffered = this.queue.length;
    if (this.nextHeader > 0) {
      if (buffered < this.nextHeader) return undefined;
      const length = this.nextHeader;
      this.nextHeader = 0;
      return { kind: 'header', type: -1, pieces: this.queue.takePieces(length), length };
    }
    if (buffered < 8) return undefined;
    const head = this.queue.peek(8);
    const view = new DataView(head.buffer, head.byteOffset, 8);
    const type = view.getUint32(0, true);
    const length = view.getUint32(4, true);
    if (length > this.maxRecordLength) {
      throw new CoordinatorError(
        CoordinatorErrorCode.PEER_STREAM_ERROR,
        `record type 0x${type.toString(16)} announces ${length} bytes, above the ${this.maxRecordLength}-byte limit`,
      );
    }
    const total = 8 + length + ((8 - (length % 8)) % 8);
    if (buffered < total) return undefined;
    return { kind: 'record', type, pieces: this.queue.takePieces(total), length: total };
  }
}
