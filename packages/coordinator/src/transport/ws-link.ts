import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { closeCodeFor, closeReason, CLOSE_NORMAL, errorFromPeerClose, LinkError, LinkErrorCode } from './errors.js';
import { toBuffer } from './handshake-reader.js';
import type { HandshakeResult } from './handshake.js';
import { Heartbeat, type HeartbeatOptions } from './heartbeat.js';
import { negotiateExtensions, type Hello } from './hello.js';
import type { DataListenerOptions, PeerLink } from './peer-link.js';
import { errorFromSocket } from './socket-errors.js';
import { FrameReader } from './frame-reader.js';
import type { ReadRing, ReadRingStats } from './read-ring.js';
import { childLogger } from '../observability/logger.js';

/** Largest frame send() produces: small enough that a pong never waits long behind one. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** send() waits while more than this is queued in the socket: bounds the sender's memory per link. */
export const DEFAULT_HIGH_WATER_MARK = 8 * 1024 * 1024;

export interface WsLinkOptions {
  heartbeat: HeartbeatOptions;
  highWaterMark: number;
  logger: Logger;
  remoteAddress: string;
  /** The dialer's socket reads into this ring (see ReadRing): once open, the link reads it directly. */
  readRing?: ReadRing;
}

type Waiter = { resolve: () => void; reject: (e: LinkError) => void };
/** The parts of ws's (8.x) receiver the dialer's frame reading takes over from (see takeOverReceiving). */
type WsReceiver = {
  _state: number;
  _buffers: Buffer[];
  _bufferedBytes: number;
  _fin: boolean;
  _opcode: number;
  _payloadLength: number;
  _fragmented: number;
  _fragments: Buffer[];
  _maxPayload: number;
  write(chunk: Buffer): boolean;
  emit(event: string, ...args: unknown[]): boolean;
};
type RawSocket = {
  cork(): void;
  uncork(): void;
  write(chunk: Buffer, cb?: (err?: Error | null) => void): boolean;
  destroyed?: boolean;
  writable?: boolean;
};

/** RFC 6455 header of one unmasked, final, binary frame of `length` bytes (server to client). */
function binaryFrameHeader(length: number): Buffer {
  if (length < 126) return Buffer.from([0x82, length]);
  if (length < 0x10000) {
    const h = Buffer.allocUnsafe(4);
    h[0] = 0x82;
    h[1] = 126;
    h.writeUInt16BE(length, 2);
    return h;
  }
  const h = Buffer.allocUnsafe(10);
  h[0] = 0x82;
  h[1] = 127;
  h.writeUInt32BE(Math.floor(length / 0x100000000), 2);
  h.writeUInt32BE(length >>> 0, 6);
  return h;
}

/** An unmasked frame header with first byte `b0` (FIN, opcode) for a payload of `length` bytes. */
function frameHeader(b0: number, length: number): Buffer {
  const h = binaryFrameHeader(length);
  h[0] = b0;
  return h;
}

function joinPieces(pieces: readonly Uint8Array[], total: number): Uint8Array {
  if (pieces.length === 1) return pieces[0]!;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The PeerLink over one authenticated ws socket, opened once the handshake is done. */
export class WsPeerLink implements PeerLink {
  readonly localHello: Hello;
  readonly peerHello: Hello;
  readonly extensions: readonly string[];
  readonly remoteAddress: string;
  private readonly ws: WebSocket;
  private readonly log: Logger;
  private readonly highWaterMark: number;
  private readonly heartbeat: Heartbeat;
  /** Each data listener with what it retains; undefined: it may keep anything, so it gets copies of reused memory. */
  private readonly dataListeners = new Map<(bytes: Uint8Array) => void, DataListenerOptions['retainedBytes'] | undefined>();
  private readonly closeListeners = new Set<(error: LinkError | null) => void>();
  private readonly rttListeners = new Set<(seconds: number) => void>();
  /** Frames received but not yet delivered (no listener yet, or receiving paused). */
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private userPaused = false;
  private socketPaused = false;
  private stalled = false;
  private flushQueued = false;
  /** undefined while open; then null (local close) or the LinkError that ended the link. */
  private ended: LinkError | null | undefined;
  private socketError: LinkError | undefined;
  private sendChain: Promise<void> = Promise.resolve();
  private drainWaiters: Waiter[] = [];
  private stallWaiters: Waiter[] = [];
  /** whenWritten() callers, each waiting for the frames queued before its call (in call order). */
  private flushWaiters: (Waiter & { target: number })[] = [];
  /** Data frames handed to the socket with the `written` callback, and those whose callback has run. */
  private framesQueued = 0;
  private framesWritten = 0;
  private rtt: number | undefined;
  private readonly readRing: ReadRing | undefined;
  /** Payload bytes out of the dialer's own frame reading so far (delivered or held). */
  private payloadIn = 0;

  constructor(ws: WebSocket, handshake: HandshakeResult, opts: WsLinkOptions) {
    this.ws = ws;
    this.localHello = handshake.localHello;
    this.peerHello = handshake.peerHello;
    this.extensions = Object.freeze(negotiateExtensions(this.localHello.extensions, this.peerHello.extensions));
    this.remoteAddress = opts.remoteAddress;
    this.highWaterMark = opts.highWaterMark;
    this.readRing = opts.readRing;
    this.log = childLogger(opts.logger, {
      component: 'transport',
      channel: this.localHello.channel,
      peer: this.peerHello.nodeId,
      remoteAddress: this.remoteAddress,
    });
    this.heartbeat = new Heartbeat(opts.heartbeat, {
      ping: (payload) => this.ws.ping(payload),
      onTimeout: (silentForMs) =>
        this.fail(
          new LinkError(
            LinkErrorCode.HEARTBEAT_TIMEOUT,
            `nothing heard from the peer for ${Math.round(silentForMs)} ms (timeout ${opts.heartbeat.timeoutMs} ms); the peer or the network is hung`,
          ),
          'terminate',
        ),
      onRtt: (seconds) => {
        this.rtt = seconds;
        for (const l of this.rttListeners) this.callSafely('onRtt', () => l(seconds));
      },
    });
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => this.received(data, isBinary));
    ws.on('ping', () => this.heartbeat.heard());
    ws.on('pong', (payload: Buffer) => this.heartbeat.pong(payload));
    ws.on('error', (err: Error) => {
      this.socketError ??= errorFromSocket(err);
      this.log.warn({ err: err.message }, 'link socket error');
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.ended !== undefined) return;
      const error = this.socketError ?? errorFromPeerClose(code, reason.toString('utf8'));
      this.log.warn({ code: error.code }, error.message);
      this.finish(error);
    });
    for (const frame of handshake.early) this.hold(frame);
    // After ws has finished with the chunk it may be reading now (this can run inside its message event).
    if ((ws as unknown as { _isServer?: boolean })._isServer === false) queueMicrotask(() => this.takeOverReceiving());
    this.heartbeat.start();
    this.log.info({ extensions: this.extensions, peerEpoch: this.peerHello.epoch }, 'link open');
  }

  /**
   * Whether this link reads the peer's frames itself (the dialer, once open; see takeOverReceiving) rather than
   * through ws's receiver. Not part of PeerLink: tests check it, so a ws upgrade that defeats it is noticed.
   */
  get readsOwnFrames(): boolean {
    return this.ownFrames;
  }
  private ownFrames = false;

  /** How the dialer's reads went when it reads into a ring (reuseReadMemory); not part of PeerLink: tests. */
  get readRingStats(): Readonly<ReadRingStats> | undefined {
    return this.readRing?.stats;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  get rttSeconds(): number | undefined {
    return this.rtt;
  }

  send(bytes: Uint8Array): Promise<void> {
    const done = this.sendChain.then(() => this.sendFrames(bytes));
    this.sendChain = done.catch(() => undefined);
    return done;
  }

  sendPieces(pieces: readonly Uint8Array[]): Promise<void> {
    const done = this.sendChain.then(() => this.sendPieceFrames(pieces));
    this.sendChain = done.catch(() => undefined);
    return done;
  }

  whenWritten(): Promise<void> {
    // Queued behind every send so far; then wait for the socket's own queue to reach the kernel.
    const done = this.sendChain.then(
      () =>
        new Promise<void>((resolve, reject) => {
          if (this.ended !== undefined) return reject(this.endedError());
          if (this.framesWritten >= this.framesQueued) return resolve();
          this.flushWaiters.push({ target: this.framesQueued, resolve, reject });
        }),
    );
    return done;
  }

  onData(listener: (bytes: Uint8Array) => void, options?: DataListenerOptions): () => void {
    this.dataListeners.set(listener, options?.retainedBytes);
    if (this.held.length > 0) this.queueFlush();
    return () => this.dataListeners.delete(listener);
  }

  onClose(listener: (error: LinkError | null) => void): () => void {
    if (this.ended !== undefined) {
      const ended = this.ended;
      let cancelled = false;
      queueMicrotask(() => {
        if (!cancelled) this.callSafely('onClose', () => listener(ended));
      });
      return () => {
        cancelled = true;
      };
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  onRtt(listener: (seconds: number) => void): () => void {
    this.rttListeners.add(listener);
    return () => this.rttListeners.delete(listener);
  }

  close(reason = 'closed by the local node'): void {
    if (this.ended !== undefined) return;
    this.log.info({ reason }, 'link closed locally');
    // Data already handed to ws goes out before the close frame.
    this.ws.close(CLOSE_NORMAL, closeReason(reason));
    this.finish(null);
  }

  pauseReceiving(): void {
    this.userPaused = true;
    this.heartbeat.setJudging(false);
    this.updateSocketPause();
  }

  resumeReceiving(): void {
    this.userPaused = false;
    if (!this.stalled) this.heartbeat.setJudging(true);
    this.queueFlush();
    this.updateSocketPause();
  }

  /** The ws socket, for the listener's shutdown and for fault injection; not part of PeerLink. */
  get rawSocket(): WebSocket {
    return this.ws;
  }

  // ---- fault injection (reached only through faults.ts) ----

  /** Freeze like a hung process: no reading, no pings, no pongs, no sending, no judging the peer. */
  stallForFaultInjection(): void {
    if (this.ended !== undefined || this.stalled) return;
    this.stalled = true;
    this.heartbeat.stop();
    this.updateSocketPause();
    this.log.warn('link stalled (fault injection)');
  }

  unstallForFaultInjection(): void {
    if (!this.stalled) return;
    this.stalled = false;
    this.log.warn('link unstalled (fault injection)');
    if (this.ended !== undefined) return;
    this.heartbeat.start();
    this.heartbeat.setJudging(!this.userPaused);
    this.updateSocketPause();
    this.queueFlush();
    for (const w of this.stallWaiters.splice(0)) w.resolve();
  }

  /** Drop the TCP connection without a close frame, as a crash or a reset would. */
  cutForFaultInjection(): void {
    if (this.ended !== undefined) return;
    this.log.warn('link cut (fault injection)');
    this.fail(new LinkError(LinkErrorCode.SOCKET_ERROR, 'the connection was cut (fault injection)'), 'terminate');
  }

  // ---- internals ----

  private async sendFrames(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.stalled) await this.wait(this.stallWaiters);
      if (this.ended !== undefined) throw this.endedError();
      if (this.ws.bufferedAmount >= this.highWaterMark) {
        await this.wait(this.drainWaiters);
        continue;
      }
      const frame = bytes.subarray(offset, offset + MAX_FRAME_BYTES);
      this.framesQueued++;
      this.ws.send(frame, { binary: true }, this.written);
      offset += frame.length;
    }
    if (this.ended !== undefined) throw this.endedError();
  }

  /**
   * Sends `pieces` as binary frames of at most MAX_FRAME_BYTES when the link is the server side of the socket
   * (unmasked frames, RFC 6455): the frame headers and the pieces (a piece may be cut between two frames, as a
   * view) go to the socket corked, so Node writes them with one writev and nothing is copied in user space.
   * Otherwise (a client must mask, which copies anyway; ws busy with a queued frame) they are joined and sent
   * as send() would.
   */
  private async sendPieceFrames(pieces: readonly Uint8Array[]): Promise<void> {
    let total = 0;
    for (const p of pieces) total += p.length;
    if (total === 0) return;
    const socket = this.rawFrameSocket();
    if (!socket) return this.sendFrames(joinPieces(pieces, total));
    if (this.stalled) await this.wait(this.stallWaiters);
    if (this.ended !== undefined) throw this.endedError();
    while (this.ws.bufferedAmount >= this.highWaterMark) {
      await this.wait(this.drainWaiters);
      if (this.ended !== undefined) throw this.endedError();
    }
    if (this.stalled || this.rawFrameSocket() !== socket) return this.sendFrames(joinPieces(pieces, total));
    socket.cork();
    let i = 0;
    let offset = 0; // into pieces[i]
    for (let left = total; left > 0; ) {
      const frameBytes = Math.min(MAX_FRAME_BYTES, left);
      left -= frameBytes;
      this.framesQueued++;
      socket.write(binaryFrameHeader(frameBytes));
      for (let need = frameBytes; need > 0; ) {
        const p = pieces[i]!;
        const take = Math.min(p.length - offset, need);
        if (take > 0) {
          const b = Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.length);
          need -= take;
          // The frame's last write carries the callback that counts it as written.
          socket.write(take === b.length ? b : b.subarray(offset, offset + take), need === 0 ? this.written : undefined);
          offset += take;
        }
        if (offset === p.length) {
          i++;
          offset = 0;
        }
      }
    }
    socket.uncork();
    if (this.ended !== undefined) throw this.endedError();
  }

  /**
   * The socket under ws when frames may be written to it directly: open, server side (no masking), ws's
   * sender idle (it queues only while compressing or reading a Blob, neither of which colo does), not
   * stalled. Relies on ws internals (`_socket`, `_isServer`, `_sender._state`), checked at every use.
   */
  private rawFrameSocket(): RawSocket | undefined {
    const ws = this.ws as unknown as { _socket?: RawSocket | null; _isServer?: boolean; _sender?: { _state?: number; _queue?: unknown[] } };
    const socket = ws._socket;
    if (!socket || ws._isServer !== true || this.ws.readyState !== 1 || this.stalled) return undefined;
    if (!ws._sender || ws._sender._state !== 0 || (ws._sender._queue?.length ?? 0) > 0) return undefined;
    if (typeof socket.cork !== 'function' || socket.destroyed || socket.writable === false) return undefined;
    return socket;
  }

  /** Called by ws (and sendPieceFrames) as each frame reaches the kernel: wake senders once under the high-water mark. */
  private readonly written = (): void => {
    const buffered = this.ws.bufferedAmount;
    if (buffered < this.highWaterMark) {
      for (const w of this.drainWaiters.splice(0)) w.resolve();
    }
    // Frames complete in the order they were written.
    this.framesWritten++;
    while (this.flushWaiters.length > 0 && this.flushWaiters[0]!.target <= this.framesWritten) this.flushWaiters.shift()!.resolve();
  };

  private wait(list: Waiter[]): Promise<void> {
    return new Promise<void>((resolve, reject) => list.push({ resolve, reject }));
  }

  private endedError(): LinkError {
    return this.ended ?? new LinkError(LinkErrorCode.CLOSED, 'the link was closed by the local node');
  }

  private received(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.ended !== undefined) return;
    this.heartbeat.heard();
    if (!isBinary) {
      this.fail(new LinkError(LinkErrorCode.PROTOCOL, 'the peer sent a text frame; colo links carry binary frames only'), 'close');
      return;
    }
    const frame = toBuffer(data);
    if (this.held.length === 0 && this.canDeliver()) {
      this.deliver(frame);
    } else {
      this.hold(frame);
    }
  }

  private canDeliver(): boolean {
    return !this.userPaused && !this.stalled && this.dataListeners.size > 0;
  }

  /**
   * A listener that throws (e.g. the stream decoder refusing the peer's bytes) ends the link: the bytes
   * after a bad one are meaningless, and an exception escaping into ws's socket handler would crash the node.
   */
  private deliver(frame: Buffer): void {
    // A view of the read ring is given as is only to listeners that said what they keep; others get a copy.
    const shared = this.readRing?.owns(frame) === true;
    let copy: Buffer | undefined;
    for (const [l, retains] of this.dataListeners) {
      try {
        l(shared && !retains ? (copy ??= Buffer.from(frame)) : frame);
      } catch (e) {
        // Nothing after the rejected bytes is delivered.
        this.held.length = 0;
        this.heldBytes = 0;
        this.fail(
          new LinkError(LinkErrorCode.PROTOCOL, `the stream consumer rejected the peer's bytes: ${(e as Error)?.message ?? String(e)}`, {
            cause: e,
          }),
          'close',
        );
        return;
      }
    }
  }

  private callSafely(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.error({ err: (e as Error)?.message ?? String(e) }, `${what} listener threw`);
    }
  }

  private hold(frame: Buffer): void {
    this.held.push(frame);
    this.heldBytes += frame.length;
    // With nobody reading, stop the socket rather than buffer without bound.
    this.updateSocketPause();
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.held.length > 0 && this.canDeliver()) {
      const frame = this.held.shift()!;
      this.heldBytes -= frame.length;
      this.deliver(frame);
    }
    this.updateSocketPause();
  }

  private updateSocketPause(): void {
    if (this.ended !== undefined) return;
    const pause = this.userPaused || this.stalled || this.heldBytes >= this.highWaterMark;
    if (pause && !this.socketPaused) {
      this.socketPaused = true;
      this.ws.pause();
    } else if (!pause && this.socketPaused) {
      this.socketPaused = false;
      this.ws.resume();
    }
  }

  /**
   * The dialer receives the replication stream: it reads the frames itself (FrameReader) and hands their
   * payload on as views of the socket's reads, instead of letting ws's receiver copy every frame of up to 1 MiB
   * together from 64 KiB reads (a sixth of the secondary's work in a synchronisation). ws keeps everything else:
   * its socket listeners call its receiver's write(), which from now on feeds our reader; control frames go back
   * to ws as the receiver's own events, so ws still answers pings and runs the close handshake. What ws had
   * read but not yet delivered (a partial frame) is handed over first, with its header rebuilt. Relies on ws 8's
   * receiver internals, checked here: anything unexpected leaves ws's receiver in charge.
   */
  private takeOverReceiving(): void {
    if (this.ended !== undefined) return;
    const r = (this.ws as unknown as { _receiver?: WsReceiver })._receiver;
    if (!r || typeof r.write !== 'function' || !Array.isArray(r._buffers) || !Array.isArray(r._fragments)) {
      this.log.warn('ws receiver internals not as expected (ws upgraded?): ws reassembles frames, at a copy per frame');
      return;
    }
    // 0 GET_INFO, 1/2 the 16/64-bit length follows, 4 GET_DATA; anything else (mask, inflate, a deferred
    // message event) is not a state a server's uncompressed frames leave ws in between two reads.
    if (r._state !== 0 && r._state !== 1 && r._state !== 2 && r._state !== 4) {
      this.log.warn({ state: r._state }, 'ws receiver in an unexpected state: ws reassembles frames, at a copy per frame');
      return;
    }
    const reader = new FrameReader(
      {
        data: (bytes) => this.receivedBytes(bytes),
        ping: (payload) => r.emit('ping', payload),
        pong: (payload) => r.emit('pong', payload),
        close: (code, reason) => r.emit('conclude', code, reason),
      },
      r._maxPayload > 0 ? r._maxPayload : Number.MAX_SAFE_INTEGER,
    );
    const pending = r._buffers;
    const fragments = r._fragments;
    // Inside a fragmented message the reader must expect continuations, unless the frame in progress is the
    // message's first (binary) frame, whose rebuilt header says so itself.
    const inMessage = r._fragmented !== 0 && (r._state === 0 || r._opcode !== 0x02);
    let rebuilt: Buffer | undefined;
    if (r._state !== 0) {
      const b0 = (r._fin ? 0x80 : 0) | r._opcode;
      if (r._state === 4) rebuilt = frameHeader(b0, r._payloadLength);
      else rebuilt = Buffer.from([b0, r._state === 1 ? 126 : 127]);
    }
    r._buffers = [];
    r._bufferedBytes = 0;
    r._fragments = [];
    r._state = 0;
    r.write = (chunk: Buffer) => {
      this.readFrames(reader, chunk);
      return true;
    };
    // A fragmented message ws was assembling: its earlier fragments come first, then the frame in progress.
    for (const f of fragments) this.receivedBytes(f);
    if (inMessage) this.readFrames(reader, frameHeader(0x02, 0)); // opens the message in the reader's eyes
    if (rebuilt) this.readFrames(reader, rebuilt);
    for (const b of pending) this.readFrames(reader, b);
    this.ownFrames = true;
    if (this.readRing) {
      // From now on the socket's reads come here as views of the ring, without passing ws or the stream.
      this.readRing.consumer = {
        deliver: (view) => this.readFrames(reader, view),
        deliveredPayload: () => this.payloadIn,
        retainedPayload: () => this.retainedPayload(),
      };
    }
  }

  /**
   * How many of the most recent payload bytes may still be referenced: those held (they are the newest) plus
   * what each listener said it keeps of those it was given before them.
   */
  private retainedPayload(): number {
    let n = this.heldBytes;
    for (const retains of this.dataListeners.values()) if (retains) n += retains();
    return n;
  }

  private readFrames(reader: FrameReader, chunk: Buffer): void {
    if (this.ended !== undefined) return;
    try {
      reader.push(chunk);
    } catch (e) {
      this.fail(e instanceof LinkError ? e : new LinkError(LinkErrorCode.PROTOCOL, String(e), { cause: e }), 'close');
    }
  }

  /** Payload bytes from the dialer's own frame reading (see takeOverReceiving). */
  private receivedBytes(bytes: Buffer): void {
    if (this.ended !== undefined || bytes.length === 0) return;
    this.payloadIn += bytes.length;
    this.heartbeat.heard();
    if (this.held.length === 0 && this.canDeliver()) this.deliver(bytes);
    else this.hold(bytes);
  }

  /** Ends the link for a local reason and tells the peer why (close frame) or just drops it (terminate). */
  private fail(error: LinkError, how: 'close' | 'terminate'): void {
    if (this.ended !== undefined) return;
    this.log.warn({ code: error.code }, error.message);
    if (how === 'close') this.ws.close(closeCodeFor(error.code), closeReason(error.message));
    else this.ws.terminate();
    this.finish(error);
  }

  private finish(error: LinkError | null): void {
    if (this.ended !== undefined) return;
    this.ended = error;
    this.heartbeat.stop();
    const sendError = this.endedError();
    for (const w of this.drainWaiters.splice(0)) w.reject(sendError);
    for (const w of this.stallWaiters.splice(0)) w.reject(sendError);
    for (const w of this.flushWaiters.splice(0)) w.reject(sendError);
    // Bytes that arrived before the end are delivered before the end is announced.
    this.flush();
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const l of listeners) this.callSafely('onClose', () => l(error));
  }
}
