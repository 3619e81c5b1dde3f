import type { WebSocket } from 'ws';
import { errorFromPeerClose, LinkError, LinkErrorCode } from './errors.js';
import type { FramedSocket, FrameSink } from './framed-socket.js';
import { errorFromSocket } from './socket-errors.js';

/**
 * Collects the peer's messages while the handshake runs, so the handshake can be written as "await the next
 * message". Listens to ws first thing for the socket's end and errors: an unauthenticated peer that breaks the
 * framing (an oversize frame) gets a typed error, never a crashed process. detach() hands what arrived after
 * the last handshake message to the link, so no stream byte is lost between the two.
 */
export class HandshakeReader {
  private readonly ws: WebSocket;
  private readonly framed: FramedSocket;
  private readonly frames: Buffer[] = [];
  /** The message being received, copied (the socket's reads may be reused memory). */
  private parts: Buffer[] = [];
  private failure: LinkError | undefined;
  private socketError: LinkError | undefined;
  private waiter: { resolve: (frame: Buffer) => void; reject: (e: LinkError) => void } | undefined;
  private readonly sink: FrameSink = {
    data: (bytes) => {
      this.parts.push(Buffer.from(bytes));
    },
    messageEnd: () => {
      this.frames.push(this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts));
      this.parts = [];
      this.wake();
    },
    broken: (error) => this.fail(error),
  };
  private readonly onError = (err: Error) => {
    this.socketError ??= this.reclassify(errorFromSocket(err));
  };
  /** Lets the dialer explain a socket error with what it knows of the TLS state. */
  reclassify: (error: LinkError) => LinkError = (error) => error;
  private readonly onClose = (code: number, reason: Buffer) => {
    this.fail(this.socketError ?? errorFromPeerClose(code, reason.toString('utf8')));
  };

  constructor(ws: WebSocket, framed: FramedSocket) {
    this.ws = ws;
    this.framed = framed;
    ws.on('error', this.onError);
    ws.on('close', this.onClose);
    framed.setSink(this.sink);
  }

  /** The first failure seen (peer closed, socket error, protocol violation), if any. */
  get failed(): LinkError | undefined {
    return this.failure;
  }

  /** Resolves with the next binary frame; rejects on close, error, or when nothing arrives for timeoutMs. */
  next(timeoutMs: number, what: string): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(
          new LinkError(
            LinkErrorCode.CONNECT_TIMEOUT,
            `the peer sent no ${what} within ${timeoutMs} ms; it is hung, or not a colo node`,
          ),
        );
      }, timeoutMs);
      this.waiter = {
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /**
   * Stops listening; returns the stream bytes that arrived behind the last handshake message (a message cut
   * short included: after the handshake, message boundaries mean nothing). Whatever comes next waits in the
   * FramedSocket for the link.
   */
  detach(): Buffer[] {
    this.ws.off('close', this.onClose);
    this.ws.off('error', this.onError);
    this.framed.setSink(undefined);
    const early = this.frames.splice(0);
    if (this.parts.length > 0) early.push(Buffer.concat(this.parts.splice(0)));
    return early;
  }

  private fail(error: LinkError): void {
    if (this.failure) return;
    this.failure = error;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(error);
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    const frame = this.frames.shift();
    if (!frame) return;
    this.waiter = undefined;
    w.resolve(frame);
  }
}
