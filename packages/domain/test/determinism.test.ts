import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { recordedGuest, resp, differingPages } from './helpers.js';

/** Commands with deterministic effects (no TIME, no RANDOMKEY), over a small key space so they collide. */
const key = fc.constantFrom('a', 'b', 'c', 'counter', 'k:1', 'k:2', 'long-key-name-0123456789');
const value = fc.oneof(fc.string({ maxLength: 40 }), fc.integer().map(String), fc.string({ maxLength: 3000 }));
const deterministic = fc.oneof(
  fc.tuple(fc.constant('SET'), key, value),
  fc.tuple(fc.constant('SET'), key, value, fc.constantFrom('NX', 'XX')),
  fc.tuple(fc.constant('GET'), key),
  fc.tuple(fc.constant('DEL'), key, key),
  fc.tuple(fc.constant('INCR'), key),
  fc.tuple(fc.constant('INCRBY'), key, fc.integer({ min: -1000, max: 1000 }).map(String)),
  fc.tuple(fc.constant('APPEND'), key, value),
  fc.tuple(fc.constant('MSET'), key, value, key, value),
  fc.tuple(fc.constant('MGET'), key, key, key),
  fc.tuple(fc.constant('EXISTS'), key),
  fc.tuple(fc.constant('STRLEN'), key),
  fc.tuple(fc.constant('DBSIZE')),
  fc.tuple(fc.constant('FLUSHALL')),
);
/** A command and the connection it arrives on. */
const step = fc.tuple(fc.integer({ min: 1, max: 3 }), deterministic);

function run(steps: readonly (readonly [number, readonly string[]])[], opts: Parameters<typeof recordedGuest>[0] = {}) {
  const h = recordedGuest({ memoryBytes: 512 * 1024, ...opts });
  const replies = steps.map(([conn, cmd]) => h.send(conn, resp(...cmd)));
  return { ...h, replies };
}

describe('determinism', () => {
  it('two guests fed the same commands have byte-identical memory and identical replies', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
        const a = run(steps, { random: () => 0.1, clock: () => 1 });
        const b = run(steps, { random: () => 0.9, clock: () => 2e12 });
        expect(b.replies).toEqual(a.replies);
        expect(b.guest.memoryDigest()).toBe(a.guest.memoryDigest());
        a.guest.destroy();
        b.guest.destroy();
      }),
      { numRuns: 100 },
    );
  });

  it('with TIME, two guests diverge only in TIME replies and the superblock page TIME writes', () => {
    const withTime = fc.oneof({ weight: 4, arbitrary: step }, { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.constant(['TIME'] as string[])) });
    fc.assert(
      fc.property(fc.array(withTime, { minLength: 1, maxLength: 60 }), (steps) => {
        const a = run(steps, { clock: () => 1_000_000_000_000 });
        const b = run(steps, { clock: () => 1_500_000_000_000.5 });
        steps.forEach(([, cmd], i) => {
          if (cmd[0] === 'TIME') expect(b.replies[i]).not.toBe(a.replies[i]);
          else expect(b.replies[i]).toBe(a.replies[i]);
        });
        // FLUSHALL re-formats the superblock, clearing the clock TIME wrote there.
        const lastFlush = steps.map(([, c]) => c[0]).lastIndexOf('FLUSHALL');
        const timeAfterFlush = steps.some(([, c], i) => c[0] === 'TIME' && i > lastFlush);
        expect(differingPages(a.guest, b.guest)).toEqual(timeAfterFlush ? [0] : []);
        a.guest.destroy();
        b.guest.destroy();
      }),
      { numRuns: 60 },
    );
  });

  it('RANDOMKEY reads the node-local random source and writes no page', () => {
    const a = recordedGuest({ random: () => 0 });
    const b = recordedGuest({ random: () => 0.5 });
    for (const h of [a, b]) for (let i = 0; i < 50; i++) h.send(1, resp('SET', `key${i}`, 'v'));
    const ra = a.send(1, resp('RANDOMKEY'));
    const rb = b.send(1, resp('RANDOMKEY'));
    expect(ra).toMatch(/^\$\d+\r\nkey\d+\r\n$/);
    expect(rb).toMatch(/^\$\d+\r\nkey\d+\r\n$/);
    expect(ra).not.toBe(rb);
    expect(a.guest.memoryDigest()).toBe(b.guest.memoryDigest());
    a.guest.destroy();
    b.guest.destroy();
  });
});
