import type { WebSocket } from 'ws';
import { errorFromPeerClose, LinkError, LinkErrorCode } from './errors.js';
import { errorFromSocket } from './socket-errors.js';

/**
 * Collects the frames of a socket while the handshake runs, so the handshake can be written as "await the
 * next message". Attaches the socket's 'error' listener first thing: an unauthenticated peer that sends an
 * oversize frame gets a typed error, never a crashed process. detach() hands the frames that arrived after
 * the last handshake message to the link, so no stream byte is lost between the two.
 */
export class HandshakeReader {
  private readonly ws: WebSocket;
  private readonly frames: Buffer[] = [];
  private failure: LinkError | undefined;
  private socketError: LinkError | undefined;
  private waiter: { resolve: (frame: Buffer) => void; reject: (e: LinkError) => void } | undefined;
  private readonly onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (!isBinary) {
      this.fail(new LinkError(LinkErrorCode.PROTOCOL, 'the peer sent a text frame; colo links carry binary frames only'));
      return;
    }
    this.frames.push(toBuffer(data));
    this.wake();
  };
  private readonly onError = (err: Error) => {
    this.socketError ??= this.reclassify(errorFromSocket(err));
  };
  /** Lets the dialer explain a socket error with what it knows of the TLS state. */
  reclassify: (error: LinkError) => LinkError = (error) => error;
  private readonly onClose = (code: number, reason: Buffer) => {
    this.fail(this.socketError ?? errorFromPeerClose(code, reason.toString('utf8')));
  };

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('error', this.onError);
    ws.on('message', this.onMessage);
    ws.on('close', this.onClose);
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

  /** Stops listening; returns frames that arrived early. The caller attaches its own listeners in the same tick. */
  detach(): Buffer[] {
    this.ws.off('message', this.onMessage);
    this.ws.off('close', this.onClose);
    this.ws.off('error', this.onError);
    return this.frames.splice(0);
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

export function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
