import type { LinkError } from './errors.js';
import type { Hello } from './hello.js';
import type { ReadRingStats } from './read-ring.js';

/** See PeerLink.onData. */
export interface DataListenerOptions {
  /** How many of the most recent bytes given to the listener it may still reference as views (0: none). */
  retainedBytes: () => number;
}

/** How a link proves who is at the other end. At least one is required; both may be combined. */
export interface LinkSecurity {
  /** Pre-shared key (>= 16 bytes): mutual HMAC-SHA256 challenge/response, the default mode. */
  psk?: Uint8Array;
  /** Mutual TLS (wss): our certificate and key, and the CA that must have signed the peer's certificate. */
  tls?: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer };
}

/**
 * An authenticated, heartbeat-supervised, ordered byte stream between two colo nodes on one channel. The
 * frame boundaries carry no meaning: the concatenation of what send() was given is what onData delivers.
 */
export interface PeerLink {
  readonly localHello: Hello;
  readonly peerHello: Hello;
  /** Negotiated: the extensions both sides offered, sorted. */
  readonly extensions: readonly string[];
  readonly remoteAddress: string;
  /**
   * Sends stream bytes as binary frames (<= 1 MiB each). Resolves once the link can take more (the bytes
   * waiting in the socket are under the high-water mark); never drops. Calls are queued in call order. The
   * frames reference `bytes` until written: do not modify it after calling. Rejects with the link's LinkError
   * once the link is closed.
   */
  send(bytes: Uint8Array): Promise<void>;
  /**
   * Optional (WsPeerLink has it): sends the concatenation of `pieces` as if by send(concat(pieces)), without
   * copying them into one buffer first (one frame and one writev when they fit a frame). The pieces are
   * referenced until written (see whenWritten()): do not modify them before.
   */
  sendPieces?(pieces: readonly Uint8Array[]): Promise<void>;
  /**
   * Optional (with sendPieces): resolves once every byte given to send()/sendPieces() so far has been handed
   * to the kernel, i.e. the caller's buffers are no longer referenced; rejects with the link's LinkError if
   * the link ends first.
   */
  whenWritten?(): Promise<void>;
  /** Bytes handed to the socket and not yet written to the kernel. */
  readonly bufferedAmount: number;
  /**
   * Stream bytes from the peer, in order. Frames that arrive while no listener is attached (or while
   * receiving is paused) are held and delivered, in order, once one is attached (or on resume).
   * The bytes are the listener's to keep unless it passes `options`: then it may be given views of memory the
   * link reuses (a dialer with `reuseReadMemory`), and it promises to reference only the most recent
   * `retainedBytes()` of the bytes it was given (copying out anything older it wants to keep).
   */
  onData(listener: (bytes: Uint8Array) => void, options?: DataListenerOptions): () => void;
  /**
   * Called exactly once when the link ends: null for a local close(), else a LinkError (peer closed, socket
   * error, heartbeat timeout, protocol violation). A listener attached after the end is called at once
   * (asynchronously) with the same value.
   */
  onClose(listener: (error: LinkError | null) => void): () => void;
  close(reason?: string): void;
  /**
   * Stops/restarts reading from the socket (receive-side backpressure): no onData calls while paused, TCP
   * pushes back on the sender. Our own pings keep telling the peer we are alive while paused.
   */
  pauseReceiving(): void;
  resumeReceiving(): void;
  /** Last heartbeat round-trip time in seconds, undefined before the first. */
  readonly rttSeconds: number | undefined;
  /** Where this link's socket reads went, for a link that reads into reused memory (a dialer's ReadRing); else undefined. */
  readonly readRingStats?: Readonly<ReadRingStats> | undefined;
  onRtt(listener: (seconds: number) => void): () => void;
}
