import { NODE_DEFAULTS } from '../defaults.js';
import { concat } from '../bytes.js';
import { ProxyError, ProxyErrorCode } from './errors.js';
import type { ConnectionId, InputEvent, InputKind, OutputBytes } from './types.js';

/**
 * Binary encoding of the proxy link (primary <-> secondary). The link is a byte stream, so every message is a
 * frame: u32 LE length of what follows, u8 type, then the type's fields (little endian):
 *
 *   INPUT   (1): u64 seq, u32 conn, u8 kind (1 open, 2 data, 3 close), data bytes (data only)
 *   OUTPUT  (2): u64 generation, u32 conn, u8 flag (0 bytes, 1 guest closed), bytes (flag 0 only)
 *   BARRIER (3): u64 checkpoint, u64 last input seq the primary's guest processed before it
 *   DELIVERED (4): u64 last input seq the primary's guest has processed (extension input-watermark): no later
 *                 BARRIER can name a smaller one, so the secondary need not keep input it delivered up to it
 *
 * Numbers are u64 on the wire but must stay below 2^53 (JavaScript's exact integers); larger ones are refused.
 */
export const ProxyMessageType = { INPUT: 1, OUTPUT: 2, BARRIER: 3, DELIVERED: 4 } as const;

export type ProxyMessage =
  | { type: 'input'; event: InputEvent }
  | { type: 'output'; generation: number; conn: ConnectionId; bytes: OutputBytes }
  | { type: 'barrier'; checkpoint: number; lastSeq: number }
  | { type: 'delivered'; lastSeq: number };

/** Default largest frame body a decoder accepts; the encoder splits output larger than this. */
export const DEFAULT_MAX_FRAME_BYTES = NODE_DEFAULTS.replication.maxFrameBytes;

const LENGTH_BYTES = 4;
const INPUT_FIXED = 1 + 8 + 4 + 1;
const OUTPUT_FIXED = 1 + 8 + 4 + 1;
const BARRIER_FIXED = 1 + 8 + 8;
const DELIVERED_FIXED = 1 + 8;

/** Bytes of a whole DELIVERED frame. */
export const DELIVERED_BYTES = LENGTH_BYTES + DELIVERED_FIXED;

// Plain comparisons, not lookup tables: a table indexed by the kind string is a megamorphic keyed load per frame.
function kindCode(kind: InputKind): number {
  return kind === 'data' ? 2 : kind === 'open' ? 1 : kind === 'close' ? 3 : 0;
}
function codeKind(code: number): InputKind | undefined {
  return code === 2 ? 'data' : code === 1 ? 'open' : code === 3 ? 'close' : undefined;
}

/** Bytes of an INPUT frame's head (length, type, fixed fields); the event's data bytes follow it. */
export const INPUT_HEAD_BYTES = LENGTH_BYTES + INPUT_FIXED;
/** Bytes of an OUTPUT frame's head; the output bytes follow it. */
export const OUTPUT_HEAD_BYTES = LENGTH_BYTES + OUTPUT_FIXED;

function writeU64(buf: Buffer, at: number, name: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${n}`);
  buf.writeUInt32LE(n % 0x100000000, at);
  buf.writeUInt32LE(Math.floor(n / 0x100000000), at + 4);
}

function checkU32(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${name} must be a u32, got ${n}`);
  return n;
}

/** The bytes an INPUT frame carries after its head (data events only). */
function inputPayload(event: InputEvent): Uint8Array | undefined {
  return event.kind === 'data' ? (event.bytes ?? new Uint8Array(0)) : undefined;
}

/**
 * Writes the head of an event's INPUT frame (INPUT_HEAD_BYTES) at `at`; the frame is this head followed by the
 * event's data bytes (if any). Senders write heads straight into the batch they send (FrameBatcher.reserve):
 * the proxies make one per client event, so encoding must not allocate. u64 fields are written as two u32
 * halves (no BigInt on the hot path). Throws RangeError (before writing anything) on numbers the wire cannot carry.
 */
export function writeInputHead(buf: Buffer, at: number, event: InputEvent): void {
  const conn = checkU32('conn', event.conn);
  if (!Number.isSafeInteger(event.seq) || event.seq < 0) throw new RangeError(`seq must be a non-negative safe integer, got ${event.seq}`);
  buf.writeUInt32LE(INPUT_FIXED + (event.kind === 'data' ? (event.bytes?.byteLength ?? 0) : 0), at);
  buf[at + 4] = ProxyMessageType.INPUT;
  writeU64(buf, at + 5, 'seq', event.seq);
  buf.writeUInt32LE(conn, at + 13);
  buf[at + 17] = kindCode(event.kind);
}

/** The head of an event's INPUT frame as a Buffer of its own (see writeInputHead). */
export function encodeInputHead(event: InputEvent): Uint8Array {
  const buf = Buffer.allocUnsafe(INPUT_HEAD_BYTES);
  writeInputHead(buf, 0, event);
  return buf;
}

export function encodeInput(event: InputEvent): Uint8Array {
  const payload = inputPayload(event);
  const h = encodeInputHead(event);
  return payload ? concat([h, payload]) : h;
}

/** The most output bytes one OUTPUT frame carries under `maxFrameBytes`. */
export function outputRoom(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): number {
  return maxFrameBytes - OUTPUT_FIXED;
}

/**
 * Writes the head of an OUTPUT frame (OUTPUT_HEAD_BYTES) carrying all of `bytes` (which must fit: at most
 * outputRoom() bytes) at `at`; the frame is this head followed by the bytes.
 */
export function writeOutputHead(buf: Buffer, at: number, generation: number, conn: ConnectionId, bytes: OutputBytes): void {
  checkU32('conn', conn);
  if (!Number.isSafeInteger(generation) || generation < 0) throw new RangeError(`generation must be a non-negative safe integer, got ${generation}`);
  buf.writeUInt32LE(OUTPUT_FIXED + (bytes?.byteLength ?? 0), at);
  buf[at + 4] = ProxyMessageType.OUTPUT;
  writeU64(buf, at + 5, 'generation', generation);
  buf.writeUInt32LE(conn, at + 13);
  buf[at + 17] = bytes === null ? 1 : 0;
}

/** The head of an OUTPUT frame as a Buffer of its own (see writeOutputHead). */
export function encodeOutputHead(generation: number, conn: ConnectionId, bytes: OutputBytes): Uint8Array {
  const buf = Buffer.allocUnsafe(OUTPUT_HEAD_BYTES);
  writeOutputHead(buf, 0, generation, conn, bytes);
  return buf;
}

/**
 * Encodes guest output; bytes longer than `maxFrameBytes` become several frames (output is a byte stream per
 * connection, so splitting changes nothing for the comparator).
 */
export function encodeOutput(
  generation: number,
  conn: ConnectionId,
  bytes: OutputBytes,
  maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
): Uint8Array {
  const room = outputRoom(maxFrameBytes);
  if (bytes !== null && bytes.byteLength > room) {
    const parts: Uint8Array[] = [];
    for (let at = 0; at < bytes.byteLength; at += room) {
      parts.push(encodeOutput(generation, conn, bytes.subarray(at, Math.min(bytes.byteLength, at + room)), maxFrameBytes));
    }
    return concat(parts);
  }
  const h = encodeOutputHead(generation, conn, bytes);
  return bytes === null || bytes.byteLength === 0 ? h : concat([h, bytes]);
}

export function encodeBarrier(checkpoint: number, lastSeq: number): Uint8Array {
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + BARRIER_FIXED);
  buf.writeUInt32LE(BARRIER_FIXED, 0);
  buf[4] = ProxyMessageType.BARRIER;
  writeU64(buf, 5, 'checkpoint', checkpoint);
  writeU64(buf, 13, 'lastSeq', lastSeq);
  return buf;
}

/** Writes a DELIVERED frame (DELIVERED_BYTES) at `at`: the primary appends one to a batch, in place. */
export function writeDelivered(buf: Buffer, at: number, lastSeq: number): void {
  if (!Number.isSafeInteger(lastSeq) || lastSeq < 0) throw new RangeError(`lastSeq must be a non-negative safe integer, got ${lastSeq}`);
  buf.writeUInt32LE(DELIVERED_FIXED, at);
  buf[at + 4] = ProxyMessageType.DELIVERED;
  writeU64(buf, at + 5, 'lastSeq', lastSeq);
}

export function encodeDelivered(lastSeq: number): Uint8Array {
  const buf = Buffer.allocUnsafe(DELIVERED_BYTES);
  writeDelivered(buf, 0, lastSeq);
  return buf;
}

export function encodeMessage(m: ProxyMessage): Uint8Array {
  switch (m.type) {
    case 'input':
      return encodeInput(m.event);
    case 'output':
      return encodeOutput(m.generation, m.conn, m.bytes);
    case 'barrier':
      return encodeBarrier(m.checkpoint, m.lastSeq);
    case 'delivered':
      return encodeDelivered(m.lastSeq);
  }
}

export interface ProxyDecoderOptions {
  /** Largest frame body accepted; a larger announced length is refused before any of it is buffered. */
  maxFrameBytes?: number;
}

/** A Buffer view of the same bytes (no copy), so the decoder can use Buffer's integer readers. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Incremental decoder of the proxy link: push() the bytes as they arrive (any split), get whole messages back.
 * Malformed input throws a ProxyError with a stable code; after that the decoder stays failed (the link's
 * framing is lost, so the only safe action is to drop the link) and rethrows the same error.
 * Data and output bytes in the returned messages may be views of the pushed chunks.
 *
 * It runs once per client event on each side of a COLO pair, so it reads frames in place: a link message that
 * holds whole frames is decoded without copying; only a frame split across messages is joined (once, when all
 * of it has arrived).
 */
export class ProxyFrameDecoder {
  readonly #maxFrameBytes: number;
  /** Bytes of an incomplete frame (or length field), waiting for the rest. */
  #pending: Uint8Array[] = [];
  #buffered = 0;
  /** Bytes `#pending` must reach before anything can be decoded: the length field, then the whole frame. */
  #need = LENGTH_BYTES;
  #failed: ProxyError | null = null;
  /** Offset in the link's byte stream of the next unread byte, for error messages. */
  #offset = 0;

  constructor(options: ProxyDecoderOptions = {}) {
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** Bytes received and not yet part of a whole message. */
  get bufferedBytes(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): ProxyMessage[] {
    if (this.#failed) throw this.#failed;
    const out: ProxyMessage[] = [];
    if (chunk.byteLength === 0) return out;
    let buf: Buffer;
    if (this.#buffered === 0) {
      buf = asBuffer(chunk);
    } else {
      this.#pending.push(chunk);
      this.#buffered += chunk.byteLength;
      if (this.#buffered < this.#need) return out;
      buf = Buffer.concat(this.#pending, this.#buffered);
      this.#pending = [];
      this.#buffered = 0;
    }
    try {
      const end = buf.length;
      let pos = 0;
      while (end - pos >= LENGTH_BYTES) {
        const bodyLength = buf.readUInt32LE(pos);
        if (bodyLength > this.#maxFrameBytes) {
          throw new ProxyError(
            ProxyErrorCode.FRAME_TOO_LARGE,
            `proxy link frame at byte ${this.#offset} announces ${bodyLength} bytes, more than the limit of ${this.#maxFrameBytes}: the peer is broken or not a colo proxy`,
          );
        }
        if (bodyLength < 1) throw this.#malformed('an empty frame');
        const frameEnd = pos + LENGTH_BYTES + bodyLength;
        if (frameEnd > end) break;
        out.push(this.#decodeBody(buf, pos + LENGTH_BYTES, frameEnd));
        this.#offset += LENGTH_BYTES + bodyLength;
        pos = frameEnd;
      }
      if (pos < end) {
        const rest = buf.subarray(pos);
        this.#pending = [rest];
        this.#buffered = rest.length;
        this.#need = rest.length >= LENGTH_BYTES ? LENGTH_BYTES + rest.readUInt32LE(0) : LENGTH_BYTES;
      } else {
        this.#need = LENGTH_BYTES;
      }
    } catch (e) {
      this.#failed = e as ProxyError;
      this.#pending = [];
      this.#buffered = 0;
      throw e;
    }
    return out;
  }

  /** The link ended: throws if it ended inside a frame. */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (this.#buffered > 0) {
      this.#failed = new ProxyError(
        ProxyErrorCode.TRUNCATED_FRAME,
        `proxy link ended inside a frame at byte ${this.#offset} (${this.#buffered} bytes of it received)`,
      );
      throw this.#failed;
    }
  }

  #malformed(what: string): ProxyError {
    return new ProxyError(ProxyErrorCode.MALFORMED_FRAME, `proxy link frame at byte ${this.#offset}: ${what}`);
  }

  /** A u64 field at `at`, read as two u32 halves: a high half of 2^21 or more puts it beyond 2^53 (no BigInt). */
  #u64(buf: Buffer, at: number, name: string): number {
    const hi = buf.readUInt32LE(at + 4);
    if (hi >= 0x200000) throw this.#malformed(`${name} ${buf.readBigUInt64LE(at)} is beyond 2^53`);
    return hi * 0x100000000 + buf.readUInt32LE(at);
  }

  /** The frame body at [start, end) of buf. */
  #decodeBody(buf: Buffer, start: number, end: number): ProxyMessage {
    const type = buf[start]!;
    const length = end - start;
    switch (type) {
      case ProxyMessageType.INPUT: {
        if (length < INPUT_FIXED) throw this.#malformed(`INPUT needs ${INPUT_FIXED} bytes, has ${length}`);
        const seq = this.#u64(buf, start + 1, 'seq');
        const conn = buf.readUInt32LE(start + 9);
        const code = buf[start + 13]!;
        const kind = codeKind(code);
        if (kind === undefined) throw this.#malformed(`INPUT kind ${code} is not 1 (open), 2 (data) or 3 (close)`);
        if (kind !== 'data') {
          if (length !== INPUT_FIXED) throw this.#malformed(`INPUT ${kind} carries ${length - INPUT_FIXED} data bytes`);
          return { type: 'input', event: { seq, conn, kind } };
        }
        return { type: 'input', event: { seq, conn, kind, bytes: buf.subarray(start + INPUT_FIXED, end) } };
      }
      case ProxyMessageType.OUTPUT: {
        if (length < OUTPUT_FIXED) throw this.#malformed(`OUTPUT needs ${OUTPUT_FIXED} bytes, has ${length}`);
        const generation = this.#u64(buf, start + 1, 'generation');
        const conn = buf.readUInt32LE(start + 9);
        const flag = buf[start + 13]!;
        if (flag === 1) {
          if (length !== OUTPUT_FIXED) throw this.#malformed('OUTPUT close carries bytes');
          return { type: 'output', generation, conn, bytes: null };
        }
        if (flag !== 0) throw this.#malformed(`OUTPUT flag ${flag} is not 0 (bytes) or 1 (close)`);
        return { type: 'output', generation, conn, bytes: buf.subarray(start + OUTPUT_FIXED, end) };
      }
      case ProxyMessageType.BARRIER: {
        if (length !== BARRIER_FIXED) throw this.#malformed(`BARRIER must be ${BARRIER_FIXED} bytes, is ${length}`);
        return { type: 'barrier', checkpoint: this.#u64(buf, start + 1, 'checkpoint'), lastSeq: this.#u64(buf, start + 9, 'lastSeq') };
      }
      case ProxyMessageType.DELIVERED: {
        if (length !== DELIVERED_FIXED) throw this.#malformed(`DELIVERED must be ${DELIVERED_FIXED} bytes, is ${length}`);
        return { type: 'delivered', lastSeq: this.#u64(buf, start + 1, 'lastSeq') };
      }
      default:
        throw new ProxyError(
          ProxyErrorCode.UNKNOWN_MESSAGE,
          `proxy link frame at byte ${this.#offset} has unknown type ${type}: the peer speaks another proxy version`,
        );
    }
  }
}
