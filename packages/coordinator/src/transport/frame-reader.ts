import { LinkError, LinkErrorCode } from './errors.js';

/** What a FrameReader finds in the bytes it is given. */
export interface FrameReaderSink {
  /**
   * Payload bytes of binary frames (and their continuations), in order: views of the chunks given to push(),
   * valid only as long as those chunks are (the reader keeps no view of a chunk after push() returns).
   */
  data(bytes: Buffer): void;
  ping(payload: Buffer): void;
  pong(payload: Buffer): void;
  /** A close frame: code 1005 when it carried none. Nothing after it is read. */
  close(code: number, reason: Buffer): void;
  /** The last frame of a binary message ended (the handshake's messages are whole ws messages). */
  messageEnd?(): void;
}

/** Who wrote the frames a FrameReader reads: a server's are unmasked, a client's masked (RFC 6455, 5.1). */
export type FrameSender = 'server' | 'client';

/** RFC 6455 status codes a reader's refusal is closed with, so that any WebSocket peer understands why. */
export const WS_CLOSE_PROTOCOL_ERROR = 1002;
export const WS_CLOSE_UNSUPPORTED_DATA = 1003;
export const WS_CLOSE_MESSAGE_TOO_BIG = 1009;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/**
 * Reads RFC 6455 frames as the bytes arrive, without reassembling them: the payload of each binary frame is
 * handed on as views of the socket's chunks. A colo link gives frame and message boundaries no meaning (the
 * stream is the concatenation), so a 1 MiB frame spread over sixteen 64 KiB reads needs no 1 MiB copy, which is
 * what ws's receiver makes for every message. Control frames (at most 125 bytes) are collected whole.
 *
 * A client's frames are masked: with colo's zero key the payload is as sent and is handed on untouched; any other
 * key is undone in place (the chunks are the reader's to change: socket reads nobody else sees). Anything RFC 6455
 * forbids the sender, or the link forbids (text, extensions, messages over `maxMessageBytes`), throws a LinkError
 * LINK_PROTOCOL whose `closeCode` is the RFC status to close with; the reader is unusable afterwards.
 */
export class FrameReader {
  readonly #sink: FrameReaderSink;
  readonly #maxMessageBytes: number;
  readonly #masked: boolean;
  /** Header bytes gathered so far (at most 10, and a 4-byte masking key for a client's frame). */
  readonly #head = Buffer.alloc(14);
  /** The current frame's masking key (a view of #head) when it is not zero; where in the payload we are. */
  #mask: Buffer | undefined;
  #maskAt = 0;
  #headHave = 0;
  #headNeed = 2;
  /** Payload bytes still to read of the current frame; -1 while reading a header. */
  #remaining = -1;
  #opcode = 0;
  #control: Buffer[] = [];
  /** Inside a fragmented binary message (a non-final frame seen). */
  #inMessage = false;
  #messageBytes = 0;
  #closed = false;
  #failed: LinkError | undefined;

  constructor(sink: FrameReaderSink, maxMessageBytes: number, sender: FrameSender = 'server') {
    this.#sink = sink;
    this.#maxMessageBytes = maxMessageBytes;
    this.#masked = sender === 'client';
  }

  push(chunk: Buffer): void {
    if (this.#failed) throw this.#failed;
    try {
      this.#read(chunk);
    } catch (e) {
      this.#failed = e instanceof LinkError ? e : new LinkError(LinkErrorCode.PROTOCOL, String(e), { cause: e, closeCode: WS_CLOSE_PROTOCOL_ERROR });
      throw this.#failed;
    }
  }

  #read(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.#closed) {
      if (this.#remaining < 0) {
        const take = Math.min(this.#headNeed - this.#headHave, chunk.length - at);
        chunk.copy(this.#head, this.#headHave, at, at + take);
        this.#headHave += take;
        at += take;
        if (this.#headHave === 2) this.#firstTwo();
        if (this.#headHave === this.#headNeed) this.#startPayload();
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      const part = chunk.subarray(at, at + take);
      at += take;
      this.#remaining -= take;
      if (this.#opcode === OP_BINARY || this.#opcode === OP_CONTINUATION) this.#sink.data(this.#unmask(part));
      // Copied: a control frame may be cut between reads, and the reads' memory may be reused (ReadRing).
      else this.#control.push(this.#unmask(Buffer.from(part)));
      if (this.#remaining === 0) this.#endFrame();
    }
  }

  /** The first two header bytes: flags, opcode, mask bit and the 7-bit length tell how long the header is. */
  #firstTwo(): void {
    const b0 = this.#head[0]!;
    const b1 = this.#head[1]!;
    if ((b0 & 0x70) !== 0) throw protocol('the peer set RSV bits: no extension was negotiated');
    const masked = (b1 & 0x80) !== 0;
    if (masked && !this.#masked) throw protocol('the peer masked a frame: a server must not');
    if (!masked && this.#masked) throw protocol('the peer sent an unmasked frame: a client must mask');
    const len7 = b1 & 0x7f;
    this.#headNeed = (len7 === 126 ? 4 : len7 === 127 ? 10 : 2) + (masked ? 4 : 0);
  }

  /** Undoes a non-zero masking key in place, continuing where the frame's previous part stopped. */
  #unmask(part: Buffer): Buffer {
    const mask = this.#mask;
    if (!mask) return part;
    let m = this.#maskAt;
    for (let i = 0; i < part.length; i++, m = (m + 1) & 3) part[i]! ^= mask[m]!;
    this.#maskAt = m;
    return part;
  }

  #startPayload(): void {
    const fin = (this.#head[0]! & 0x80) !== 0;
    const opcode = this.#head[0]! & 0x0f;
    const len7 = this.#head[1]! & 0x7f;
    let length = len7;
    if (len7 === 126) length = this.#head.readUInt16BE(2);
    else if (len7 === 127) {
      const hi = this.#head.readUInt32BE(2);
      if (hi > 0x1fffff) throw protocol('the peer announced a frame longer than 2^53 bytes');
      length = hi * 0x100000000 + this.#head.readUInt32BE(6);
    }
    const key = this.#masked ? this.#head.subarray(this.#headNeed - 4, this.#headNeed) : undefined;
    this.#mask = key && key.readUInt32BE(0) !== 0 ? Buffer.from(key) : undefined;
    this.#maskAt = 0;
    switch (opcode) {
      case OP_BINARY:
      case OP_CONTINUATION:
        if (opcode === OP_BINARY && this.#inMessage) throw protocol('a binary frame inside a fragmented message');
        if (opcode === OP_CONTINUATION && !this.#inMessage) throw protocol('a continuation frame outside a fragmented message');
        this.#messageBytes += length;
        if (this.#messageBytes > this.#maxMessageBytes) {
          throw protocol(`a message of more than ${this.#maxMessageBytes} bytes (the link's maxPayload)`, WS_CLOSE_MESSAGE_TOO_BIG);
        }
        this.#inMessage = !fin;
        if (fin) this.#messageBytes = 0;
        break;
      case OP_TEXT:
        throw protocol('the peer sent a text frame; colo links carry binary frames only', WS_CLOSE_UNSUPPORTED_DATA);
      case OP_CLOSE:
      case OP_PING:
      case OP_PONG:
        if (!fin) throw protocol('a fragmented control frame');
        if (length > 125) throw protocol(`a control frame of ${length} bytes (at most 125)`);
        break;
      default:
        throw protocol(`unknown opcode 0x${opcode.toString(16)}`);
    }
    this.#opcode = opcode;
    this.#remaining = length;
    this.#headHave = 0;
    this.#headNeed = 2;
    if (length === 0) this.#endFrame();
  }

  #endFrame(): void {
    this.#remaining = -1;
    if (this.#opcode === OP_BINARY || this.#opcode === OP_CONTINUATION) {
      if (!this.#inMessage) this.#sink.messageEnd?.();
      return;
    }
    const payload = this.#control.length === 1 ? this.#control[0]! : Buffer.concat(this.#control);
    this.#control = [];
    if (this.#opcode === OP_PING) this.#sink.ping(payload);
    else if (this.#opcode === OP_PONG) this.#sink.pong(payload);
    else {
      if (payload.length === 1) throw protocol('a close frame with a 1-byte payload');
      this.#closed = true;
      this.#sink.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1005, payload.subarray(2));
    }
  }
}

function protocol(message: string, closeCode = WS_CLOSE_PROTOCOL_ERROR): LinkError {
  return new LinkError(LinkErrorCode.PROTOCOL, message, { closeCode });
}
