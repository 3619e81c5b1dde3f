import { connect, type Socket } from 'node:net';
import { SimulatedGuest } from '@colo/domain';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeBarrier, PrimaryProxy, ProxyErrorCode, SecondaryProxy, type ProxyError } from '../../src/proxy/index.js';
import { applyState, captureState, linkPair, resp } from './pair.js';

const MEMORY = 256 * 1024;
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A RESP client on a real socket: send a command, read until `count` replies' worth of lines arrived. */
async function redisClient(port: number) {
  const s: Socket = connect({ port, host: '127.0.0.1' });
  cleanup.push(() => s.destroy());
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  let buf = '';
  let wake: (() => void) | null = null;
  s.on('data', (d: Buffer) => {
    buf += d.toString();
    wake?.();
  });
  const ended = new Promise<void>((r) => s.once('end', r));
  return {
    ended,
    async call(...args: string[]): Promise<string> {
      buf = '';
      s.write(resp(...args));
      while (!/\r\n$/.test(buf) || (buf.startsWith('$') && buf.split('\r\n').length < 3 && !buf.startsWith('$-1'))) {
        await new Promise<void>((r) => (wake = r));
      }
      return buf;
    },
  };
}

describe('proxies with real client sockets', { timeout: 20_000 }, () => {
  it('serves clients through a COLO pair, then a promoted secondary serves them with every acknowledged write', async () => {
    const pGuest = new SimulatedGuest({ memoryBytes: MEMORY });
    const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    cleanup.push(() => pGuest.destroy(), () => sGuest.destroy());
    const link = linkPair();
    const primary = new PrimaryProxy({ domain: pGuest, service: { host: '127.0.0.1', port: 0 } });
    const address = (await primary.start())!;
    cleanup.push(() => primary.close());
    const secondary = new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'colo' });
    primary.attachSecondary(link.a, 'colo');
    // Initial synchronisation (checkpoint 1).
    secondary.checkpointStarted(1);
    primary.beforeSuspend(1);
    await pGuest.suspend();
    applyState(sGuest, captureState(pGuest));
    await secondary.checkpointApplied(1);
    primary.checkpointComplete(1);
    await pGuest.resume();
    primary.afterResume();
    await sGuest.resume();
    secondary.resumed();

    const a = await redisClient(address.port);
    const b = await redisClient(address.port);
    for (let i = 1; i <= 20; i++) {
      expect(await a.call('INCR', 'ledger')).toBe(`:${i}\r\n`);
      expect(await b.call('SET', `key${i}`, `value${i}`)).toBe('+OK\r\n');
    }
    expect(primary.metrics().compare.match).toBeGreaterThanOrEqual(40);
    expect(primary.metrics().compare.miscompare).toBe(0);

    // The primary dies.
    link.cut();
    await primary.close();
    await a.ended;
    const promoted = await secondary.promote({ service: { host: '127.0.0.1', port: 0 } });
    cleanup.push(() => promoted.close());
    expect(sGuest.openConnections).toEqual([]);
    const c = await redisClient(promoted.service!.address!.port);
    expect(await c.call('GET', 'ledger')).toBe('$2\r\n20\r\n');
    expect(await c.call('GET', 'key20')).toBe('$7\r\nvalue20\r\n');
    // New ids start above every id the old clients had.
    expect(promoted.service!.nextConnectionId).toBeGreaterThan(3);
  });

  it('a secondary that never gets the barrier fails the checkpoint with BARRIER_TIMEOUT', async () => {
    const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    cleanup.push(() => sGuest.destroy());
    const link = linkPair();
    const secondary = new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'colo' });
    secondary.checkpointStarted(1);
    await expect(secondary.checkpointApplied(1, 30)).rejects.toMatchObject({ code: ProxyErrorCode.BARRIER_TIMEOUT });
    // A barrier that does arrive (even before the node reports the checkpoint) is used.
    await link.a.send(encodeBarrier(2, 0));
    await link.settle();
    await secondary.checkpointApplied(2, 30);
    expect(secondary.generation).toBe(2);
  });

  it('garbage on the proxy link is reported as a typed link error, never a crash', async () => {
    const pGuest = new SimulatedGuest({ memoryBytes: MEMORY });
    const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    cleanup.push(() => pGuest.destroy(), () => sGuest.destroy());
    const link = linkPair();
    const primary = new PrimaryProxy({ domain: pGuest });
    await primary.start();
    primary.attachSecondary(link.a, 'colo');
    const secondary = new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'colo' });
    const errors: ProxyError[] = [];
    primary.onLinkError((e) => errors.push(e));
    secondary.onLinkError((e) => errors.push(e));
    await link.b.send(new Uint8Array([5, 0, 0, 0, 99, 1, 2, 3, 4])); // unknown type, to the primary
    await link.a.send(new Uint8Array([0xff, 0xff, 0xff, 0x7f])); // absurd length, to the secondary
    await link.settle();
    expect(errors.map((e) => e.code).sort()).toEqual([ProxyErrorCode.FRAME_TOO_LARGE, ProxyErrorCode.UNKNOWN_MESSAGE].sort());
    await primary.close();
    secondary.close();
  });
});
