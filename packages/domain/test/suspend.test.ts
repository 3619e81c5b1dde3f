import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { recordedGuest, resp } from './helpers.js';

const command = fc.oneof(
  fc.tuple(fc.constant('SET'), fc.constantFrom('a', 'b', 'c'), fc.string({ maxLength: 100 })),
  fc.tuple(fc.constant('INCR'), fc.constantFrom('n', 'm')),
  fc.tuple(fc.constant('APPEND'), fc.constantFrom('a', 'b'), fc.string({ maxLength: 50 })),
  fc.tuple(fc.constant('GET'), fc.constantFrom('a', 'b', 'c', 'n')),
  fc.tuple(fc.constant('DEL'), fc.constantFrom('a', 'b', 'c')),
);

describe('suspend and resume', () => {
  it('a suspended guest changes no page and sends nothing; on resume it processes the queue in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), command), { maxLength: 20 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), command, fc.nat(5)), { minLength: 1, maxLength: 30 }),
        async (before, during) => {
          const reference = recordedGuest();
          const subject = recordedGuest();
          const log: [number, string][] = [];
          subject.guest.onOutput((id, b) => log.push([id, b === null ? 'CLOSE' : Buffer.from(b).toString('latin1')]));
          for (const [conn, cmd] of before) {
            reference.send(conn, resp(...cmd));
            subject.send(conn, resp(...cmd));
          }
          for (const conn of [1, 2, 3]) {
            if (!reference.guest.openConnections.includes(conn)) reference.guest.openConnection(conn);
            if (!subject.guest.openConnections.includes(conn)) subject.guest.openConnection(conn);
          }
          subject.guest.enableLogDirty();
          subject.guest.readAndClearDirty();
          await subject.guest.suspend();
          log.length = 0;
          const digest = subject.guest.memoryDigest();
          const expected: [number, string][] = [];
          for (const [conn, cmd, split] of during) {
            const bytes = resp(...cmd);
            // Deliver in two pieces to queue partial commands too.
            const cut = Math.min(split, bytes.length);
            subject.guest.deliverInput(conn, bytes.subarray(0, cut));
            if (cut < bytes.length) subject.guest.deliverInput(conn, bytes.subarray(cut));
            expected.push([conn, reference.send(conn, bytes)]);
          }
          expect(subject.guest.memoryDigest()).toBe(digest);
          expect(subject.guest.peekDirty()).toHaveLength(0);
          expect(log).toEqual([]);
          await subject.guest.resume();
          // Same replies, same order (empty reply chunks, for a command's first half, produce no output).
          const merged = expected.filter(([, s]) => s !== '');
          expect(log).toEqual(merged);
          expect(subject.guest.memoryDigest()).toBe(reference.guest.memoryDigest());
          reference.guest.destroy();
          subject.guest.destroy();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('stops draining its queue when a listener suspends it again', async () => {
    const h = recordedGuest();
    h.guest.openConnection(1);
    await h.guest.suspend();
    h.guest.deliverInput(1, resp('INCR', 'n'));
    h.guest.deliverInput(1, resp('INCR', 'n'));
    const stop = h.guest.onOutput(() => void h.guest.suspend());
    await h.guest.resume();
    expect(h.take(1)).toBe(':1\r\n');
    expect(h.guest.state).toBe('suspended');
    expect(h.guest.queuedEvents).toBe(1);
    stop();
    await h.guest.resume();
    expect(h.take(1)).toBe(':2\r\n');
    h.guest.destroy();
  });

  it('refuses hypervisor page writes to a running guest that has run', () => {
    const h = recordedGuest();
    h.send(1, resp('PING'));
    expect(() => h.guest.writePages([1], new Uint8Array(4096))).toThrow(expect.objectContaining({ code: 'DOMAIN_NOT_SUSPENDED' }));
    expect(() => h.guest.page(h.guest.pageCount)).toThrow(expect.objectContaining({ code: 'DOMAIN_BAD_PFN' }));
    h.guest.destroy();
    expect(() => h.guest.deliverInput(1, resp('PING'))).toThrow(expect.objectContaining({ code: 'DOMAIN_DESTROYED' }));
  });
});
