import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RemusOutputBuffer, type OutputBytes, type ProxyCheckpointReason } from '../../src/proxy/index.js';

function harness(opts: { maxHeldPerConnection?: number; maxHeldTotal?: number } = {}) {
  const released: { conn: number; bytes: OutputBytes }[] = [];
  const requests: ProxyCheckpointReason[] = [];
  const b = new RemusOutputBuffer({ ...opts, release: (conn, bytes) => released.push({ conn, bytes }), checkpointNeeded: (r) => requests.push(r) });
  return { b, released, requests };
}

describe('RemusOutputBuffer', () => {
  it('releases exactly the output of acknowledged checkpoints, in push order (random schedules)', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('push' as const), conn: fc.integer({ min: 1, max: 3 }), close: fc.boolean() }),
      fc.record({ t: fc.constant('start' as const) }),
      fc.record({ t: fc.constant('ack' as const), back: fc.integer({ min: 0, max: 2 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const h = harness({ maxHeldPerConnection: 1e9, maxHeldTotal: 1e9 });
        const pushed: { id: number; epoch: number; close: boolean }[] = [];
        let started = 0;
        let acked = 0;
        let id = 0;
        for (const o of ops) {
          if (o.t === 'push') {
            const bytes = o.close ? null : new Uint8Array([id & 0xff, id >> 8]);
            pushed.push({ id, epoch: started + 1, close: o.close });
            expect(h.b.openEpoch).toBe(started + 1);
            h.b.push(o.conn, bytes);
            id++;
          } else if (o.t === 'start') {
            h.b.onCheckpointStarted(++started);
          } else {
            // Acks arrive in order and only for started checkpoints; sometimes an old one again.
            acked = Math.max(acked, Math.max(0, started - o.back));
            h.b.ack(Math.max(0, started - o.back));
          }
          const expected = pushed.filter((p) => p.epoch <= acked).length;
          expect(h.released.length).toBe(expected);
        }
        // Order: the released prefix is the pushed prefix.
        const got = h.released.map((r) => (r.bytes === null ? 'close' : r.bytes[0]! | (r.bytes[1]! << 8)));
        expect(got).toEqual(pushed.slice(0, h.released.length).map((p) => (p.close ? 'close' : p.id)));
        expect(h.requests).toEqual([]);
      }),
    );
  });

  it('output of the epoch still open when a checkpoint starts waits for the next acknowledgement', () => {
    const h = harness();
    h.b.push(1, new Uint8Array([1]));
    h.b.onCheckpointStarted(1);
    h.b.push(1, new Uint8Array([2]));
    h.b.ack(1);
    expect(h.released.map((r) => r.bytes![0])).toEqual([1]);
    h.b.onCheckpointStarted(2);
    h.b.ack(2);
    expect(h.released.map((r) => r.bytes![0])).toEqual([1, 2]);
    expect(h.b.heldBytes).toBe(0);
  });

  it('past its bound it asks for output_bound once per epoch and keeps holding', () => {
    const h = harness({ maxHeldPerConnection: 4, maxHeldTotal: 100 });
    h.b.push(1, new Uint8Array(4));
    expect(h.requests).toEqual([]);
    h.b.push(1, new Uint8Array(1));
    h.b.push(1, new Uint8Array(1));
    expect(h.requests).toEqual(['output_bound']);
    expect(h.released).toEqual([]);
    h.b.onCheckpointStarted(1);
    h.b.push(1, new Uint8Array(1));
    expect(h.requests).toEqual(['output_bound', 'output_bound']);
    h.b.ack(1);
    expect(h.released.length).toBe(3);
    expect(h.b.heldBytes).toBe(1);
  });

  it('when the secondary is lost, everything held is released and later output passes through', () => {
    const h = harness();
    h.b.push(1, new Uint8Array([1]));
    h.b.push(1, null);
    h.b.onSecondaryLost();
    expect(h.released.map((r) => r.bytes)).toEqual([new Uint8Array([1]), null]);
    h.b.push(2, new Uint8Array([9]));
    expect(h.released.length).toBe(3);
    expect(h.b.state).toBe('passthrough');
  });
});
