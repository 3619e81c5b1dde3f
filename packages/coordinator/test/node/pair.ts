import { randomBytes } from 'node:crypto';
import { SimulatedGuest } from '@colo/domain';
import { ColoNode, type ColoNodeOptions, type ReplicationMode } from '../internals.js';
import pino from 'pino';

/** Test helpers: a real pair of nodes over ws on loopback, each with its own simulated guest. */

export const PAGE = 4096;
export const quiet = pino({ level: process.env.COLO_TEST_LOG ?? 'silent' });

export interface Pair {
  primary: ColoNode;
  secondary: ColoNode;
  guest: SimulatedGuest;
  /** The pre-shared key both nodes use (for more nodes joining the pair). */
  psk: Uint8Array;
  /** Memory digest of the primary at each checkpoint it wrote (guest suspended), by global seq. */
  primaryDigests: Map<number, string>;
  /** Memory digest of the secondary after applying each checkpoint, by link index (0 = initial). */
  secondaryDigests: Map<number, string>;
  stop(): Promise<void>;
}

export interface PairOptions {
  mode: ReplicationMode;
  pages?: number;
  backgroundDirtyPagesPerSecond?: number;
  primary?: Partial<ColoNodeOptions>;
  secondary?: Partial<ColoNodeOptions>;
  psk?: Uint8Array;
  secondaryPsk?: Uint8Array;
}

export const FAST = { heartbeat: { intervalMs: 50, timeoutMs: 500 }, checkpoint: { phaseTimeoutMs: 1500, stallTimeoutMs: 1500, remusIntervalMs: 60, maxIntervalMs: 400 } };

export async function startPrimary(o: PairOptions, psk: Uint8Array) {
  const guest = new SimulatedGuest({ memoryBytes: (o.pages ?? 1024) * PAGE, backgroundDirtyPagesPerSecond: o.backgroundDirtyPagesPerSecond ?? 0, name: 'pair-guest' });
  const primary = new ColoNode({
    nodeId: 'node-a',
    role: 'primary',
    mode: o.mode,
    domain: guest,
    replication: { listen: { host: '127.0.0.1', port: 0 } },
    security: { psk },
    heartbeat: FAST.heartbeat,
    checkpoint: FAST.checkpoint,
    logger: quiet,
    ...o.primary,
  });
  await primary.start();
  return { guest, primary };
}

export function secondaryNode(o: PairOptions, url: string, psk: Uint8Array, nodeId = 'node-b'): ColoNode {
  return new ColoNode({
    nodeId,
    role: 'secondary',
    mode: o.mode,
    hostGuest: (id) =>
      new SimulatedGuest({
        memoryBytes: id!.pageCount * PAGE,
        uuid: id!.uuid,
        name: id!.name,
        startSuspended: true,
        backgroundDirtyPagesPerSecond: o.backgroundDirtyPagesPerSecond ?? 0,
      }),
    replication: { peer: url, listen: { host: '127.0.0.1', port: 0 } },
    security: { psk },
    heartbeat: FAST.heartbeat,
    checkpoint: FAST.checkpoint,
    logger: quiet,
    ...o.secondary,
  });
}

export async function startPair(o: PairOptions): Promise<Pair> {
  const psk = o.psk ?? randomBytes(32);
  const { guest, primary } = await startPrimary(o, psk);
  const primaryDigests = new Map<number, string>();
  const secondaryDigests = new Map<number, string>();
  primary.on('written', (seq, d) => primaryDigests.set(seq, (d as SimulatedGuest).memoryDigest()));
  const secondary = secondaryNode(o, primary.listenUrl!, o.secondaryPsk ?? psk);
  secondary.on('applied', (i, d) => secondaryDigests.set(i, (d as SimulatedGuest).memoryDigest()));
  try {
    await secondary.start();
  } catch (e) {
    await secondary.stop();
    await primary.stop();
    guest.destroy();
    throw e;
  }
  return {
    primary,
    secondary,
    guest,
    psk,
    primaryDigests,
    secondaryDigests,
    async stop() {
      await secondary.stop();
      await primary.stop();
      guest.destroy();
      secondary.domain?.destroy();
    },
  };
}

export function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const v = check();
      if (v) return resolve(v);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

/** RESP encoding of one command. */
export function resp(...args: string[]): Uint8Array {
  return Buffer.from(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
}

/** A random SET/INCR/APPEND workload through the primary guest's network side. Returns a stop function. */
export function randomWorkload(guest: SimulatedGuest, seed = 1, everyMs = 3): { stop(): void; sent: () => number } {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2147483648), x / 2147483648);
  guest.openConnection(1);
  let sent = 0;
  const t = setInterval(() => {
    for (let i = 0; i < 5; i++) {
      const key = `k${Math.floor(rnd() * 200)}`;
      const r = rnd();
      const cmd = r < 0.4 ? resp('SET', key, 'v'.repeat(1 + Math.floor(rnd() * 300))) : r < 0.7 ? resp('INCR', `n${Math.floor(rnd() * 50)}`) : resp('APPEND', key, 'xyz');
      guest.deliverInput(1, cmd);
      sent++;
    }
  }, everyMs);
  return { stop: () => clearInterval(t), sent: () => sent };
}
