import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputLog, ProxyError, ProxyErrorCode, type InputEvent } from '../../src/proxy/index.js';

describe('InputLog', () => {
  it('delivers every event once, in seq order, only while the gate is open (random gating)', () => {
    const op = fc.oneof(fc.constant('append' as const), fc.constant('open' as const), fc.constant('close' as const));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 100 }), (ops) => {
        const seen: number[] = [];
        let gateOpen = false;
        const log = new InputLog({
          deliver: (e) => {
            expect(gateOpen).toBe(true);
            seen.push(e.seq);
          },
        });
        for (const o of ops) {
          if (o === 'append') log.appendNew(1, 'data', new Uint8Array([1, 2]));
          else if (o === 'open') {
            gateOpen = true;
            log.open();
          } else {
            gateOpen = false;
            log.close();
          }
          expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
          expect(log.lastDelivered).toBe(seen.length);
          expect(log.pendingEvents).toBe(log.lastAppended - seen.length);
          expect(log.pendingBytes).toBe(2 * log.pendingEvents);
          if (gateOpen) expect(log.pendingEvents).toBe(0);
        }
        expect(log.retainedEvents).toBe(0);
      }),
    );
  });

  it('on a secondary, rewinds keep what the guest saw a gapless, duplicate-free run 1..lastDelivered', () => {
    fc.assert(fc.property(fc.array(secondaryOp(false), { maxLength: 60 }), (ops) => runSecondaryModel(ops)));
  });

  it("forgets delivered events up to the primary's watermark, never one not yet delivered, and refuses a rewind below it", () => {
    const got: number[] = [];
    const log = new InputLog({ deliver: (e) => got.push(e.seq), retainDelivered: true, firstSeq: null });
    for (let seq = 1; seq <= 6; seq++) log.append({ seq, conn: 1, kind: 'data', bytes: new Uint8Array(1) });
    log.open();
    log.close();
    for (let seq = 7; seq <= 8; seq++) log.append({ seq, conn: 1, kind: 'data', bytes: new Uint8Array(1) });
    expect(log.retainedEvents).toBe(6);
    log.forgetDelivered(4);
    expect(log.retainedEvents).toBe(2);
    // A watermark beyond what was delivered here forgets only the delivered: 7 and 8 still wait.
    log.forgetDelivered(100);
    expect(log.retainedEvents).toBe(0);
    expect(log.pendingEvents).toBe(2);
    expect(() => log.rewindTo(5)).toThrow(expect.objectContaining({ code: ProxyErrorCode.INVALID_STATE }));
    log.rewindTo(6);
    log.open();
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Events at or below what was forgotten are part of the guest already: appending one is a no-op.
    log.append({ seq: 3, conn: 1, kind: 'data', bytes: new Uint8Array(1) });
    expect(got).toHaveLength(8);
  });

  it('with a watermark at random steps that never passes a pending barrier, rewinds still replay exactly what a checkpoint undid', () => {
    fc.assert(fc.property(fc.array(secondaryOp(true), { maxLength: 60 }), (ops) => runSecondaryModel(ops)));
  });

  it('drops events at or below the barrier that arrive after it', () => {
    const got: number[] = [];
    const log = new InputLog({ deliver: (e) => got.push(e.seq), retainDelivered: true, firstSeq: null });
    log.rewindTo(3);
    for (let seq = 2; seq <= 5; seq++) log.append({ seq, conn: 1, kind: 'open' });
    log.open();
    expect(got).toEqual([4, 5]);
    expect(log.droppedEvents).toBe(2);
  });

  it('a secondary accepts whatever seq its primary is at first, then refuses gaps and duplicates', () => {
    const log = new InputLog({ deliver: () => {}, firstSeq: null });
    log.append({ seq: 41, conn: 1, kind: 'open' });
    const gap = () => log.append({ seq: 43, conn: 1, kind: 'close' });
    expect(gap).toThrow(ProxyError);
    try {
      gap();
    } catch (e) {
      expect((e as ProxyError).code).toBe(ProxyErrorCode.INPUT_OUT_OF_ORDER);
    }
    expect(() => log.append({ seq: 41, conn: 1, kind: 'open' })).toThrow(/expected/);
    log.append({ seq: 42, conn: 1, kind: 'close' });
    expect(log.lastAppended).toBe(42);
  });

  it('refuses to rewind while the gate is open, and to rewind backwards', () => {
    const log = new InputLog({ deliver: () => {}, retainDelivered: true, firstSeq: null });
    log.open();
    expect(() => log.rewindTo(0)).toThrow(expect.objectContaining({ code: ProxyErrorCode.INVALID_STATE }));
    log.close();
    log.rewindTo(5);
    expect(() => log.rewindTo(4)).toThrow(expect.objectContaining({ code: ProxyErrorCode.INVALID_STATE }));
  });

  it('a gate closed from inside a delivery (the guest output asked for a checkpoint) stops delivery at once', () => {
    const got: InputEvent[] = [];
    const log: InputLog = new InputLog({
      deliver: (e) => {
        got.push(e);
        if (e.seq === 2) log.close();
      },
    });
    for (let i = 0; i < 5; i++) log.appendNew(9, 'data', new Uint8Array([i]));
    log.open();
    expect(got.map((e) => e.seq)).toEqual([1, 2]);
    expect(log.lastDelivered).toBe(2);
    expect(log.pending().map((e) => e.seq)).toEqual([3, 4, 5]);
    log.open();
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('events appended from inside a delivery are delivered after it, in order', () => {
    const got: number[] = [];
    const log: InputLog = new InputLog({
      deliver: (e) => {
        got.push(e.seq);
        if (e.seq < 4) log.appendNew(1, 'data', new Uint8Array(0));
      },
    });
    log.open();
    log.appendNew(1, 'open');
    expect(got).toEqual([1, 2, 3, 4]);
  });
});

type SecondaryOp =
  | { t: 'recv'; n: number }
  | { t: 'resume' }
  | { t: 'checkpoint'; ahead: number }
  | { t: 'watermark'; back: number };

/** Steps of a secondary's input: events arriving, resumes, checkpoints and (optionally) the primary's watermarks. */
function secondaryOp(withWatermark: boolean): fc.Arbitrary<SecondaryOp> {
  const ops: fc.Arbitrary<SecondaryOp>[] = [
    fc.record({ t: fc.constant('recv' as const), n: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ t: fc.constant('resume' as const) }),
    fc.record({ t: fc.constant('checkpoint' as const), ahead: fc.integer({ min: 0, max: 6 }) }),
  ];
  if (withWatermark) ops.push(fc.record({ t: fc.constant('watermark' as const), back: fc.integer({ min: 0, max: 3 }) }));
  return fc.oneof(...ops);
}

/**
 * Drives a secondary's log through `ops` against a model of its guest: the sequence of seqs its state reflects.
 * A checkpoint to N replaces it with 1..N (the primary's state), undoing anything after N the secondary had
 * already processed. A watermark forgets what the primary has delivered, which is at least the last barrier and
 * at most what was mirrored; every later barrier is at least the watermark (as on the real link).
 */
function runSecondaryModel(ops: SecondaryOp[]): void {
  let guest: number[] = [];
  let received = 0;
  let barrier = 0;
  let primaryDelivered = 0;
  const log = new InputLog({ deliver: (e) => guest.push(e.seq), retainDelivered: true, firstSeq: null });
  for (const o of ops) {
    if (o.t === 'recv') {
      for (let i = 0; i < o.n; i++) log.append({ seq: ++received, conn: 1, kind: 'data', bytes: new Uint8Array(1) });
    } else if (o.t === 'resume') {
      log.open();
    } else if (o.t === 'watermark') {
      primaryDelivered = Math.max(primaryDelivered, barrier, received - o.back);
      log.forgetDelivered(primaryDelivered);
    } else {
      // Checkpoint: suspend, then the primary's state at N (N may be beyond what arrived yet).
      log.close();
      barrier = Math.max(barrier, primaryDelivered, Math.min(received + 2, barrier + o.ahead));
      log.rewindTo(barrier);
      guest = Array.from({ length: barrier }, (_, i) => i + 1);
    }
    expect(guest).toEqual(Array.from({ length: guest.length }, (_, i) => i + 1));
    expect(log.lastDelivered).toBe(guest.length);
  }
  log.open();
  expect(guest).toEqual(Array.from({ length: Math.max(received, barrier) }, (_, i) => i + 1));
}
