import { randomBytes } from 'node:crypto';
import {
  connectToPeer,
  listenForPeers,
  type ConnectOptions,
  type Hello,
  type LinkError,
  type ListenOptions,
  type PeerLink,
  type PeerServer,
} from '../internals.js';

export const KEY = randomBytes(32);
export const FAST_HEARTBEAT = { intervalMs: 50, timeoutMs: 400 };

export function hello(overrides: Partial<Hello> = {}): Hello {
  return {
    protocol: 1,
    channel: 'replication',
    nodeId: 'node-b',
    role: 'secondary',
    mode: 'colo',
    epoch: 1,
    extensions: ['heartbeat', 'checkpoint-ack', 'epoch'],
    ...overrides,
  };
}

export interface Listening {
  server: PeerServer;
  /** Links the server accepted, in order. */
  links: PeerLink[];
  /** Resolves with the next accepted link. */
  nextLink(): Promise<PeerLink>;
  /** Every peer the server turned away. */
  refusals: { error: LinkError; remoteAddress: string }[];
  nextRefusal(): Promise<LinkError>;
}

/** A listener on an ephemeral loopback port answering every hello as the primary, with our test key. */
export async function listen(overrides: Partial<ListenOptions> = {}): Promise<Listening> {
  const links: PeerLink[] = [];
  const refusals: Listening['refusals'] = [];
  let linkWaiters: ((l: PeerLink) => void)[] = [];
  let refusalWaiters: ((e: LinkError) => void)[] = [];
  const server = await listenForPeers({
    host: '127.0.0.1',
    port: 0,
    security: { psk: KEY },
    heartbeat: FAST_HEARTBEAT,
    hello: (peer) => hello({ channel: peer.channel, nodeId: 'node-a', role: 'primary' }),
    onLink: (link) => {
      links.push(link);
      for (const w of linkWaiters.splice(0)) w(link);
    },
    onRefused: (error, remoteAddress) => {
      refusals.push({ error, remoteAddress });
      for (const w of refusalWaiters.splice(0)) w(error);
    },
    ...overrides,
  });
  return {
    server,
    links,
    refusals,
    nextLink: () => within(5000, 'no link was accepted', new Promise((resolve) => linkWaiters.push(resolve))),
    nextRefusal: () =>
      refusals.length > 0
        ? Promise.resolve(refusals[refusals.length - 1]!.error)
        : within(5000, 'no peer was refused', new Promise((r) => refusalWaiters.push(r))),
  };
}

/** Fails a test quickly with a message instead of letting it hang to the test timeout. */
export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

export function dial(url: string, overrides: Partial<ConnectOptions> = {}): Promise<PeerLink> {
  return connectToPeer({ url, security: { psk: KEY }, heartbeat: FAST_HEARTBEAT, hello: hello(), timeoutMs: 5000, ...overrides });
}

/** A connected pair: the listener's end and the dialer's end. */
export async function pair(
  listenOverrides: Partial<ListenOptions> = {},
  dialOverrides: Partial<ConnectOptions> = {},
): Promise<{ l: Listening; server: PeerLink; client: PeerLink }> {
  const l = await listen(listenOverrides);
  const accepted = l.nextLink();
  const client = await dial(l.server.url, dialOverrides);
  const server = await accepted;
  return { l, server, client };
}

/** Resolves with what onClose reports. */
export function closed(link: PeerLink): Promise<LinkError | null> {
  return new Promise((resolve) => link.onClose(resolve));
}

/** Collects everything onData delivers into one buffer. */
export function collect(link: PeerLink): {
  bytes(): Buffer;
  received(): number;
  waitFor(n: number): Promise<Buffer>;
  stop(): void;
} {
  const chunks: Buffer[] = [];
  let total = 0;
  let waiters: { n: number; resolve: () => void }[] = [];
  const stop = link.onData((b) => {
    chunks.push(Buffer.from(b));
    total += b.length;
    waiters = waiters.filter((w) => {
      if (total >= w.n) w.resolve();
      return total < w.n;
    });
  });
  const bytes = () => Buffer.concat(chunks);
  return {
    bytes,
    stop,
    received: () => total,
    waitFor: (n) =>
      total >= n ? Promise.resolve(bytes()) : new Promise<void>((resolve) => waiters.push({ n, resolve })).then(bytes),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A bare ws client that speaks no colo protocol by itself: records what it is sent and how it ends. */
export interface RawPeer {
  ws: import('ws').WebSocket;
  frames: Buffer[];
  opened: Promise<void>;
  ended: Promise<{ code: number; reason: string }>;
  next(): Promise<Buffer>;
}

export async function rawPeer(url: string, options: import('ws').ClientOptions = {}): Promise<RawPeer> {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
  const frames: Buffer[] = [];
  let waiters: ((b: Buffer) => void)[] = [];
  ws.on('error', () => undefined);
  ws.on('message', (data: Buffer) => {
    const w = waiters.shift();
    if (w) w(data);
    else frames.push(data);
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', () => reject(new Error('closed before open')));
  });
  opened.catch(() => undefined);
  const ended = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const all: Buffer[] = [];
  ws.on('message', (d: Buffer) => all.push(d));
  return {
    ws,
    frames: all,
    opened,
    ended,
    next: () => {
      const f = frames.shift();
      return f ? Promise.resolve(f) : new Promise((r) => waiters.push(r));
    },
  };
}
