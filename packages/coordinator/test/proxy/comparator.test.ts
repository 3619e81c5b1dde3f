import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OutputComparator, type OutputBytes, type ProxyCheckpointReason } from '../../src/proxy/index.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A comparator whose releases and checkpoint requests are recorded, with a hand-driven clock. */
function harness(opts: { compareTimeoutMs?: number; maxHeldPerConnection?: number; maxHeldTotal?: number; generation?: number } = {}) {
  const released = new Map<number, string>();
  const closed = new Set<number>();
  const releasedAfterClose: number[] = [];
  const requests: ProxyCheckpointReason[] = [];
  const clock = { t: 0 };
  const c = new OutputComparator({
    ...opts,
    now: () => clock.t,
    release: (conn: number, bytes: OutputBytes) => {
      if (closed.has(conn)) releasedAfterClose.push(conn);
      if (bytes === null) closed.add(conn);
      else released.set(conn, (released.get(conn) ?? '') + dec(bytes));
    },
    checkpointNeeded: (r) => requests.push(r),
  });
  return { c, released, closed, requests, clock, releasedAfterClose, text: (conn: number) => released.get(conn) ?? '' };
}

/** Splits a string into chunks at the given cut points. */
function chunks(s: string, cuts: number[]): string[] {
  const points = [...new Set(cuts.map((x) => x % (s.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let at = 0;
  for (const p of points) {
    if (p > at) out.push(s.slice(at, p));
    at = Math.max(at, p);
  }
  if (at < s.length) out.push(s.slice(at));
  return out;
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Random streams per connection, each cut into chunks differently on each side, pushes interleaved. */
const sessions = fc.array(
  fc.record({
    conn: fc.integer({ min: 1, max: 4 }),
    text: fc.string({ unit: fc.constantFrom('a', 'b', '\r', '\n', '+', 'O', 'K'), minLength: 1, maxLength: 40 }),
    pCuts: fc.array(fc.nat(), { maxLength: 5 }),
    sCuts: fc.array(fc.nat(), { maxLength: 5 }),
  }),
  { minLength: 1, maxLength: 8 },
);

describe('OutputComparator (COLO)', () => {
  it('one reply at a time per connection: a whole equal twin releases it, an equal-length different one does not', () => {
    const h = harness();
    for (let i = 0; i < 3; i++) {
      h.c.pushPrimary(1, enc(`:${i}\r\n`));
      expect(h.text(1)).toBe(Array.from({ length: i }, (_, j) => `:${j}\r\n`).join(''));
      h.c.pushSecondary(0, 1, enc(`:${i}\r\n`));
      expect(h.text(1)).toBe(Array.from({ length: i + 1 }, (_, j) => `:${j}\r\n`).join(''));
    }
    expect(h.c.heldBytes).toBe(0);
    expect(h.c.results.match).toBe(3);
    h.c.pushPrimary(2, enc('+1234'));
    h.c.pushSecondary(0, 2, enc('+1243'));
    expect(h.text(2)).toBe('');
    expect(h.c.state).toBe('diverged');
    expect(h.requests).toEqual(['miscompare']);
    expect(h.c.heldBytes).toBe(5);
  });

  it('releases identical output at once and in order, however each side chunks it', () => {
    fc.assert(
      fc.property(sessions, fc.array(fc.boolean(), { minLength: 200, maxLength: 200 }), (ss, coin) => {
        const h = harness();
        const expected = new Map<number, string>();
        const pQueue: { conn: number; s: string }[] = [];
        const sQueue: { conn: number; s: string }[] = [];
        for (const s of ss) {
          expected.set(s.conn, (expected.get(s.conn) ?? '') + s.text);
          for (const p of chunks(s.text, s.pCuts)) pQueue.push({ conn: s.conn, s: p });
          for (const p of chunks(s.text, s.sCuts)) sQueue.push({ conn: s.conn, s: p });
        }
        const pushedP = new Map<number, string>();
        const pushedS = new Map<number, string>();
        let i = 0;
        while (pQueue.length + sQueue.length > 0) {
          const fromPrimary = sQueue.length === 0 || (pQueue.length > 0 && coin[i++ % coin.length]);
          const item = (fromPrimary ? pQueue : sQueue).shift()!;
          if (fromPrimary) {
            h.c.pushPrimary(item.conn, enc(item.s));
            pushedP.set(item.conn, (pushedP.get(item.conn) ?? '') + item.s);
          } else {
            h.c.pushSecondary(0, item.conn, enc(item.s));
            pushedS.set(item.conn, (pushedS.get(item.conn) ?? '') + item.s);
          }
          // "At once": after every push, exactly the common prefix of what both produced is out.
          for (const conn of expected.keys()) {
            const p = pushedP.get(conn) ?? '';
            expect(h.text(conn)).toBe(p.slice(0, commonPrefix(p, pushedS.get(conn) ?? '')));
          }
        }
        for (const [conn, text] of expected) expect(h.text(conn)).toBe(text);
        expect(h.requests).toEqual([]);
        expect(h.c.heldBytes).toBe(0);
        expect(h.c.secondaryPendingBytes).toBe(0);
        expect(h.c.results.miscompare).toBe(0);
      }),
    );
  });

  it('any difference asks for exactly one miscompare checkpoint and releases nothing past the match', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 30 }),
        fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.boolean(),
        (pText, sText, pCuts, sCuts, secondaryFirst) => {
          fc.pre(pText !== sText && !pText.startsWith(sText) && !sText.startsWith(pText));
          const h = harness();
          const ps = chunks(pText, pCuts);
          const ss = chunks(sText, sCuts);
          const order = secondaryFirst ? [...ss.map((s) => ['s', s]), ...ps.map((p) => ['p', p])] : [...ps.map((p) => ['p', p]), ...ss.map((s) => ['s', s])];
          for (const [side, text] of order) {
            if (side === 'p') h.c.pushPrimary(7, enc(text!));
            else h.c.pushSecondary(0, 7, enc(text!));
          }
          expect(h.requests).toEqual(['miscompare']);
          expect(h.c.results.miscompare).toBe(1);
          expect(h.c.state).toBe('diverged');
          const released = h.text(7);
          expect(released.length).toBeLessThanOrEqual(commonPrefix(pText, sText));
          expect(pText.startsWith(released)).toBe(true);
          // More output, from either side, neither releases anything nor asks again.
          h.c.pushPrimary(7, enc('more'));
          h.c.pushSecondary(0, 7, enc('more'));
          expect(h.text(7)).toBe(released);
          expect(h.requests).toEqual(['miscompare']);
          // The checkpoint backs the primary's output: all of it goes out, in order; the secondary's is dropped.
          h.c.onCheckpointComplete(1);
          expect(h.text(7)).toBe(pText + 'more');
          expect(h.c.heldBytes).toBe(0);
          expect(h.c.state).toBe('comparing');
        },
      ),
    );
  });

  it('never releases unmatched output while a secondary is attached (random operations, model check)', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('p' as const), conn: fc.integer({ min: 1, max: 3 }), s: fc.string({ unit: fc.constantFrom('x', 'y'), maxLength: 4 }) }),
      fc.record({ t: fc.constant('s' as const), conn: fc.integer({ min: 1, max: 3 }), s: fc.string({ unit: fc.constantFrom('x', 'y'), maxLength: 4 }), gen: fc.integer({ min: -1, max: 1 }) }),
      fc.record({ t: fc.constant('ckpt' as const) }),
      fc.record({ t: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 1500 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const h = harness({ compareTimeoutMs: 1000 });
        let gen = 0;
        // What each side produced in the current generation, and what the client saw in it.
        let p = new Map<number, string>();
        let s = new Map<number, string>();
        let sNext = new Map<number, string>(); // secondary output already of the next generation
        let base = new Map<number, number>();
        const allPrimary = new Map<number, string>();
        for (const o of ops) {
          if (o.t === 'p') {
            h.c.pushPrimary(o.conn, enc(o.s));
            p.set(o.conn, (p.get(o.conn) ?? '') + o.s);
            allPrimary.set(o.conn, (allPrimary.get(o.conn) ?? '') + o.s);
          } else if (o.t === 's') {
            h.c.pushSecondary(gen + o.gen, o.conn, enc(o.s));
            if (o.gen === 0) s.set(o.conn, (s.get(o.conn) ?? '') + o.s);
            if (o.gen === 1) sNext.set(o.conn, (sNext.get(o.conn) ?? '') + o.s);
          } else if (o.t === 'ckpt') {
            h.c.onCheckpointComplete(++gen);
            for (const [conn, text] of allPrimary) expect(h.text(conn)).toBe(text);
            p = new Map();
            s = sNext;
            sNext = new Map();
            base = new Map([...allPrimary].map(([c, t]) => [c, t.length]));
          } else {
            h.clock.t += o.dt;
            h.c.tick();
          }
          for (const [conn, text] of allPrimary) {
            const released = h.text(conn);
            expect(text.startsWith(released)).toBe(true); // only the primary's bytes, in order
            const thisGen = released.length - (base.get(conn) ?? 0);
            expect(thisGen).toBeLessThanOrEqual(commonPrefix(p.get(conn) ?? '', s.get(conn) ?? ''));
          }
          expect(h.requests.length).toBeLessThanOrEqual(gen + 1);
        }
      }),
    );
  });

  it('output that waits compareTimeoutMs for its twin asks for one stale checkpoint; a late twin still matches', () => {
    const h = harness({ compareTimeoutMs: 1000 });
    h.c.pushPrimary(1, enc('+PONG\r\n'));
    h.clock.t = 999;
    h.c.tick();
    expect(h.requests).toEqual([]);
    h.clock.t = 1000;
    h.c.tick();
    h.c.tick(5000);
    expect(h.requests).toEqual(['stale']);
    expect(h.c.results.stale).toBe(1);
    expect(h.text(1)).toBe('');
    h.c.pushSecondary(0, 1, enc('+PONG\r\n'));
    expect(h.text(1)).toBe('+PONG\r\n');
    expect(h.c.results.match).toBe(1);
  });

  it('secondary output without a primary twin goes stale too', () => {
    const h = harness({ compareTimeoutMs: 50 });
    h.c.pushSecondary(0, 3, enc('extra'));
    h.c.tick(49);
    expect(h.requests).toEqual([]);
    h.c.tick(50);
    expect(h.requests).toEqual(['stale']);
  });

  it('held output past the per-connection bound asks for output_bound once and keeps holding', () => {
    const h = harness({ maxHeldPerConnection: 10, maxHeldTotal: 1000 });
    h.c.pushPrimary(1, enc('0123456789'));
    expect(h.requests).toEqual([]);
    h.c.pushPrimary(1, enc('A'));
    h.c.pushPrimary(1, enc('BCDEFGH'));
    expect(h.requests).toEqual(['output_bound']);
    expect(h.text(1)).toBe('');
    expect(h.c.heldBytes).toBe(18);
    h.c.onCheckpointComplete(1);
    expect(h.text(1)).toBe('0123456789ABCDEFGH');
  });

  it('held output past the total bound asks for output_bound', () => {
    const h = harness({ maxHeldPerConnection: 100, maxHeldTotal: 20 });
    for (let conn = 1; conn <= 3; conn++) h.c.pushPrimary(conn, enc('12345678'));
    expect(h.requests).toEqual(['output_bound']);
    expect(h.c.counters.outputBound).toBe(1);
  });

  it('after a checkpoint, old-generation secondary output is ignored and comparison restarts aligned', () => {
    const h = harness();
    h.c.pushPrimary(1, enc('A'));
    h.c.pushSecondary(0, 1, enc('B'));
    expect(h.requests).toEqual(['miscompare']);
    h.c.onCheckpointComplete(1);
    expect(h.text(1)).toBe('A');
    h.c.pushSecondary(0, 1, enc('late'));
    expect(h.c.counters.oldGenerationIgnored).toBe(1);
    h.c.pushPrimary(1, enc('C'));
    expect(h.text(1)).toBe('A');
    h.c.pushSecondary(1, 1, enc('C'));
    expect(h.text(1)).toBe('AC');
    expect(h.requests).toEqual(['miscompare']);
  });

  it('secondary output of the next generation, arriving before the primary completes the checkpoint, is kept for it', () => {
    const h = harness();
    h.c.pushSecondary(1, 1, enc('+OK\r\n'));
    expect(h.c.secondaryPendingBytes).toBe(5);
    h.c.onCheckpointComplete(1);
    h.c.pushPrimary(1, enc('+OK\r\n'));
    expect(h.text(1)).toBe('+OK\r\n');
    expect(h.requests).toEqual([]);
  });

  it('guest-side closes are compared and released in order with the bytes', () => {
    const h = harness();
    h.c.pushPrimary(1, enc('+OK\r\n'));
    h.c.pushPrimary(1, null);
    expect(h.closed.has(1)).toBe(false);
    h.c.pushSecondary(0, 1, enc('+OK'));
    expect(h.text(1)).toBe('+OK');
    expect(h.closed.has(1)).toBe(false);
    h.c.pushSecondary(0, 1, enc('\r\n'));
    h.c.pushSecondary(0, 1, null);
    expect(h.text(1)).toBe('+OK\r\n');
    expect(h.closed.has(1)).toBe(true);
    expect(h.c.heldBytes).toBe(0);
  });

  it('a close on one side against bytes on the other is a miscompare', () => {
    const h = harness();
    h.c.pushPrimary(2, null);
    h.c.pushSecondary(0, 2, enc('-ERR\r\n'));
    expect(h.requests).toEqual(['miscompare']);
    expect(h.closed.has(2)).toBe(false);
    h.c.onCheckpointComplete(1);
    expect(h.closed.has(2)).toBe(true);
  });

  it('when the secondary is lost, held output is released and later output passes straight through', () => {
    const h = harness();
    h.c.pushPrimary(1, enc('held'));
    h.c.pushPrimary(2, null);
    h.c.onSecondaryLost();
    expect(h.text(1)).toBe('held');
    expect(h.closed.has(2)).toBe(true);
    h.c.pushPrimary(1, enc('!'));
    expect(h.text(1)).toBe('held!');
    h.c.pushSecondary(0, 1, enc('ignored'));
    expect(h.c.state).toBe('passthrough');
    expect(h.requests).toEqual([]);
  });
});
