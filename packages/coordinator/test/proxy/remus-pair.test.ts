import fc from 'fast-check';
import { SimulatedGuest } from '@colo/domain';
import { describe, expect, it } from 'vitest';
import { PrimaryProxy, SecondaryProxy } from '../../src/proxy/index.js';
import { applyState, captureState, linkPair, resp, type GuestState } from './pair.js';

const MEMORY = 256 * 1024;
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/** A Remus pair: the secondary's guest never runs; checkpoints are captured, shipped, applied, acknowledged. */
async function remusPair() {
  const pGuest = new SimulatedGuest({ memoryBytes: MEMORY });
  const sGuest = new SimulatedGuest({ memoryBytes: MEMORY, startSuspended: true });
  const link = linkPair();
  const primary = new PrimaryProxy({ domain: pGuest });
  await primary.start();
  primary.attachSecondary(link.a, 'remus');
  const secondary = new SecondaryProxy({ domain: sGuest, link: link.b, mode: 'remus' });
  const released = new Map<number, string>();
  primary.onRelease((conn, b) => b && released.set(conn, (released.get(conn) ?? '') + text(b)));
  let k = 0;
  /** Primary side of checkpoint k: suspend, capture, resume (Remus does not wait for the secondary). */
  async function start(): Promise<{ k: number; state: GuestState }> {
    k++;
    primary.beforeSuspend(k);
    await pGuest.suspend();
    const state = captureState(pGuest);
    await pGuest.resume();
    primary.afterResume();
    return { k, state };
  }
  /** Secondary side: apply the complete checkpoint, then the acknowledgement reaches the primary. */
  async function land(c: { k: number; state: GuestState }) {
    applyState(sGuest, c.state);
    await link.settle();
    await secondary.checkpointApplied(c.k);
    primary.ack(c.k);
  }
  return { pGuest, sGuest, primary, secondary, link, released, start, land };
}

describe('Remus primary and secondary proxies', { timeout: 30_000 }, () => {
  it('releases a reply only once the checkpoint covering it is acknowledged', async () => {
    const p = await remusPair();
    p.primary.input(1, 'open');
    p.primary.input(1, 'data', resp('SET', 'a', '1'));
    expect(p.released.get(1)).toBeUndefined();
    expect(p.primary.metrics().heldBytes).toBe(5);
    const c1 = await p.start();
    p.primary.input(1, 'data', resp('INCR', 'n')); // produced after checkpoint 1 started: covered by 2
    await p.land(c1);
    expect(p.released.get(1)).toBe('+OK\r\n');
    const c2 = await p.start();
    await p.land(c2);
    expect(p.released.get(1)).toBe('+OK\r\n:1\r\n');
    expect(p.primary.metrics().heldBytes).toBe(0);
  });

  it('the secondary guest gets no input; once the secondary is lost, held output waits for the arbiter, then leaves', async () => {
    const p = await remusPair();
    p.primary.input(1, 'open');
    p.primary.input(1, 'data', resp('PING'));
    await p.link.settle();
    expect(p.secondary.lastDeliveredSeq).toBe(0);
    p.primary.secondaryLost();
    // Deciding: the unacknowledged reply stays held and new input does not reach the guest.
    expect(p.released.get(1)).toBeUndefined();
    const delivered = p.primary.lastDeliveredSeq;
    p.primary.input(1, 'data', resp('PING'));
    expect(p.primary.lastDeliveredSeq).toBe(delivered);
    expect(p.released.get(1)).toBeUndefined();
    // Won the epoch: held output leaves in order, the waiting input is served, and later input flows.
    p.primary.continueAlone();
    expect(p.released.get(1)).toBe('+PONG\r\n+PONG\r\n');
    p.primary.input(1, 'data', resp('PING'));
    expect(p.released.get(1)).toBe('+PONG\r\n+PONG\r\n+PONG\r\n');
    expect(p.primary.protection).toBe('unprotected');
  });

  it('after failover every acknowledged reply is backed by the restored guest, and old connections are closed', async () => {
    const op = fc.oneof(
      { weight: 5, arbitrary: fc.record({ t: fc.constant('incr' as const), conn: fc.integer({ min: 1, max: 3 }) }) },
      { weight: 2, arbitrary: fc.constant({ t: 'start' as const }) },
      { weight: 2, arbitrary: fc.constant({ t: 'land' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 30 }), async (ops) => {
        const p = await remusPair();
        for (const conn of [1, 2, 3]) p.primary.input(conn, 'open');
        const pending: { k: number; state: GuestState }[] = [];
        for (const o of ops) {
          if (o.t === 'incr') p.primary.input(o.conn, 'data', resp('INCR', `ledger${o.conn}`));
          else if (o.t === 'start') pending.push(await p.start());
          else if (pending.length > 0) await p.land(pending.shift()!);
        }
        await p.link.settle();
        p.link.cut();
        await p.pGuest.suspend();
        await p.sGuest.resume();
        const promoted = await p.secondary.promote();
        const guest = p.sGuest as SimulatedGuest;
        expect(guest.openConnections).toEqual([]); // the old clients' connections are gone
        for (const conn of [1, 2, 3]) {
          const seen = [...(p.released.get(conn) ?? '').matchAll(/(?:^|\n):(\d+)\r/g)].map((m) => Number(m[1]));
          let reply = '';
          const off = promoted.onRelease((_c, b) => b && (reply += text(b)));
          const fresh = 10 + conn;
          promoted.input(fresh, 'open');
          promoted.input(fresh, 'data', resp('GET', `ledger${conn}`));
          off();
          const value = reply.includes('$-1') ? 0 : Number(/\$\d+\r\n(\d+)\r\n/.exec(reply)?.[1]);
          expect(value).toBeGreaterThanOrEqual(seen.length ? Math.max(...seen) : 0);
        }
        await promoted.close();
        p.pGuest.destroy();
        p.sGuest.destroy();
      }),
      { numRuns: 30 },
    );
  });
});
