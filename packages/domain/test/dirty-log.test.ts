import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestMemory } from '../src/guest-memory.js';
import { DirtyBitmap } from '../src/dirty-bitmap.js';
import { recordedGuest, resp, snapshot, changedSince } from './helpers.js';

const PAGES = 40;
const SIZE = PAGES * 4096;

/** One guest write, with the pages a model says it touches. */
const write = fc.oneof(
  fc.record({ op: fc.constant('u32' as const), offset: fc.nat(SIZE / 4 - 1).map((w) => w * 4) }),
  fc.record({ op: fc.constant('bytes' as const), offset: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 9000 }) }),
  fc.record({ op: fc.constant('zero' as const), offset: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 20000 }) }),
  fc.record({ op: fc.constant('move' as const), offset: fc.nat(SIZE - 1), from: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 9000 }) }),
  fc.record({ op: fc.constant('read-and-clear' as const) }),
);

describe('the dirty log', () => {
  it('holds exactly the pages written since the last read-and-clear, ascending', () => {
    fc.assert(
      fc.property(fc.array(write, { maxLength: 60 }), (ops) => {
        const mem = new GuestMemory(PAGES);
        mem.logging = true;
        const model = new Set<number>();
        const touch = (offset: number, length: number) => {
          for (let p = offset >>> 12; p <= (offset + length - 1) >>> 12; p++) model.add(p);
        };
        for (const o of ops) {
          if (o.op === 'read-and-clear') {
            expect([...mem.dirty.collect(true)]).toEqual([...model].sort((a, b) => a - b));
            model.clear();
            continue;
          }
          if (o.op === 'u32') {
            mem.setU32(o.offset, 1);
            touch(o.offset, 4);
          } else if (o.op === 'bytes') {
            const n = Math.min(o.length, SIZE - o.offset);
            mem.write(o.offset, new Uint8Array(n).fill(9));
            touch(o.offset, n);
          } else if (o.op === 'zero') {
            const n = Math.min(o.length, SIZE - o.offset);
            mem.fillZero(o.offset, n);
            touch(o.offset, n);
          } else {
            const n = Math.min(o.length, SIZE - o.offset, SIZE - o.from);
            mem.copyWithin(o.offset, o.from, o.from + n);
            touch(o.offset, n);
          }
        }
        expect([...mem.dirty.collect(false)]).toEqual([...model].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });

  it('after enabling, reports every page once; disabled, reports nothing', () => {
    const { guest, send } = recordedGuest({ memoryBytes: 100 * 4096 });
    send(1, resp('SET', 'a', 'b'));
    expect(guest.readAndClearDirty()).toHaveLength(0);
    guest.enableLogDirty();
    const all = guest.readAndClearDirty();
    expect(all).toHaveLength(100);
    expect([...all]).toEqual([...Array(100).keys()]);
    expect(guest.readAndClearDirty()).toHaveLength(0);
    send(1, resp('SET', 'a', 'c'));
    const peeked = guest.peekDirty();
    expect(peeked.length).toBeGreaterThan(0);
    expect(guest.peekDirty()).toEqual(peeked);
    guest.disableLogDirty();
    send(1, resp('SET', 'x', 'y'));
    expect(guest.peekDirty()).toHaveLength(0);
    guest.destroy();
  });

  it('covers every page the service changes, for any command sequence', () => {
    const command = fc.oneof(
      fc.tuple(fc.constant('SET'), fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 6000 })),
      fc.tuple(fc.constant('APPEND'), fc.string({ minLength: 1, maxLength: 8 }), fc.string({ maxLength: 3000 })),
      fc.tuple(fc.constant('DEL'), fc.string({ minLength: 1, maxLength: 8 })),
      fc.tuple(fc.constant('INCR'), fc.constantFrom('n', 'm')),
      fc.tuple(fc.constant('FLUSHALL')),
    );
    fc.assert(
      fc.property(fc.array(fc.array(command, { maxLength: 8 }), { maxLength: 6 }), (rounds) => {
        const { guest, send } = recordedGuest({ memoryBytes: 256 * 1024 });
        guest.enableLogDirty();
        guest.readAndClearDirty();
        for (const round of rounds) {
          const before = snapshot(guest);
          for (const c of round) send(1, resp(...c));
          const dirty = new Set(guest.readAndClearDirty());
          for (const p of changedSince(guest, before)) expect(dirty.has(p)).toBe(true);
        }
        guest.destroy();
      }),
      { numRuns: 60 },
    );
  });

  it('reads and clears a 256K-page bitmap (a 1 GiB guest) in one pass', () => {
    const bitmap = new DirtyBitmap(256 * 1024);
    for (let p = 0; p < 256 * 1024; p += 7) bitmap.mark(p);
    const dirty = bitmap.collect(true);
    const empty = bitmap.collect(true);
    expect(dirty.length).toBe(Math.ceil((256 * 1024) / 7));
    expect(dirty[1]).toBe(7);
    expect(empty).toHaveLength(0);
  });
});
