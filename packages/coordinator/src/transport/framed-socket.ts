import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { LinkError, LinkErrorCode } from './errors.js';
import { FrameReader, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, type FrameSender } from './frame-reader.js';
import { controlFrame, frameHeader } from './frame-writer.js';
import type { ReadRing } from './read-ring.js';

/** Who takes the payload of the peer's binary frames: the handshake, then the link. */
export interface FrameSink {
  /** Payload bytes, as views of the socket's reads (which may be reused memory, see retainedPayload). */
  data(bytes: Buffer): void;
  /** The last frame of a binary message ended. */
  messageEnd(): void;
  /** The peer broke the framing; nothing more is read. */
  broken(error: LinkError): void;
  /**
   * How many of the most recent payload bytes the sink may still reference as views. A sink without it copies
   * whatever it keeps, so the reads it was given may be reused at once.
   */
  retainedPayload?(): number;
}

export interface FramedSocketOptions {
  /** Which end of the WebSocket this is: the server reads masked frames and writes unmasked ones. */
  side: FrameSender;
  /** Largest message accepted from the peer. */
  maxPayload: number;
  /** Bytes read from the socket already (what followed the HTTP upgrade request). */
  head?: Buffer;
  /** The socket reads into this ring (a dialer's reuseReadMemory): its reads come here as views. */
  readRing?: ReadRing;
}

/** Before the HTTP response's head ends, what a client reads is the HTTP client's; a non-101 answer stays so. */
const MAX_HTTP_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');
const SWITCHING_PROTOCOLS = /^HTTP\/1\.1 101 /;

/**
 * The socket ws is given in place of the TCP (or TLS) socket. colo reads every frame itself (FrameReader) and
 * writes its data frames itself (writeFrames), so ws's private state never matters: ws runs the HTTP upgrade
 * and the WebSocket control protocol (pings answered, the close handshake) on what passes through here, and
 * never sees a data frame.
 *
 * Both directions pass through at once. What ws writes (its upgrade, pings, pongs, close frames, the handshake's
 * messages) goes to the socket in the same call, so a frame of ws's and one of colo's never interleave. What the
 * peer sends is read once: the client's HTTP response head goes to ws as it came; after it every frame goes to
 * the FrameReader, whose binary payload goes to the sink (handshake, then link) and whose control frames are
 * encoded again, as the peer would have, for ws to act on.
 */
export class FramedSocket extends Duplex {
  /** The TCP or TLS socket under the link. */
  readonly socket: Socket;
  readonly side: FrameSender;
  readonly #peer: FrameSender;
  readonly #reader: FrameReader;
  #phase: 'http' | 'frames' | 'raw';
  #httpHead: Buffer = Buffer.alloc(0);
  #sink: FrameSink | undefined;
  /** What came while no sink was attached, copied, in order. */
  readonly #pending: (Buffer | 'message-end' | LinkError)[] = [];
  #failed = false;
  /** Payload bytes handed on so far (a running total). */
  #payloadIn = 0;

  constructor(socket: Socket, opts: FramedSocketOptions) {
    super({ allowHalfOpen: true, decodeStrings: true });
    this.socket = socket;
    this.side = opts.side;
    this.#peer = opts.side === 'server' ? 'client' : 'server';
    this.#phase = opts.side === 'client' ? 'http' : 'frames';
    this.#reader = new FrameReader(
      {
        data: (bytes) => this.#data(bytes),
        messageEnd: () => (this.#sink ? this.#sink.messageEnd() : this.#pending.push('message-end')),
        ping: (payload) => this.push(controlFrame(OP_PING, payload, this.#peer)),
        pong: (payload) => this.push(controlFrame(OP_PONG, payload, this.#peer)),
        close: (code, reason) => this.push(controlFrame(OP_CLOSE, closePayload(code, reason), this.#peer)),
      },
      opts.maxPayload,
      this.#peer,
    );
    const ring = opts.readRing;
    if (ring) {
      ring.consumer = {
        deliver: (view) => this.#read(view),
        copies: () => this.#phase !== 'frames' || !this.#sink?.retainedPayload,
        deliveredPayload: () => this.#payloadIn,
        retainedPayload: () => this.#sink?.retainedPayload?.() ?? 0,
      };
    } else {
      socket.on('data', (chunk: Buffer) => this.#read(chunk));
    }
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    for (const event of ['connect', 'secureConnect', 'timeout'] as const) socket.on(event, () => this.emit(event));
    if (opts.head && opts.head.length > 0) this.#read(opts.head);
  }

  /**
   * Where the peer's binary payload goes from now on; what came while there was none is handed on first.
   * undefined: keep it (copied) for the next sink.
   */
  setSink(sink: FrameSink | undefined): void {
    this.#sink = sink;
    while (sink && this.#sink === sink && this.#pending.length > 0) {
      const next = this.#pending.shift()!;
      if (next === 'message-end') sink.messageEnd();
      else if (next instanceof LinkError) sink.broken(next);
      else sink.data(next);
    }
  }

  /**
   * Writes `pieces` (their concatenation) as binary frames of at most `maxFrame` bytes, headers and views of
   * the pieces corked into one writev: nothing is copied. `written` is called as each frame reaches the kernel.
   */
  writeFrames(pieces: readonly Uint8Array[], total: number, maxFrame: number, written: () => void): void {
    const socket = this.socket;
    socket.cork();
    let i = 0;
    let offset = 0; // into pieces[i]
    for (let left = total; left > 0; ) {
      const frameBytes = Math.min(maxFrame, left);
      left -= frameBytes;
      socket.write(frameHeader(OP_BINARY, frameBytes, this.side));
      for (let need = frameBytes; need > 0; ) {
        const p = pieces[i]!;
        const take = Math.min(p.length - offset, need);
        if (take > 0) {
          const b = Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.length);
          need -= take;
          // The frame's last write carries the callback that counts it as written.
          socket.write(take === b.length ? b : b.subarray(offset, offset + take), need === 0 ? written : undefined);
          offset += take;
        }
        if (offset === p.length) {
          i++;
          offset = 0;
        }
      }
    }
    socket.uncork();
  }

  /** Bytes handed to the socket (by colo or by ws) and not yet written to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength + this.writableLength;
  }

  /** Stops reading the socket (receive-side backpressure: TCP pushes back on the peer). */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  // ---- what ws and Node's HTTP client use of a socket ----

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  get connecting(): boolean {
    return this.socket.connecting;
  }
  setTimeout(ms: number, callback?: () => void): this {
    this.socket.setTimeout(ms);
    if (callback) this.once('timeout', callback);
    return this;
  }
  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.socket.setKeepAlive(enable, initialDelay);
    return this;
  }
  ref(): this {
    this.socket.ref();
    return this;
  }
  unref(): this {
    this.socket.unref();
    return this;
  }

  override _read(): void {
    // Bytes are pushed as the socket delivers them; ws's control frames are few and small.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.socket.destroyed) this.socket.write(chunk);
    callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    if (!this.socket.destroyed) {
      this.socket.cork();
      for (const { chunk } of chunks) this.socket.write(chunk);
      this.socket.uncork();
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }

  // ---- reading ----

  #read(chunk: Buffer): void {
    if (this.destroyed) return;
    switch (this.#phase) {
      case 'frames':
        return this.#readFrames(chunk);
      case 'raw':
        this.push(Buffer.from(chunk));
        return;
      case 'http':
        return this.#readHttpHead(chunk);
    }
  }

  /** A client: the HTTP response's head goes to ws's HTTP client as it came, then frames begin (on a 101). */
  #readHttpHead(chunk: Buffer): void {
    const have = Buffer.concat([this.#httpHead, chunk]);
    const end = have.indexOf(HEAD_END);
    if (end < 0 && have.length <= MAX_HTTP_HEAD_BYTES) {
      this.#httpHead = have;
      return;
    }
    this.#httpHead = Buffer.alloc(0);
    if (end < 0 || !SWITCHING_PROTOCOLS.test(have.subarray(0, end).toString('latin1'))) {
      // Not an upgrade: all of it is the HTTP client's to judge.
      this.#phase = 'raw';
      this.push(have);
      return;
    }
    this.#phase = 'frames';
    this.push(have.subarray(0, end + HEAD_END.length));
    if (have.length > end + HEAD_END.length) this.#readFrames(have.subarray(end + HEAD_END.length));
  }

  #readFrames(chunk: Buffer): void {
    if (this.#failed) return;
    try {
      this.#reader.push(chunk);
    } catch (e) {
      this.#failed = true;
      const error = e instanceof LinkError ? e : new LinkError(LinkErrorCode.PROTOCOL, String(e), { cause: e });
      if (this.#sink) this.#sink.broken(error);
      else this.#pending.push(error);
    }
  }

  #data(bytes: Buffer): void {
    this.#payloadIn += bytes.length;
    if (this.#sink) this.#sink.data(bytes);
    else this.#pending.push(Buffer.from(bytes));
  }
}

/** A close frame's payload: none for 1005 (no status), else the status and the reason. */
function closePayload(code: number, reason: Buffer): Buffer {
  if (code === 1005) return Buffer.alloc(0);
  const p = Buffer.allocUnsafe(2 + reason.length);
  p.writeUInt16BE(code, 0);
  reason.copy(p, 2);
  return p;
}
