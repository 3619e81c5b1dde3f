import { ProxyError, ProxyErrorCode } from './errors.js';
import type { ConnectionId, InputEvent, InputKind, OutputBytes } from './types.js';

/**
 * Binary encoding of the proxy link (primary <-> secondary). The link is a byte stream, so every message is a
 * frame: u32 LE length of what follows, u8 type, then the type's fields (little endian):
 *
 *   INPUT   (1): u64 seq, u32 conn, u8 kind (1 open, 2 data, 3 close), data bytes (data only)
 *   OUTPUT  (2): u64 generation, u32 conn, u8 flag (0 bytes, 1 guest closed), bytes (flag 0 only)
 *   BARRIER (3): u64 checkpoint, u64 last input seq the primary's guest processed before it
 *
 * Numbers are u64 on the wire but must stay below 2^53 (JavaScript's exact integers); larger ones are refused.
 */
export const ProxyMessageType = { INPUT: 1, OUTPUT: 2, BARRIER: 3 } as const;

export type ProxyMessage =
  | { type: 'input'; event: InputEvent }
  | { type: 'output'; generation: number; conn: ConnectionId; bytes: OutputBytes }
  | { type: 'barrier'; checkpoint: number; lastSeq: number };

/** Default largest frame body a decoder accepts; the encoder splits output larger than this. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

const LENGTH_BYTES = 4;
const INPUT_FIXED = 1 + 8 + 4 + 1;
const OUTPUT_FIXED = 1 + 8 + 4 + 1;
const BARRIER_FIXED = 1 + 8 + 8;

const KIND_CODE: Record<InputKind, number> = { open: 1, data: 2, close: 3 };
const CODE_KIND: Record<number, InputKind> = { 1: 'open', 2: 'data', 3: 'close' };

/**
 * The frame head (length, type and fixed fields) of a frame whose body ends with `payloadBytes` bytes. Heads
 * are small Buffers from Node's shared pool (no zero fill, no ArrayBuffer of their own): the proxies make one
 * per client event, so the encoder must not allocate more than that. u64 fields are written as two u32 halves
 * (no BigInt on the hot path).
 */
function head(fixed: number, type: number, payloadBytes: number): Buffer {
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + fixed);
  buf.writeUInt32LE(fixed + payloadBytes, 0);
  buf[4] = type;
  return buf;
}

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
 * The head of an event's INPUT frame; the frame is this head followed by the event's data bytes (if any).
 * Lets a sender queue head and data as two parts and copy the data once, into the batch it sends.
 */
export function encodeInputHead(event: InputEvent): Uint8Array {
  const buf = head(INPUT_FIXED, ProxyMessageType.INPUT, inputPayload(event)?.byteLength ?? 0);
  writeU64(buf, 5, 'seq', event.seq);
  buf.writeUInt32LE(checkU32('conn', event.conn), 13);
  buf[17] = KIND_CODE[event.kind];
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
 * The head of an OUTPUT frame carrying all of `bytes` (which must fit: at most outputRoom() bytes); the frame is
 * this head followed by the bytes.
 */
export function encodeOutputHead(generation: number, conn: ConnectionId, bytes: OutputBytes): Uint8Array {
  const buf = head(OUTPUT_FIXED, ProxyMessageType.OUTPUT, bytes?.byteLength ?? 0);
  writeU64(buf, 5, 'generation', generation);
  buf.writeUInt32LE(checkU32('conn', conn), 13);
  buf[17] = bytes === null ? 1 : 0;
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
  const buf = head(BARRIER_FIXED, ProxyMessageType.BARRIER, 0);
  writeU64(buf, 5, 'checkpoint', checkpoint);
  writeU64(buf, 13, 'lastSeq', lastSeq);
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
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export interface ProxyDecoderOptions {
  /** Largest frame body accepted; a larger announced length is refused before any of it is buffered. */
  maxFrameBytes?: number;
}

/**
 * Incremental decoder of the proxy link: push() the bytes as they arrive (any split), get whole messages back.
 * Malformed input throws a ProxyError with a stable code; after that the decoder stays failed (the link's
 * framing is lost, so the only safe action is to drop the link) and rethrows the same error.
 * Data and output bytes in the returned messages may be views of the pushed chunks.
 */
export class ProxyFrameDecoder {
  readonly #maxFrameBytes: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
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
    if (chunk.byteLength > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.byteLength;
    }
    const out: ProxyMessage[] = [];
    try {
      for (;;) {
        if (this.#buffered < LENGTH_BYTES) break;
        const head = this.#peek(LENGTH_BYTES);
        const bodyLength = new DataView(head.buffer, head.byteOffset, LENGTH_BYTES).getUint32(0, true);
        if (bodyLength > this.#maxFrameBytes) {
          throw new ProxyError(
            ProxyErrorCode.FRAME_TOO_LARGE,
            `proxy link frame at byte ${this.#offset} announces ${bodyLength} bytes, more than the limit of ${this.#maxFrameBytes}: the peer is broken or not a colo proxy`,
          );
        }
        if (bodyLength < 1) throw this.#malformed('an empty frame');
        if (this.#buffered < LENGTH_BYTES + bodyLength) break;
        const whole = this.#take(LENGTH_BYTES + bodyLength);
        out.push(this.#decodeBody(whole.subarray(LENGTH_BYTES)));
        this.#offset += LENGTH_BYTES + bodyLength;
      }
    } catch (e) {
      this.#failed = e as ProxyError;
      this.#chunks = [];
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

  #decodeBody(body: Uint8Array): ProxyMessage {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const type = view.getUint8(0);
    const u64 = (at: number, name: string): number => {
      // Two u32 halves: a high half of 2^21 or more puts the value beyond 2^53 (no BigInt per frame).
      const hi = view.getUint32(at + 4, true);
      if (hi >= 0x200000) throw this.#malformed(`${name} ${view.getBigUint64(at, true)} is beyond 2^53`);
      return hi * 0x100000000 + view.getUint32(at, true);
    };
    switch (type) {
      case ProxyMessageType.INPUT: {
        if (body.byteLength < INPUT_FIXED) throw this.#malformed(`INPUT needs ${INPUT_FIXED} bytes, has ${body.byteLength}`);
        const seq = u64(1, 'seq');
        const conn = view.getUint32(9, true);
        const kind = CODE_KIND[view.getUint8(13)];
        if (kind === undefined) throw this.#malformed(`INPUT kind ${view.getUint8(13)} is not 1 (open), 2 (data) or 3 (close)`);
        if (kind !== 'data') {
          if (body.byteLength !== INPUT_FIXED) throw this.#malformed(`INPUT ${kind} carries ${body.byteLength - INPUT_FIXED} data bytes`);
          return { type: 'input', event: { seq, conn, kind } };
        }
        return { type: 'input', event: { seq, conn, kind, bytes: body.subarray(INPUT_FIXED) } };
      }
      case ProxyMessageType.OUTPUT: {
        if (body.byteLength < OUTPUT_FIXED) throw this.#malformed(`OUTPUT needs ${OUTPUT_FIXED} bytes, has ${body.byteLength}`);
        const generation = u64(1, 'generation');
        const conn = view.getUint32(9, true);
        const flag = view.getUint8(13);
        if (flag === 1) {
          if (body.byteLength !== OUTPUT_FIXED) throw this.#malformed('OUTPUT close carries bytes');
          return { type: 'output', generation, conn, bytes: null };
        }
        if (flag !== 0) throw this.#malformed(`OUTPUT flag ${flag} is not 0 (bytes) or 1 (close)`);
        return { type: 'output', generation, conn, bytes: body.subarray(OUTPUT_FIXED) };
      }
      case ProxyMessageType.BARRIER: {
        if (body.byteLength !== BARRIER_FIXED) throw this.#malformed(`BARRIER must be ${BARRIER_FIXED} bytes, is ${body.byteLength}`);
        return { type: 'barrier', checkpoint: u64(1, 'checkpoint'), lastSeq: u64(9, 'lastSeq') };
      }
      default:
        throw new ProxyError(
          ProxyErrorCode.UNKNOWN_MESSAGE,
          `proxy link frame at byte ${this.#offset} has unknown type ${type}: the peer speaks another proxy version`,
        );
    }
  }

  /** The first n buffered bytes (n <= buffered), without consuming them. */
  #peek(n: number): Uint8Array {
    while (this.#chunks[0]!.byteLength < n) {
      // Merge only the leading chunks (a header split across tiny pushes), never the whole backlog.
      const [a, b] = this.#chunks.splice(0, 2);
      this.#chunks.unshift(concat([a!, b!]));
    }
    return this.#chunks[0]!.subarray(0, n);
  }

  /** Consumes the first n buffered bytes (n <= buffered). Concatenates only when a frame spans chunks. */
  #take(n: number): Uint8Array {
    let first = this.#chunks[0]!;
    if (first.byteLength < n) {
      // Merge just enough chunks to hold the frame: the rest stay as they are.
      const parts: Uint8Array[] = [];
      let have = 0;
      while (have < n) {
        const c = this.#chunks.shift()!;
        parts.push(c);
        have += c.byteLength;
      }
      this.#chunks.unshift(concat(parts));
      first = this.#chunks[0]!;
    }
    const out = first.subarray(0, n);
    if (first.byteLength === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }
}
