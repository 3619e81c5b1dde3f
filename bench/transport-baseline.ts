/**
 * Same-run baselines for anything that moves checkpoint bytes between nodes: how fast plain TCP moves bytes
 * over loopback on this machine, and how fast an authenticated PeerLink does, both server -> client (the
 * direction of the replication stream: the primary listens and sends) in 1 MiB writes. bench/checkpoint.ts
 * states its transfer figures as ratios against these.
 *
 * Run alone: `npx tsx --conditions=@colo/source bench/transport-baseline.ts [MiB]`.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { connectToPeer, listenForPeers, type Hello, type PeerLink } from '@colo/coordinator';
import type { BenchRow, BenchSuite } from './harness.js';

export interface Throughput {
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
}

const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
/** Every write is one 1 MiB buffer, the link's frame size, so both measurements do the same number of writes. */
const CHUNK = MiB;

function throughput(bytes: number, startNs: bigint): Throughput {
  const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
  return { bytes, seconds, bytesPerSecond: bytes / seconds };
}

/** Plain TCP on loopback, one process: the listener's socket writes `bytes` to the dialer's socket. */
export function measureRawTcpThroughput(bytes: number = GiB): Promise<Throughput> {
  return measureRawTcp(bytes, receiveOnThisThread);
}

/**
 * As measureRawTcpThroughput, with the receiving end in a worker thread: what plain TCP moves when, as in the
 * checkpoint bench's pair, each end has a thread of its own. For comparison only; the targets are stated against
 * the one-thread figure.
 */
export function measureRawTcpThroughputTwoThreads(bytes: number = GiB): Promise<Throughput> {
  return measureRawTcp(bytes, receiveInWorker);
}

/** The dialing, receiving end: resolves `done` once `bytes` have arrived. */
type TcpReceiver = { done: Promise<void>; close(): Promise<void> };

async function receiveOnThisThread(port: number, bytes: number): Promise<TcpReceiver> {
  const client = connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  let received = 0;
  const done = new Promise<void>((resolve) => {
    client.on('data', (b: Buffer) => {
      received += b.length;
      if (received >= bytes) resolve();
    });
  });
  return { done, close: async () => void client.destroy() };
}

/** The receiving end of a worker thread: plain JavaScript (a worker has no TypeScript loader). */
const TCP_RECEIVER = `
const { connect } = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const socket = connect({ port: workerData.port, host: '127.0.0.1', noDelay: true });
let received = 0;
socket.on('data', (b) => {
  received += b.length;
  if (received >= workerData.bytes) { parentPort.postMessage('done'); socket.destroy(); }
});
`;

async function receiveInWorker(port: number, bytes: number): Promise<TcpReceiver> {
  const worker = new Worker(TCP_RECEIVER, { eval: true, workerData: { port, bytes } });
  const done = new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return { done, close: async () => void (await worker.terminate()) };
}

/** A plain TCP listener on loopback for one connection: its port, the accepted socket once it is there, close. */
async function loopbackListener(): Promise<{ port: number; accepted(): Promise<Socket>; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const server = createServer({ noDelay: true }, (s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async accepted() {
      while (sockets.length === 0) await new Promise((r) => setImmediate(r));
      return sockets[0]!;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function measureRawTcp(bytes: number, receiver: (port: number, bytes: number) => Promise<TcpReceiver>): Promise<Throughput> {
  const chunk = randomBytes(CHUNK);
  const listener = await loopbackListener();
  let end: TcpReceiver | undefined;
  try {
    end = await receiver(listener.port, bytes);
    const sender = await listener.accepted();
    const start = process.hrtime.bigint();
    for (let sent = 0; sent < bytes; sent += CHUNK) {
      const n = Math.min(CHUNK, bytes - sent);
      if (!sender.write(n === CHUNK ? chunk : chunk.subarray(0, n))) {
        await new Promise<void>((resolve) => sender.once('drain', resolve));
      }
    }
    await end.done;
    const result = throughput(bytes, start);
    sender.destroy();
    return result;
  } finally {
    await end?.close();
    await listener.close();
  }
}

/**
 * The dialing end of the handshake replay, in a worker thread (plain JavaScript): a COLO secondary reduced to its
 * messages. NEW (16 B) in, SUSPENDED + dirty list (40 B) out; the checkpoint (pages + 208 B of closing records)
 * in, READY (16 B) out, then RESUMED (16 B) on the next turn, as the secondary resumes its guest in between.
 */
const REPLAY_SECONDARY = `
const { connect } = require('node:net');
const { workerData } = require('node:worker_threads');
const socket = connect({ port: workerData.port, host: '127.0.0.1', noDelay: true });
const checkpoint = workerData.pages * 4096 + 208;
let buffered = 0;
let awaiting = 16;
socket.on('data', (b) => {
  buffered += b.length;
  if (awaiting === 16 && buffered >= 16) {
    buffered -= 16;
    awaiting = checkpoint;
    socket.write(Buffer.alloc(40));
  }
  if (awaiting === checkpoint && buffered >= checkpoint) {
    buffered -= checkpoint;
    awaiting = 16;
    socket.write(Buffer.alloc(16));
    setImmediate(() => socket.write(Buffer.alloc(16)));
  }
});
`;

/**
 * A COLO checkpoint's message pattern over plain TCP on loopback, the secondary's end in a worker thread (as in
 * the checkpoint bench): the pause the primary would see if coordinating cost nothing but the socket work, i.e.
 * from the secondary's dirty list arriving to its READY arriving (the pages written in one call). `reps`
 * measured after as many unmeasured; returns the pauses in seconds. For comparison with the checkpoint pause.
 */
export async function measureRawHandshakeReplay(pages: number, reps: number): Promise<number[]> {
  const data = randomBytes(pages * 4096 + 208);
  const listener = await loopbackListener();
  const worker = new Worker(REPLAY_SECONDARY, { eval: true, workerData: { port: listener.port, pages } });
  try {
    const primary = await listener.accepted();
    const pauses: number[] = [];
    let buffered = 0;
    let waiter: { n: number; resolve: () => void } | undefined;
    primary.on('data', (b: Buffer) => {
      buffered += b.length;
      if (waiter && buffered >= waiter.n) {
        buffered -= waiter.n;
        const w = waiter;
        waiter = undefined;
        w.resolve();
      }
    });
    const receive = (n: number) =>
      new Promise<void>((resolve) => {
        if (buffered >= n) {
          buffered -= n;
          resolve();
        } else waiter = { n, resolve };
      });
    for (let i = 0; i < 2 * reps; i++) {
      primary.write(Buffer.alloc(16)); // NEW
      await receive(40); // SUSPENDED + dirty list
      const start = performance.now();
      primary.write(data); // pages and closing records
      await receive(16); // READY
      if (i >= reps) pauses.push((performance.now() - start) / 1000);
      await receive(16); // RESUMED
    }
    primary.destroy();
    return pauses;
  } finally {
    await worker.terminate();
    await listener.close();
  }
}

function benchHello(role: Hello['role']): Hello {
  return { protocol: 1, channel: 'replication', nodeId: role, role, mode: 'colo', epoch: 1, extensions: [] };
}

export interface LinkThroughputOptions {
  /**
   * 'listener-to-dialer' (default) is the replication stream's direction. 'dialer-to-listener' shows the
   * cost of RFC 6455 client masking, done in JavaScript by ws (no native bufferutil here).
   */
  direction?: 'listener-to-dialer' | 'dialer-to-listener';
}

/**
 * An authenticated PeerLink (PSK, default heartbeat and high-water mark) on loopback, one process: one end
 * sends `bytes` to the other in 1 MiB send() calls, awaiting each (backpressure).
 */
export async function measureLinkThroughput(bytes: number = GiB, options: LinkThroughputOptions = {}): Promise<Throughput> {
  const chunk = randomBytes(CHUNK);
  const psk = randomBytes(32);
  const heartbeat = { intervalMs: 100, timeoutMs: 1000 };
  let serverLink: PeerLink | undefined;
  const server = await listenForPeers({
    host: '127.0.0.1',
    port: 0,
    security: { psk },
    heartbeat,
    hello: () => benchHello('primary'),
    onLink: (link) => {
      serverLink = link;
    },
  });
  try {
    const client = await connectToPeer({ url: server.url, security: { psk }, heartbeat, hello: benchHello('secondary') });
    while (!serverLink) await new Promise((r) => setImmediate(r));
    const down = (options.direction ?? 'listener-to-dialer') === 'listener-to-dialer';
    const sender = down ? serverLink : client;
    const receiver = down ? client : serverLink;
    let received = 0;
    const start = process.hrtime.bigint();
    const done = new Promise<void>((resolve, reject) => {
      receiver.onData((b) => {
        received += b.length;
        if (received >= bytes) resolve();
      });
      receiver.onClose((e) => reject(e ?? new Error('link closed during the measurement')));
    });
    for (let sent = 0; sent < bytes; sent += CHUNK) {
      const n = Math.min(CHUNK, bytes - sent);
      await sender.send(n === CHUNK ? chunk : chunk.subarray(0, n));
    }
    await done;
    const result = throughput(bytes, start);
    client.close();
    return result;
  } finally {
    await server.close();
  }
}

const suite: BenchSuite = {
  name: 'transport baseline (loopback, server -> client, 1 MiB writes)',
  async run(log) {
    const bytes = GiB;
    const tcp = await measureRawTcpThroughput(bytes);
    log(`raw TCP: ${(tcp.bytesPerSecond / 1e9).toFixed(2)} GB/s`);
    const link = await measureLinkThroughput(bytes);
    log(`PeerLink: ${(link.bytesPerSecond / 1e9).toFixed(2)} GB/s`);
    const up = await measureLinkThroughput(128 * MiB, { direction: 'dialer-to-listener' });
    log(`PeerLink dialer -> listener (zero mask): ${(up.bytesPerSecond / 1e9).toFixed(2)} GB/s`);
    const rows: BenchRow[] = [
      { name: 'raw TCP (1 GiB)', value: tcp.bytesPerSecond / 1e9, unit: 'GB/s' },
      {
        name: 'PeerLink, PSK, heartbeats on (1 GiB)',
        value: link.bytesPerSecond / 1e9,
        unit: 'GB/s',
        baseline: 'raw TCP',
        ratio: link.bytesPerSecond / tcp.bytesPerSecond,
        target: '>= 0.5 x raw TCP',
        met: link.bytesPerSecond >= 0.5 * tcp.bytesPerSecond,
      },
      {
        name: 'PeerLink dialer -> listener, zero mask (128 MiB)',
        value: up.bytesPerSecond / 1e9,
        unit: 'GB/s',
        baseline: 'raw TCP',
        ratio: up.bytesPerSecond / tcp.bytesPerSecond,
      },
    ];
    return rows;
  },
};
export default suite;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const mib = Number(process.argv[2] ?? 1024);
  for (let round = 1; round <= 3; round++) {
    const tcp = await measureRawTcpThroughput(mib * MiB);
    const link = await measureLinkThroughput(mib * MiB);
    const up = await measureLinkThroughput(Math.min(mib, 128) * MiB, { direction: 'dialer-to-listener' });
    console.log(
      `round ${round}: raw TCP ${(tcp.bytesPerSecond / 1e9).toFixed(2)} GB/s, PeerLink ${(link.bytesPerSecond / 1e9).toFixed(2)} GB/s, ratio ${(link.bytesPerSecond / tcp.bytesPerSecond).toFixed(2)}; dialer -> listener ${(up.bytesPerSecond / 1e9).toFixed(3)} GB/s`,
    );
  }
}
