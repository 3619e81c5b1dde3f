import { createServer, type Server, type Socket } from 'node:net';
import { ProxyError, ProxyErrorCode } from './errors.js';
import type { ConnectionId, InputKind, OutputBytes } from './types.js';

export interface ServiceListenerOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** The first connection id to hand out; ids then only grow (never reused in a node's life). Default 1. */
  firstConnectionId?: number;
  /**
   * Stop reading a client whose replies are not being read: once this many output bytes wait in its socket,
   * its input is paused until they drain. Default 1 MiB.
   */
  maxPendingOutputBytes?: number;
  /**
   * After the guest closes a connection, how long the client may keep its side open before the socket is
   * destroyed (a client that never closes must not hold a socket forever). Default 5000 ms.
   */
  guestCloseLingerMs?: number;
  /** Every client event, in the order it happened: 'open', then 'data'..., then exactly one 'close'. */
  onEvent: (conn: ConnectionId, kind: InputKind, bytes?: Uint8Array) => void;
  /** onEvent threw: the client is disconnected (one bad event must not take the node down). */
  onEventError?: (conn: ConnectionId, error: unknown) => void;
}

export interface ServiceCounters {
  accepted: number;
  bytesIn: number;
  bytesOut: number;
  /** Times a client's input was paused because its output was not being read. */
  outputBackpressurePauses: number;
  /** Output for a connection whose client was already gone (dropped). */
  outputToGoneClient: number;
  /** Events whose handler threw (the client was disconnected). */
  eventErrors: number;
}

interface Client {
  socket: Socket;
  /** The guest closed the connection: further client bytes mean nothing to it. */
  guestClosed: boolean;
  closeSent: boolean;
  pausedForOutput: boolean;
}

/**
 * The protected service's TCP front on the active primary: each accepted client socket becomes a connection
 * id and a stream of input events; released output is written back to the right socket. Knows sockets, not
 * checkpoints: the proxy decides what gets released and when.
 */
export class ServiceListener {
  readonly #opts: Required<Omit<ServiceListenerOptions, 'onEvent' | 'onEventError'>>;
  readonly #onEventError: ServiceListenerOptions['onEventError'];
  readonly #onEvent: ServiceListenerOptions['onEvent'];
  readonly #clients = new Map<ConnectionId, Client>();
  #server: Server | null = null;
  #nextId: number;
  #closing = false;
  #inputPaused = false;
  #address: { host: string; port: number } | null = null;
  readonly counters: ServiceCounters = {
    accepted: 0,
    bytesIn: 0,
    bytesOut: 0,
    outputBackpressurePauses: 0,
    outputToGoneClient: 0,
    eventErrors: 0,
  };

  constructor(options: ServiceListenerOptions) {
    this.#opts = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      firstConnectionId: options.firstConnectionId ?? 1,
      maxPendingOutputBytes: options.maxPendingOutputBytes ?? 1024 * 1024,
      guestCloseLingerMs: options.guestCloseLingerMs ?? 5000,
    };
    this.#onEvent = options.onEvent;
    this.#onEventError = options.onEventError;
    this.#nextId = this.#opts.firstConnectionId;
  }

  /** Where clients connect (after listen()). */
  get address(): { host: string; port: number } | null {
    return this.#address;
  }
  get connectionCount(): number {
    return this.#clients.size;
  }
  /** The id the next client will get. */
  get nextConnectionId(): number {
    return this.#nextId;
  }

  async listen(): Promise<{ host: string; port: number }> {
    if (this.#server) throw new ProxyError(ProxyErrorCode.INVALID_STATE, 'the service listener is already listening');
    // allowHalfOpen: a client that sends its last request and half-closes still gets the (held) replies.
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#accept(s));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => {
        this.#server = null;
        reject(
          new ProxyError(
            ProxyErrorCode.LISTEN_FAILED,
            `the client service cannot listen on ${this.#opts.host}:${this.#opts.port}: ${e.message}; choose another address or stop what holds it`,
            { cause: e },
          ),
        );
      };
      server.once('error', onError);
      server.listen(this.#opts.port, this.#opts.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', () => {}); // after listening, accept errors (EMFILE...) must not crash the node
    const a = server.address();
    if (a === null || typeof a === 'string') throw new ProxyError(ProxyErrorCode.LISTEN_FAILED, 'the client service has no TCP address');
    this.#address = { host: a.address, port: a.port };
    return this.#address;
  }

  /**
   * Writes released output to the client of `conn`; null ends the connection (the guest closed it) once what
   * was written before has been sent. Output for a client that is already gone is dropped.
   */
  write(conn: ConnectionId, bytes: OutputBytes): void {
    const c = this.#clients.get(conn);
    if (c === undefined || c.socket.destroyed) {
      this.counters.outputToGoneClient++;
      return;
    }
    if (bytes === null) {
      if (c.guestClosed) return;
      c.guestClosed = true;
      c.socket.end();
      const linger = setTimeout(() => c.socket.destroy(), this.#opts.guestCloseLingerMs);
      linger.unref();
      c.socket.once('close', () => clearTimeout(linger));
      return;
    }
    if (bytes.byteLength === 0 || c.guestClosed) return;
    this.counters.bytesOut += bytes.byteLength;
    c.socket.write(bytes);
    if (c.socket.writableLength > this.#opts.maxPendingOutputBytes && !c.pausedForOutput) {
      // A client that does not read its replies does not get to send more requests: TCP pushes back on it.
      c.pausedForOutput = true;
      this.counters.outputBackpressurePauses++;
      c.socket.pause();
    }
  }

  /** Stops reading from every client (input backpressure: the guest's input queue is too long). */
  pauseInput(): void {
    this.#inputPaused = true;
    for (const c of this.#clients.values()) c.socket.pause();
  }

  resumeInput(): void {
    this.#inputPaused = false;
    for (const c of this.#clients.values()) if (!c.pausedForOutput) c.socket.resume();
  }

  /** Whether a client's input is paused because its output is not being read (for tests and status). */
  isPausedForOutput(conn: ConnectionId): boolean {
    return this.#clients.get(conn)?.pausedForOutput ?? false;
  }

  /** Stops accepting and closes every client. No events are reported after this is called. */
  async close(): Promise<void> {
    this.#closing = true;
    for (const c of this.#clients.values()) c.socket.destroy();
    this.#clients.clear();
    const server = this.#server;
    this.#server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const conn = this.#nextId++;
    const c: Client = { socket, guestClosed: false, closeSent: false, pausedForOutput: false };
    this.#clients.set(conn, c);
    this.counters.accepted++;
    if (this.#inputPaused) socket.pause();
    this.#emit(conn, 'open');
    socket.on('data', (chunk: Buffer) => {
      if (c.guestClosed || c.closeSent) return;
      this.counters.bytesIn += chunk.byteLength;
      this.#emit(conn, 'data', chunk);
    });
    socket.on('drain', () => {
      if (c.pausedForOutput) {
        c.pausedForOutput = false;
        if (!this.#inputPaused) socket.resume();
      }
    });
    // The client half-closed: it sends nothing more, but may still be waiting for replies held by the proxy.
    socket.on('end', () => this.#clientGone(conn, c));
    // A reset or any socket error ends the client; 'close' follows and removes it.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#clientGone(conn, c);
      if (this.#clients.get(conn) === c) this.#clients.delete(conn);
    });
  }

  #clientGone(conn: ConnectionId, c: Client): void {
    if (c.closeSent) return;
    c.closeSent = true;
    this.#emit(conn, 'close');
  }

  #emit(conn: ConnectionId, kind: InputKind, bytes?: Uint8Array): void {
    if (this.#closing) return;
    try {
      this.#onEvent(conn, kind, bytes);
    } catch (e) {
      this.counters.eventErrors++;
      this.#clients.get(conn)?.socket.destroy();
      this.#onEventError?.(conn, e);
    }
  }
}
