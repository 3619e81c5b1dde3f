import fc from 'fast-check';
import { SimulatedGuest } from '@colo/domain';
import { describe, expect, it } from 'vitest';
import { PrimaryProxy, SecondaryProxy, type ProxyCheckpointReason } from '../../src/proxy/index.js';
import { applyState, captureState, linkPair, resp } from './pair.js';
import { newOutputTotals, type OutputTotals } from '../../src/proxy/metrics.js';

const MEMORY = 256 * 1024;
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/**
 * Two simulated guests behind a primary and a secondary proxy joined by an in-memory proxy link. A checkpoint
 * is emulated the way the replication engine does it: both guests suspended, every page plus vCPU and device
 * state copied from the primary into the secondary, then both resumed.
 */
async function coloPair(opts: { split?: (n: number) => number; timeDiverges?: boolean; watermark?: boolean; totals?: OutputTotals } = {}) {
  const pGuest = new SimulatedGuest({ memoryBytes: MEMORY, clock: () => 1_700_000_000_000 });
  const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, clock: () => 1_700_000_000_000 + (opts.timeDiverges === false ? 0 : 1), startSuspended: true });
  const link = linkPair(opts.split);
  const primary = new PrimaryProxy({ domain: pGuest, compareTimeoutMs: 60_000, totals: opts.totals });
  await primary.start();
  const secondary = new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'colo', barrierTimeoutMs: 2000, totals: opts.totals });
  primary.attachSecondary(link.a, 'colo', { inputWatermark: opts.watermark ?? true });
  const produced = new Map<number, string>();
  const released = new Map<number, string>();
  const closedFor = new Set<number>();
  pGuest.onOutput((conn, b) => b && produced.set(conn, (produced.get(conn) ?? '') + text(b)));
  primary.onRelease((conn, b) => {
    expect(closedFor.has(conn)).toBe(false); // nothing after a close
    if (b === null) closedFor.add(conn);
    else released.set(conn, (released.get(conn) ?? '') + text(b));
  });
  const requests: ProxyCheckpointReason[] = [];
  primary.onCheckpointNeeded((r) => requests.push(r));
  let k = 0;
  const state = { k: 0 };
  async function checkpoint() {
    k++;
    state.k = k;
    secondary.checkpointStarted(k);
    await sGuest.suspend();
    primary.beforeSuspend(k);
    await pGuest.suspend();
    applyState(sGuest, captureState(pGuest));
    await secondary.checkpointApplied(k);
    primary.checkpointComplete(k);
    await pGuest.resume();
    primary.afterResume();
    await sGuest.resume();
    secondary.resumed();
  }
  await checkpoint(); // the initial synchronisation
  return { pGuest, sGuest, primary, secondary, link, produced, released, requests, checkpoint, state };
}

describe('COLO primary and secondary proxies with two simulated guests', { timeout: 30_000 }, () => {
  it('deterministic traffic: every reply is released as soon as both guests produced it, with no checkpoint', async () => {
    const p = await coloPair({ split: (n) => Math.max(1, n >> 1) });
    for (const conn of [1, 2, 3]) p.primary.input(conn, 'open');
    for (let i = 0; i < 40; i++) {
      const conn = 1 + (i % 3);
      p.primary.input(conn, 'data', i % 4 === 0 ? resp('SET', `k${i}`, `v${i}`) : i % 4 === 1 ? resp('INCR', `n${conn}`) : resp('GET', `k${i - 1}`));
      await p.link.settle();
      for (const c of [1, 2, 3]) expect(p.released.get(c) ?? '').toBe(p.produced.get(c) ?? '');
    }
    expect(p.requests).toEqual([]);
    const m = p.primary.metrics();
    expect(m.compare.miscompare).toBe(0);
    expect(m.compare.match).toBeGreaterThanOrEqual(40);
    expect(m.heldBytes).toBe(0);
    expect(m.protection).toBe('colo');
    expect(p.secondary.lastDeliveredSeq).toBe(p.primary.lastDeliveredSeq);
  });

  it("the node's totals: proxies made later (a resynchronised secondary, a new comparator) add to the counts of those before", async () => {
    const totals = newOutputTotals();
    const traffic = async (p: Awaited<ReturnType<typeof coloPair>>) => {
      p.primary.input(1, 'open');
      for (let i = 0; i < 10; i++) p.primary.input(1, 'data', resp('INCR', 'n'));
      p.primary.input(1, 'data', resp('TIME'));
      await p.link.settle();
    };
    const first = await coloPair({ totals });
    await traffic(first);
    const after1 = structuredClone(totals);
    expect(after1.compare.match).toBeGreaterThanOrEqual(10);
    expect(after1.compare.miscompare).toBe(1);
    expect(after1.comparedBytesOut).toBeGreaterThan(0);
    expect(after1.mirroredBytesIn).toBeGreaterThan(0);
    await first.primary.close();
    first.secondary.close();

    const second = await coloPair({ totals });
    await traffic(second);
    expect(totals.compare.match).toBeGreaterThanOrEqual(after1.compare.match + 10);
    expect(totals.compare.miscompare).toBe(2);
    expect(totals.comparedBytesOut).toBe(2 * after1.comparedBytesOut);
    expect(totals.mirroredBytesIn).toBe(2 * after1.mirroredBytesIn);
    expect(totals.clientBytesIn).toBe(2 * after1.clientBytesIn);
    // What status shows is the node's, not the second proxy's alone.
    expect(second.primary.metrics().compare).toEqual(totals.compare);
    expect(second.secondary.metrics().bytesOut).toBe(totals.comparedBytesOut);
  });

  it('TIME makes the guests diverge: one miscompare holds the reply, the checkpoint releases it and realigns them', async () => {
    const p = await coloPair();
    p.primary.input(1, 'open');
    p.primary.input(1, 'data', resp('TIME'));
    await p.link.settle();
    expect(p.requests).toEqual(['miscompare']);
    expect(p.released.get(1) ?? '').toBe('');
    p.primary.input(1, 'data', resp('INCR', 'x')); // held too: the pair is diverged
    await p.link.settle();
    expect(p.released.get(1) ?? '').toBe('');
    await p.checkpoint();
    expect(p.released.get(1)).toBe(p.produced.get(1));
    expect(p.released.get(1)).toMatch(/:1\r\n$/);
    // Realigned: identical memory, and deterministic traffic matches again at once.
    for (let pfn = 0; pfn < p.pGuest.pageCount; pfn++) expect(Buffer.compare(p.pGuest.page(pfn), p.sGuest.page(pfn))).toBe(0);
    p.primary.input(1, 'data', resp('INCR', 'x'));
    await p.link.settle();
    expect(p.released.get(1)).toBe(p.produced.get(1));
    expect(p.requests).toEqual(['miscompare']);
  });

  it('input the secondary processed before a checkpoint undid it is delivered again (no gap, no duplicate)', async () => {
    const p = await coloPair({ timeDiverges: false });
    p.primary.input(1, 'open');
    await p.link.settle();
    // The primary suspends for checkpoint 2 first; the secondary, not told yet, processes more mirrored input.
    const n = p.primary.beforeSuspend(2);
    await p.pGuest.suspend();
    p.primary.input(1, 'data', resp('INCR', 'c'));
    await p.link.settle();
    expect(p.secondary.lastDeliveredSeq).toBe(n + 1); // it ran ahead of the barrier
    p.secondary.checkpointStarted(2);
    await p.sGuest.suspend();
    applyState(p.sGuest, captureState(p.pGuest));
    await p.secondary.checkpointApplied(2);
    expect(p.secondary.lastDeliveredSeq).toBe(n);
    p.primary.checkpointComplete(2);
    await p.pGuest.resume();
    p.primary.afterResume();
    await p.sGuest.resume();
    p.secondary.resumed();
    await p.link.settle();
    // Both guests processed INCR c exactly once since the checkpoint: replies equal and released.
    expect(p.released.get(1)).toBe(':1\r\n');
    expect(p.requests).toEqual([]);
    p.primary.input(1, 'data', resp('GET', 'c'));
    await p.link.settle();
    expect(p.released.get(1)).toBe(':1\r\n$1\r\n1\r\n');
  });

  it("with the primary's watermark the secondary keeps only input it may deliver again; without it, all since the checkpoint", async () => {
    for (const watermark of [true, false]) {
      const p = await coloPair({ timeDiverges: false, watermark });
      p.primary.input(1, 'open');
      for (let i = 0; i < 30; i++) {
        p.primary.input(1, 'data', resp('INCR', 'c'));
        await p.link.settle();
      }
      expect(p.secondary.lastDeliveredSeq).toBe(p.primary.lastDeliveredSeq);
      expect([watermark, p.secondary.metrics().retainedInputEvents]).toEqual([watermark, watermark ? 0 : 31]);
      expect(p.released.get(1)).toBe(p.produced.get(1));
      p.primary.close();
    }
  });

  it('a watermark past a barrier the secondary has not applied yet does not forget what that checkpoint undoes', async () => {
    const p = await coloPair({ timeDiverges: false });
    p.primary.input(1, 'open');
    await p.link.settle();
    // Checkpoint 2 on the primary, done and resumed before the secondary applies it (a slow secondary).
    const n = p.primary.beforeSuspend(2);
    await p.pGuest.suspend();
    const state = captureState(p.pGuest);
    p.primary.checkpointComplete(2);
    await p.pGuest.resume();
    p.primary.afterResume();
    // New input: the primary delivers it and says so (DELIVERED n + 1); the secondary, not told of checkpoint 2
    // yet, delivers it too.
    p.primary.input(1, 'data', resp('INCR', 'c'));
    await p.link.settle();
    expect(p.primary.lastDeliveredSeq).toBe(n + 1);
    expect(p.secondary.lastDeliveredSeq).toBe(n + 1);
    expect(p.secondary.metrics().retainedInputEvents).toBe(1); // kept: barrier 2 (N = n) is pending
    p.secondary.checkpointStarted(2);
    await p.sGuest.suspend();
    applyState(p.sGuest, state);
    await p.secondary.checkpointApplied(2);
    expect(p.secondary.lastDeliveredSeq).toBe(n);
    await p.sGuest.resume();
    p.secondary.resumed();
    await p.link.settle();
    // INCR c processed exactly once on both sides: the released reply is the primary's and they still match.
    expect(p.released.get(1)).toBe(':1\r\n');
    p.primary.input(1, 'data', resp('GET', 'c'));
    await p.link.settle();
    expect(p.released.get(1)).toBe(':1\r\n$1\r\n1\r\n');
    expect(p.requests).toEqual([]);
    expect(p.secondary.metrics().retainedInputEvents).toBe(0);
  });

  it('a reply whose twin never comes (secondary stalled) asks for a stale checkpoint from the proxy\'s own timer', async () => {
    const pGuest = new SimulatedGuest({ memoryBytes: MEMORY });
    const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
    const link = linkPair();
    const primary = new PrimaryProxy({ domain: pGuest, compareTimeoutMs: 40, staleCheckIntervalMs: 10 });
    await primary.start();
    primary.attachSecondary(link.a, 'colo');
    new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'colo' }); // never synchronised: produces nothing
    primary.checkpointComplete(1);
    const reason = new Promise<string>((r) => primary.onCheckpointNeeded(r));
    primary.input(1, 'open');
    primary.input(1, 'data', resp('PING'));
    expect(await reason).toBe('stale');
    expect(primary.metrics().compare.stale).toBe(1);
    expect(primary.metrics().heldBytes).toBe(7);
    // Losing the secondary does not release the reply: it waits for the arbiter's decision ...
    primary.secondaryLost();
    expect(primary.metrics().heldBytes).toBe(7);
    expect(primary.metrics().arbiterHold).toBe('decision');
    // ... and leaves once this node won the next epoch.
    const released: string[] = [];
    primary.onRelease((_c, b) => b && released.push(Buffer.from(b).toString()));
    primary.continueAlone();
    expect(released).toEqual(['+PONG\r\n']);
    expect(primary.metrics().heldBytes).toBe(0);
    await primary.close();
  });

  it('a client close ends the connection once its replies are out, compared in order', async () => {
    const p = await coloPair({ timeDiverges: false });
    const ends: number[] = [];
    p.primary.onRelease((conn, b) => b === null && ends.push(conn));
    p.primary.input(5, 'open');
    p.primary.input(5, 'data', resp('SET', 'a', '1'));
    p.primary.input(5, 'close');
    expect(ends).toEqual([]); // the reply is not matched yet
    await p.link.settle();
    expect(p.released.get(5)).toBe('+OK\r\n');
    expect(ends).toEqual([5]);
    // The guest closing a connection itself (QUIT) is output of both guests: compared, released once.
    p.primary.input(6, 'open');
    p.primary.input(6, 'data', resp('QUIT'));
    await p.link.settle();
    p.primary.input(6, 'close');
    await p.link.settle();
    expect(ends).toEqual([5, 6]);
    expect(p.requests).toEqual([]);
  });

  it('after any failover every reply a client saw is backed by the surviving guest (random sessions with TIME)', async () => {
    const op = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('cmd' as const), conn: fc.integer({ min: 1, max: 3 }), time: fc.boolean() }) },
      { weight: 2, arbitrary: fc.constant({ t: 'settle' as const }) },
      { weight: 1, arbitrary: fc.constant({ t: 'ckpt' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 30 }),
        fc.constantFrom('running', 'mid-checkpoint'),
        fc.integer({ min: 1, max: 7 }),
        async (ops, failoverWhen, chunk) => {
          const p = await coloPair({ split: () => chunk });
          for (const conn of [1, 2, 3]) p.primary.input(conn, 'open');
          const incrs = new Map<number, number>();
          for (const o of ops) {
            if (o.t === 'cmd') {
              p.primary.input(o.conn, 'data', o.time ? resp('TIME') : resp('INCR', `ledger${o.conn}`));
              if (!o.time) incrs.set(o.conn, (incrs.get(o.conn) ?? 0) + 1);
            } else if (o.t === 'settle') {
              await p.link.settle();
              if (p.requests.length > 0) {
                p.requests.length = 0;
                await p.checkpoint();
              }
            } else {
              await p.link.settle();
              p.requests.length = 0;
              await p.checkpoint();
            }
            // Only the primary's own bytes, in order, ever reach a client.
            for (const [conn, out] of p.released) expect((p.produced.get(conn) ?? '').startsWith(out)).toBe(true);
          }
          // The primary dies; what is still on the link is lost.
          if (failoverWhen === 'mid-checkpoint') {
            p.secondary.checkpointStarted(p.state.k + 1);
            await p.sGuest.suspend();
            p.primary.beforeSuspend(p.state.k + 1);
          }
          p.link.cut();
          await p.pGuest.suspend();
          await p.sGuest.resume(); // a half-received checkpoint is discarded: the guest runs on its own memory
          p.secondary.resumed();
          const promoted = await p.secondary.promote({});
          expect(promoted.protection).toBe('unprotected');
          for (const conn of [1, 2, 3]) {
            const seen = [...(p.released.get(conn) ?? '').matchAll(/(?:^|\n):(\d+)\r/g)].map((m) => Number(m[1]));
            const maxSeen = seen.length ? Math.max(...seen) : 0;
            let reply = '';
            const off = promoted.onRelease((_c, b) => b && (reply += text(b)));
            const fresh = 100 + conn;
            promoted.input(fresh, 'open');
            promoted.input(fresh, 'data', resp('GET', `ledger${conn}`));
            off();
            const value = reply === '$-1\r\n' ? 0 : Number(/^\$\d+\r\n(\d+)\r\n$/.exec(reply)?.[1]);
            expect(value).toBeGreaterThanOrEqual(maxSeen);
            expect(value).toBeLessThanOrEqual(incrs.get(conn) ?? 0);
          }
          await promoted.close();
          p.pGuest.destroy();
          p.sGuest.destroy();
        },
      ),
      { numRuns: 40 },
    );
  });
});
