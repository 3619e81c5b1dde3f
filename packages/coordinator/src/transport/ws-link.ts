import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { closeCodeOf, closeReason, CLOSE_NORMAL, errorFromPeerClose, LinkError, LinkErrorCode } from './errors.js';
import type { FramedSocket } from './framed-socket.js';
import type { HandshakeResult } from './handshake.js';
import { Heartbeat, type HeartbeatOptions } from './heartbeat.js';
import { negotiateExtensions, type Hello } from './hello.js';
import type { DataListenerOptions, PeerLink } from './peer-link.js';
import { errorFromSocket } from './socket-errors.js';
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
  /** The socket reads into this ring (a dialer's reuseReadMemory): for the link's read statistics. */
  readRing?: ReadRing;
}

type Waiter = { resolve: () => void; reject: (e: LinkError) => void };

/**
 * The PeerLink over one authenticated WebSocket, opened once the handshake is done. colo reads and writes the
 * data frames itself on the FramedSocket (views of the reads in, views of the caller's pieces out: no copy);
 * ws keeps the control protocol: pings and pongs (the heartbeat) and the close handshake.
 */
export class WsPeerLink implements PeerLink {
  readonly localHello: Hello;
  readonly peerHello: Hello;
  readonly extensions: readonly string[];
  readonly remoteAddress: string;
  private readonly ws: WebSocket;
  private readonly framed: FramedSocket;
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

  constructor(ws: WebSocket, framed: FramedSocket, handshake: HandshakeResult, opts: WsLinkOptions) {
    this.ws = ws;
    this.framed = framed;
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
      remote: this.remoteAddress,
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
    ws.on('ping', () => this.heartbeat.heard());
    ws.on('pong', (payload: Buffer) => this.heartbeat.pong(payload));
    ws.on('error', (err: Error) => {
      this.socketError ??= errorFromSocket(err);
      this.log.warn({ err: err.message }, 'link socket error');
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (this.ended !== undefined) return;
      const error = this.socketError ?? errorFromPeerClose(code, reason.toString('utf8'));
      // The peer ended it (or its host went away): the node reports what that means for it (a lost secondary,
      // a failover) at warn; this line says how the link ended.
      this.log.info({ code: error.code }, error.message);
      this.finish(error);
    });
    for (const frame of handshake.early) this.hold(frame);
    framed.setSink({
      data: (bytes) => this.receivedBytes(bytes),
      // The stream is the concatenation of the frames: message boundaries carry no meaning.
      messageEnd: () => undefined,
      broken: (error) => this.fail(error, 'close'),
      retainedPayload: () => this.retainedPayload(),
    });
    this.heartbeat.start();
    this.log.info({ extensions: this.extensions, peerEpoch: this.peerHello.epoch }, 'link open');
  }

  /** How the dialer's reads went when it reads into a ring (reuseReadMemory); not part of PeerLink: tests. */
  get readRingStats(): Readonly<ReadRingStats> | undefined {
    return this.readRing?.stats;
  }

  get bufferedAmount(): number {
    return this.framed.bufferedAmount;
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

  /** The TCP (or TLS) socket under the link, for tests that watch the wire; not part of PeerLink. */
  get socket(): Socket {
    return this.framed.socket;
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

  /** Sends `bytes` a frame at a time, each once the socket's queue is under the high-water mark. */
  private async sendFrames(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.stalled) await this.wait(this.stallWaiters);
      if (this.ended !== undefined) throw this.endedError();
      if (this.framed.bufferedAmount >= this.highWaterMark) {
        await this.wait(this.drainWaiters);
        continue;
      }
      const frame = bytes.subarray(offset, offset + MAX_FRAME_BYTES);
      this.framesQueued++;
      this.framed.writeFrames([frame], frame.length, MAX_FRAME_BYTES, this.written);
      offset += frame.length;
    }
    if (this.ended !== undefined) throw this.endedError();
  }

  /**
   * Sends `pieces` as binary frames of at most MAX_FRAME_BYTES, all at once once the socket's queue is under the
   * high-water mark: the frame headers and the pieces (a piece may be cut between two frames, as a view) go to
   * the socket corked, so Node writes them with one writev and nothing is copied in user space.
   */
  private async sendPieceFrames(pieces: readonly Uint8Array[]): Promise<void> {
    let total = 0;
    for (const p of pieces) total += p.length;
    if (total === 0) return;
    for (;;) {
      if (this.stalled) await this.wait(this.stallWaiters);
      if (this.ended !== undefined) throw this.endedError();
      if (this.framed.bufferedAmount < this.highWaterMark) break;
      await this.wait(this.drainWaiters);
    }
    this.framesQueued += Math.ceil(total / MAX_FRAME_BYTES);
    this.framed.writeFrames(pieces, total, MAX_FRAME_BYTES, this.written);
  }

  /** Called as each frame reaches the kernel: wake senders once under the high-water mark. */
  private readonly written = (): void => {
    const buffered = this.framed.bufferedAmount;
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

  private canDeliver(): boolean {
    return !this.userPaused && !this.stalled && this.dataListeners.size > 0;
  }

  /**
   * A listener that throws (e.g. the stream decoder refusing the peer's bytes) ends the link: the bytes
   * after a bad one are meaningless, and an exception escaping into the socket's read handler would crash the node.
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
      this.framed.pauseReading();
    } else if (!pause && this.socketPaused) {
      this.socketPaused = false;
      this.framed.resumeReading();
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

  /** Payload bytes of the peer's frames, as views of the socket's reads. */
  private receivedBytes(bytes: Buffer): void {
    if (this.ended !== undefined || bytes.length === 0) return;
    this.heartbeat.heard();
    if (this.held.length === 0 && this.canDeliver()) this.deliver(bytes);
    else this.hold(bytes);
  }

  /** Ends the link for a local reason and tells the peer why (close frame) or just drops it (terminate). */
  private fail(error: LinkError, how: 'close' | 'terminate'): void {
    if (this.ended !== undefined) return;
    this.log.warn({ code: error.code }, error.message);
    if (how === 'close') this.ws.close(closeCodeOf(error), closeReason(error.message));
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
    // Read on, so that the peer's close frame reaches ws and the close handshake completes (nothing more is delivered).
    if (this.socketPaused) {
      this.socketPaused = false;
      this.framed.resumeReading();
    }
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const l of listeners) this.callSafely('onClose', () => l(error));
  }
}
