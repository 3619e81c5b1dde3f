import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { recordedGuest, resp } from './helpers.js';

/** Sends `input` on a fresh connection; returns the reply text and whether the guest closed the connection. */
function probe(input: string | Uint8Array, memoryBytes = 1024 * 1024) {
  const h = recordedGuest({ memoryBytes });
  const reply = h.send(1, input);
  const closed = h.closed.has(1);
  return { ...h, reply, closed };
}

describe('malformed RESP', () => {
  const cases: [string, string, RegExp][] = [
    ['a negative bulk length', '*1\r\n$-3\r\n', /invalid bulk length/],
    ['a bulk length over 512 MiB', '*2\r\n$3\r\nGET\r\n$536870913\r\n', /invalid bulk length/],
    ['a bulk length larger than guest memory', '*2\r\n$3\r\nGET\r\n$2000000\r\n', /invalid bulk length/],
    ['a non-numeric bulk length', '*1\r\n$abc\r\n', /invalid bulk length/],
    ['a multibulk count over 1M', '*2000000\r\n', /invalid multibulk length/],
    ['a non-numeric multibulk count', '*x\r\n', /invalid multibulk length/],
    ['an absurdly long length', '*1\r\n$99999999999999999999\r\n', /invalid bulk length/],
    ['a missing $', '*1\r\n+PING\r\n', /expected '\$', got '\+'/],
    ['bulk data without CRLF', '*1\r\n$4\r\nPINGxx', /not followed by CRLF/],
    ['an inline request over 64 KiB', 'A'.repeat(70_000), /too big inline request/],
  ];
  for (const [what, input, message] of cases) {
    it(`answers ${what} with a protocol error and closes the connection`, () => {
      const p = probe(input);
      expect(p.reply).toMatch(/^-ERR Protocol error: /);
      expect(p.reply).toMatch(message);
      expect(p.closed).toBe(true);
      expect(p.guest.openConnections).toEqual([]);
      p.guest.destroy();
    });
  }

  it('processes the commands before the bad one, then errors', () => {
    const p = probe(resp('SET', 'a', '1').toString() + resp('INCR', 'a').toString() + '*1\r\n$-2\r\n' + resp('SET', 'b', '1').toString());
    expect(p.reply).toBe('+OK\r\n:2\r\n-ERR Protocol error: invalid bulk length\r\n');
    expect(p.guest.readKey('b')).toBeUndefined();
    p.guest.destroy();
  });

  it('keeps a stalled half command pending without affecting other clients, and completes it later', () => {
    const h = recordedGuest();
    expect(h.send(1, '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhal')).toBe('');
    expect(h.send(2, resp('SET', 'k', 'other'))).toBe('+OK\r\n');
    expect(h.send(2, resp('GET', 'k'))).toBe('$5\r\nother\r\n');
    expect(h.send(1, 'f!\r\n')).toBe('+OK\r\n');
    expect(h.send(2, resp('GET', 'k'))).toBe('$5\r\nhalf!\r\n');
    h.guest.destroy();
  });

  it('bounds pending input: a declared command larger than the guest accepts is refused before it is buffered', () => {
    const h = recordedGuest({ memoryBytes: 256 * 1024 });
    // Each bulk is acceptable on its own, but together they exceed what the guest accepts for one command.
    expect(h.send(1, '*40\r\n$3\r\nSET\r\n')).toBe('');
    let out = '';
    for (let i = 0; i < 39 && out === ''; i++) out = h.send(1, `$100000\r\n${'x'.repeat(100_000)}\r\n`);
    expect(out).toMatch(/^-ERR Protocol error: command larger than the guest accepts/);
    expect(h.closed.has(1)).toBe(true);
    h.guest.destroy();
  });

  it('one bad client never affects another client’s data (any junk)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 }), (junk, more) => {
        const h = recordedGuest({ memoryBytes: 256 * 1024 });
        h.send(1, resp('SET', 'mine', 'precious'));
        h.send(2, junk);
        for (const m of more) if (!h.closed.has(2)) h.send(2, m);
        const view = h.send(1, resp('GET', 'mine'));
        // The junk may have been valid commands (e.g. inline "SET mine x"): only a command can change data.
        if (!Buffer.from(junk).includes('mine') && !more.some((m) => Buffer.from(m).includes('mine')) && !Buffer.from(junk).toString('latin1').toLowerCase().includes('flush')) {
          expect(view).toBe('$8\r\nprecious\r\n');
        }
        expect(h.closed.has(1)).toBe(false);
        h.guest.destroy();
      }),
      { numRuns: 300 },
    );
  });

  it('survives any byte sequence split at any point, replying or closing but never throwing', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(...['*', '$', '\r\n', '*2\r\n', '$3\r\n', 'GET', '-1', '9999999'].map((s) => Buffer.from(s)))), { maxLength: 30 }), (pieces) => {
        const h = recordedGuest({ memoryBytes: 128 * 1024 });
        h.guest.openConnection(1);
        for (const p of pieces) h.guest.deliverInput(1, p);
        expect(h.send(9, resp('PING'))).toBe('+PONG\r\n');
        h.guest.destroy();
      }),
      { numRuns: 300 },
    );
  });
});
