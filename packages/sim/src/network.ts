import {
  isLinkRefusal,
  LinkError,
  LinkErrorCode,
  negotiateExtensions,
  type ConnectOptions,
  type DataListenerOptions,
  type Hello,
  type ListenOptions,
  type PeerLink,
  type PeerNetwork,
  type PeerServer,
} from '@colo/coordinator';
import type { SimClock } from './clock.js';
import type { Rng } from './rng.js';

type Message =
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'ping'; sentAt: number }
  | { kind: 'pong'; sentAt: number }
  | { kind: 'close'; error: LinkError | null }
  /** The connection broke here: what came before it was delivered, nothing after it is. */
  | { kind: 'reset' };

interface Listening {
  host: string;
  port: number;
  opts: ListenOptions;
  links: Set<SimLinkEnd>;
}

export interface SimNetworkOptions {
  clock: SimClock;
  rng: Rng;
  /** One-way latency of a message, drawn per message from this range (ms). Order is kept per direction. */
  latencyMs?: [number, number];
}

/**
 * The simulated network: peer links between hosts on the simulated clock. A link is an ordered byte stream in
 * each direction (as TCP): a partition delays what is sent, it never reorders or drops it while the link lives;
 * the heartbeats, which cannot pass either, end the link on each side that judges it. A host can be cut off
 * (its links reset), crash as a process (the kernel closes its sockets: the peer hears a close) or vanish as a
 * host (the peer hears nothing). The listener's hello callback decides every link, as on the real transport.
 */
export class SimNetwork {
  readonly clock: SimClock;
  readonly #rng: Rng;
  readonly #latency: [number, number];
  readonly #listeners = new Map<string, Listening>();
  readonly #partitions = new Set<string>();
  readonly #gone = new Set<string>();
  readonly #ends = new Set<SimLinkEnd>();
  /** Hosts whose next data message is cut short and the link broken right after (cutNextMessage). */
  readonly #cutting = new Set<string>();
  /** Hosts whose next data message comes after one of garbage (garbleNextMessage). */
  readonly #garbling = new Set<string>();
  #nextPort = 1000;

  constructor(opts: SimNetworkOptions) {
    this.clock = opts.clock;
    this.#rng = opts.rng;
    this.#latency = opts.latencyMs ?? [0.05, 2];
  }

  /** The network as host `host` sees it (what its node is given). */
  forHost(host: string): PeerNetwork {
    return {
      listen: (opts) => this.#listen(host, opts),
      connect: (opts) => this.#connect(host, opts),
    };
  }

  latency(): number {
    return this.#rng.between(this.#latency[0], this.#latency[1]);
  }

  reachable(a: string, b: string): boolean {
    return !this.#gone.has(a) && !this.#gone.has(b) && !this.#partitions.has(pairKey(a, b));
  }

  partition(a: string, b: string): void {
    this.#partitions.add(pairKey(a, b));
  }

  heal(a: string, b: string): void {
    this.#partitions.delete(pairKey(a, b));
    for (const end of this.#ends) end.pump();
  }

  healAll(): void {
    this.#partitions.clear();
    for (const end of this.#ends) end.pump();
  }

  /** The host's process ended: its listener and links are gone; peers hear the close (the kernel's FIN). */
  processEnded(host: string): void {
    for (const [url, l] of this.#listeners) if (l.host === host) this.#listeners.delete(url);
    for (const end of [...this.#ends]) if (end.host === host) end.vanish(true);
  }

  /** The host vanished (power, kernel panic): nothing from it reaches anyone, nobody hears a close. */
  hostLost(host: string): void {
    this.#gone.add(host);
    for (const [url, l] of this.#listeners) if (l.host === host) this.#listeners.delete(url);
    for (const end of [...this.#ends]) if (end.host === host) end.vanish(false);
  }

  /** A host that was lost is back (empty: its processes start anew). */
  hostBack(host: string): void {
    this.#gone.delete(host);
  }

  /**
   * The next data message the host sends on any link arrives cut short at a random byte (a record, a checkpoint,
   * cut anywhere), and the connection breaks right behind it: both ends see LINK_SOCKET_ERROR.
   */
  cutNextMessage(host: string): void {
    this.#cutting.add(host);
  }

  /**
   * Bad bytes from a peer: the host's next data message on any link comes after a message of 8-64 random bytes,
   * at a record boundary of the stream (a record header with a random type and length). The receiver must refuse
   * it with a typed error and lose the peer; the link itself stays up.
   */
  garbleNextMessage(host: string): void {
    this.#garbling.add(host);
  }

  /** @internal The garbage to send before this message from `host`, once; undefined when there is none. */
  takeGarbage(host: string): Uint8Array | undefined {
    if (!this.#garbling.delete(host)) return undefined;
    const bytes = new Uint8Array(this.#rng.int(8, 64));
    for (let i = 0; i < bytes.length; i++) bytes[i] = this.#rng.int(0, 255);
    return bytes;
  }

  /** @internal Whether this message from `host` is the one to cut (once). */
  takeCut(host: string): boolean {
    return this.#cutting.delete(host);
  }

  /**
   * @internal Where to cut `bytes` (at least one byte delivered, at least one not): half the time at a byte drawn
   * at random, half the time between two records of the migration stream when the message is whole records (a
   * record header is its type and its length, little-endian, the body padded to 8 bytes): a checkpoint cut at any
   * record, not only inside its largest one.
   */
  cutAt(bytes: Uint8Array): number {
    const boundaries: number[] = [];
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 8 <= bytes.length; ) {
      at += 8 + ((view.getUint32(at + 4, true) + 7) & ~7);
      if (at < bytes.length) boundaries.push(at);
      else if (at > bytes.length) boundaries.length = 0;
    }
    if (boundaries.length > 0 && this.#rng.chance(0.5)) return this.#rng.pick(boundaries);
    return this.#rng.int(1, Math.max(1, bytes.length - 1));
  }

  /** Resets every link of the host (both ends see LINK_SOCKET_ERROR). */
  reset(host: string): void {
    for (const end of [...this.#ends]) if (end.host === host) end.reset();
  }

  /** @internal */
  register(end: SimLinkEnd): void {
    this.#ends.add(end);
  }
  /** @internal */
  unregister(end: SimLinkEnd): void {
    this.#ends.delete(end);
  }

  async #listen(host: string, opts: ListenOptions): Promise<PeerServer> {
    const port = opts.port || this.#nextPort++;
    const url = `ws://${host}:${port}`;
    if (this.#listeners.has(url)) throw new LinkError(LinkErrorCode.SOCKET_ERROR, `cannot listen on ${host}:${port}: address in use`);
    const entry: Listening = { host, port, opts, links: new Set() };
    this.#listeners.set(url, entry);
    return {
      url,
      port,
      close: async () => {
        if (this.#listeners.get(url) === entry) this.#listeners.delete(url);
        for (const end of [...entry.links]) end.close('the listener is shutting down');
      },
    };
  }

  async #connect(host: string, opts: ConnectOptions): Promise<PeerLink> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    await sleep(this.latency() * 2);
    const entry = this.#listeners.get(opts.url);
    if (!entry) throw new LinkError(LinkErrorCode.SOCKET_ERROR, `the connection to the peer failed: connect ECONNREFUSED ${opts.url}`);
    if (!this.reachable(host, entry.host) || this.clock.isFrozen(entry.host)) {
      await sleep(timeoutMs);
      throw new LinkError(LinkErrorCode.CONNECT_TIMEOUT, `the peer at ${opts.url} did not complete the handshake within ${timeoutMs} ms`);
    }
    const answer = this.clock.within(entry.host, () => entry.opts.hello(opts.hello));
    if (isLinkRefusal(answer)) {
      const error = new LinkError(answer.code, answer.refuse);
      this.clock.within(entry.host, () => entry.opts.onRefused?.(error, host));
      throw new LinkError(answer.code, `the peer ended the link: ${answer.refuse}`);
    }
    await sleep(this.latency());
    const extensions = negotiateExtensions(opts.hello.extensions, answer.extensions);
    const heartbeat = { ...opts.heartbeat };
    const dialer = new SimLinkEnd(this, host, opts.hello, answer, extensions, `${entry.host}:${entry.port}`, heartbeat);
    const listener = new SimLinkEnd(this, entry.host, answer, opts.hello, extensions, `${host}:0`, entry.opts.heartbeat);
    dialer.peer = listener;
    listener.peer = dialer;
    entry.links.add(listener);
    listener.onClose(() => entry.links.delete(listener));
    this.clock.within(entry.host, () => listener.startHeartbeat());
    // The listener's node takes the link in its own turn (its asynchronous work is its host's).
    this.clock.later(entry.host, 0, () => entry.opts.onLink(listener));
    dialer.startHeartbeat();
    return dialer;
  }
}

/** One end of a simulated link, on host `host`. */
export class SimLinkEnd implements PeerLink {
  readonly extensions: readonly string[];
  peer: SimLinkEnd | undefined;
  readonly #net: SimNetwork;
  readonly #heartbeat: { intervalMs: number; timeoutMs: number };
  readonly #inbox: { at: number; message: Message }[] = [];
  #pumping = false;
  #lastAt = 0;
  readonly #dataListeners = new Set<(bytes: Uint8Array) => void>();
  readonly #closeListeners = new Set<(error: LinkError | null) => void>();
  readonly #rttListeners = new Set<(seconds: number) => void>();
  readonly #held: Uint8Array[] = [];
  #paused = false;
  #ended: LinkError | null | undefined;
  #lastHeard: number;
  #beat: ReturnType<typeof setInterval> | undefined;
  #rtt: number | undefined;

  readonly host: string;
  readonly localHello: Hello;
  readonly peerHello: Hello;
  readonly remoteAddress: string;

  constructor(
    net: SimNetwork,
    host: string,
    localHello: Hello,
    peerHello: Hello,
    extensions: readonly string[],
    remoteAddress: string,
    heartbeat: { intervalMs: number; timeoutMs: number },
  ) {
    this.#net = net;
    this.host = host;
    this.localHello = localHello;
    this.peerHello = peerHello;
    this.remoteAddress = remoteAddress;
    this.extensions = Object.freeze([...extensions]);
    this.#heartbeat = heartbeat;
    this.#lastHeard = net.clock.now;
    net.register(this);
  }

  get bufferedAmount(): number {
    return 0;
  }
  get rttSeconds(): number | undefined {
    return this.#rtt;
  }

  async send(bytes: Uint8Array): Promise<void> {
    if (this.#ended !== undefined) throw this.#endedError();
    const garbage = this.#net.takeGarbage(this.host);
    if (garbage) this.#transmit({ kind: 'data', bytes: garbage });
    if (bytes.length > 1 && this.#net.takeCut(this.host)) {
      this.#transmit({ kind: 'data', bytes: Uint8Array.from(bytes.subarray(0, this.#net.cutAt(bytes))) });
      this.#transmit({ kind: 'reset' });
      return;
    }
    this.#transmit({ kind: 'data', bytes: Uint8Array.from(bytes) });
  }

  async sendPieces(pieces: readonly Uint8Array[]): Promise<void> {
    return this.send(Buffer.concat(pieces));
  }

  async whenWritten(): Promise<void> {
    if (this.#ended !== undefined) throw this.#endedError();
  }

  onData(listener: (bytes: Uint8Array) => void, _options?: DataListenerOptions): () => void {
    this.#dataListeners.add(listener);
    if (this.#held.length > 0) this.#schedule(() => this.#flush());
    return () => this.#dataListeners.delete(listener);
  }

  onClose(listener: (error: LinkError | null) => void): () => void {
    if (this.#ended !== undefined) {
      const ended = this.#ended;
      let cancelled = false;
      queueMicrotask(() => {
        if (!cancelled) listener(ended);
      });
      return () => {
        cancelled = true;
      };
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  onRtt(listener: (seconds: number) => void): () => void {
    this.#rttListeners.add(listener);
    return () => this.#rttListeners.delete(listener);
  }

  close(_reason?: string): void {
    if (this.#ended !== undefined) return;
    this.#transmit({ kind: 'close', error: null });
    this.#finish(null);
  }

  pauseReceiving(): void {
    this.#paused = true;
  }

  resumeReceiving(): void {
    this.#paused = false;
    this.#lastHeard = this.#net.clock.now;
    this.#schedule(() => this.#flush());
  }

  // ---- the simulation's side ----

  /** @internal Starts pinging and judging the peer (on this end's host). */
  startHeartbeat(): void {
    this.#lastHeard = this.#net.clock.now;
    this.#beat = setInterval(() => {
      if (this.#ended !== undefined) return;
      const silent = this.#net.clock.now - this.#lastHeard;
      if (!this.#paused && silent > this.#heartbeat.timeoutMs) {
        this.#terminate(new LinkError(LinkErrorCode.HEARTBEAT_TIMEOUT, `nothing heard from the peer for ${Math.round(silent)} ms; the peer or the network is hung`));
        return;
      }
      this.#transmit({ kind: 'ping', sentAt: this.#net.clock.now });
    }, this.#heartbeat.intervalMs);
  }

  /** @internal Delivers what is due, when the two hosts can reach each other. */
  pump(): void {
    if (this.#pumping || this.#inbox.length === 0 || this.#ended !== undefined) return;
    const peer = this.peer;
    if (!peer || !this.#net.reachable(peer.host, this.host)) return;
    this.#pumping = true;
    const wait = Math.max(0, this.#inbox[0]!.at - this.#net.clock.now);
    this.#net.clock.within(this.host, () =>
      setTimeout(() => {
        this.#pumping = false;
        const p = this.peer;
        if (!p || !this.#net.reachable(p.host, this.host)) return;
        const now = this.#net.clock.now;
        while (this.#inbox.length > 0 && this.#inbox[0]!.at <= now && this.#ended === undefined) this.#receive(this.#inbox.shift()!.message);
        this.pump();
      }, wait),
    );
  }

  /** @internal The process or host is gone: this end stops without a word; `fin`: the peer hears a close. */
  vanish(fin: boolean): void {
    if (this.#ended !== undefined) return;
    if (fin) this.#transmit({ kind: 'close', error: new LinkError(LinkErrorCode.CLOSED, 'the connection to the peer dropped without a close frame') });
    this.#ended = null;
    this.#stop();
  }

  /** @internal A reset: both ends fail with LINK_SOCKET_ERROR. */
  reset(): void {
    const error = new LinkError(LinkErrorCode.SOCKET_ERROR, 'the connection to the peer failed: read ECONNRESET');
    if (this.peer) this.peer.#terminate(error);
    this.#terminate(error);
  }

  #transmit(message: Message): void {
    const peer = this.peer;
    if (!peer) return;
    const at = Math.max(peer.#lastAt, this.#net.clock.now + this.#net.latency());
    peer.#lastAt = at;
    peer.#inbox.push({ at, message });
    peer.pump();
  }

  #receive(message: Message): void {
    this.#lastHeard = this.#net.clock.now;
    switch (message.kind) {
      case 'ping':
        this.#transmit({ kind: 'pong', sentAt: message.sentAt });
        return;
      case 'pong': {
        this.#rtt = (this.#net.clock.now - message.sentAt) / 1000;
        for (const l of this.#rttListeners) l(this.#rtt);
        return;
      }
      case 'reset':
        this.reset();
        return;
      case 'close':
        this.#flush();
        this.#finish(message.error ?? new LinkError(LinkErrorCode.CLOSED, 'the peer closed the link (close code 1000)'));
        return;
      case 'data':
        if (this.#held.length === 0 && this.#canDeliver()) this.#deliver(message.bytes);
        else this.#held.push(message.bytes);
    }
  }

  #canDeliver(): boolean {
    return !this.#paused && this.#dataListeners.size > 0 && this.#ended === undefined;
  }

  #flush(): void {
    while (this.#held.length > 0 && this.#canDeliver()) this.#deliver(this.#held.shift()!);
  }

  #deliver(bytes: Uint8Array): void {
    for (const l of [...this.#dataListeners]) {
      try {
        l(bytes);
      } catch (e) {
        const error = new LinkError(LinkErrorCode.PROTOCOL, `the stream consumer rejected the peer's bytes: ${(e as Error)?.message ?? String(e)}`);
        this.#held.length = 0;
        this.#transmit({ kind: 'close', error: new LinkError(LinkErrorCode.PROTOCOL, `the peer ended the link: ${error.message}`) });
        this.#finish(error);
        return;
      }
    }
  }

  #schedule(fn: () => void): void {
    this.#net.clock.within(this.host, () => setTimeout(fn, 0));
  }

  /** Ends this end without telling the peer (it finds out from its heartbeats, or from a reset). */
  #terminate(error: LinkError): void {
    if (this.#ended !== undefined) return;
    this.#finish(error);
  }

  #finish(error: LinkError | null): void {
    if (this.#ended !== undefined) return;
    this.#ended = error;
    this.#stop();
    const listeners = [...this.#closeListeners];
    this.#closeListeners.clear();
    for (const l of listeners) l(error);
  }

  #stop(): void {
    if (this.#beat !== undefined) clearInterval(this.#beat);
    this.#beat = undefined;
    this.#inbox.length = 0;
    this.#net.unregister(this);
  }

  #endedError(): LinkError {
    return this.#ended ?? new LinkError(LinkErrorCode.CLOSED, 'the link was closed by the local node');
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
