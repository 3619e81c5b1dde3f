import { afterEach, describe, expect, it } from 'vitest';
import { recordedGuest, resp } from './helpers.js';

let cleanup: (() => void)[] = [];
afterEach(() => {
  cleanup.forEach((f) => f());
  cleanup = [];
});
function guest(opts: Parameters<typeof recordedGuest>[0] = {}) {
  const h = recordedGuest(opts);
  cleanup.push(() => h.guest.destroy());
  return h;
}

describe('the RESP key-value service', () => {
  it('answers the string commands like Redis', () => {
    const { send } = guest();
    expect(send(1, resp('PING'))).toBe('+PONG\r\n');
    expect(send(1, resp('PING', 'hi'))).toBe('$2\r\nhi\r\n');
    expect(send(1, resp('ECHO', 'x y'))).toBe('$3\r\nx y\r\n');
    expect(send(1, resp('GET', 'k'))).toBe('$-1\r\n');
    expect(send(1, resp('SET', 'k', 'v1'))).toBe('+OK\r\n');
    expect(send(1, resp('GET', 'k'))).toBe('$2\r\nv1\r\n');
    expect(send(1, resp('SET', 'k', 'v2', 'NX'))).toBe('$-1\r\n');
    expect(send(1, resp('SET', 'k', 'v3', 'XX'))).toBe('+OK\r\n');
    expect(send(1, resp('SET', 'other', 'v', 'XX'))).toBe('$-1\r\n');
    expect(send(1, resp('SET', 'k', 'v4', 'GET'))).toBe('$2\r\nv3\r\n');
    expect(send(1, resp('SET', 'k', 'v', 'EX', '10'))).toMatch(/^-ERR SET expiry options/);
    expect(send(1, resp('SET', 'k', 'v', 'NX', 'XX'))).toBe('-ERR syntax error\r\n');
    expect(send(1, resp('STRLEN', 'k'))).toBe(':2\r\n');
    expect(send(1, resp('APPEND', 'k', '-tail'))).toBe(':7\r\n');
    expect(send(1, resp('GET', 'k'))).toBe('$7\r\nv4-tail\r\n');
    expect(send(1, resp('APPEND', 'new', 'abc'))).toBe(':3\r\n');
    expect(send(1, resp('EXISTS', 'k', 'new', 'nope', 'k'))).toBe(':3\r\n');
    expect(send(1, resp('DEL', 'k', 'nope', 'new'))).toBe(':2\r\n');
    expect(send(1, resp('DBSIZE'))).toBe(':0\r\n');
  });

  it('does integer arithmetic with Redis errors for non-integers and overflow', () => {
    const { send } = guest();
    expect(send(1, resp('INCR', 'n'))).toBe(':1\r\n');
    expect(send(1, resp('INCRBY', 'n', '41'))).toBe(':42\r\n');
    expect(send(1, resp('DECR', 'n'))).toBe(':41\r\n');
    expect(send(1, resp('DECRBY', 'n', '50'))).toBe(':-9\r\n');
    expect(send(1, resp('GET', 'n'))).toBe('$2\r\n-9\r\n');
    expect(send(1, resp('SET', 'big', '9223372036854775806'))).toBe('+OK\r\n');
    expect(send(1, resp('INCR', 'big'))).toBe(':9223372036854775807\r\n');
    expect(send(1, resp('INCR', 'big'))).toBe('-ERR increment or decrement would overflow\r\n');
    expect(send(1, resp('SET', 's', 'abc'))).toBe('+OK\r\n');
    expect(send(1, resp('INCR', 's'))).toBe('-ERR value is not an integer or out of range\r\n');
    expect(send(1, resp('INCRBY', 'n', '1.5'))).toBe('-ERR value is not an integer or out of range\r\n');
    expect(send(1, resp('SET', 'z', '007'))).toBe('+OK\r\n');
    expect(send(1, resp('INCR', 'z'))).toBe('-ERR value is not an integer or out of range\r\n');
    expect(send(1, resp('DECRBY', 'm', '-9223372036854775808'))).toBe('-ERR decrement would overflow\r\n');
  });

  it('handles MSET/MGET, FLUSHALL, SELECT and the commands clients send on connect', () => {
    const { send } = guest();
    expect(send(1, resp('MSET', 'a', '1', 'b', '2'))).toBe('+OK\r\n');
    expect(send(1, resp('MSET', 'a', '1', 'b'))).toBe("-ERR wrong number of arguments for 'mset' command\r\n");
    expect(send(1, resp('MGET', 'a', 'x', 'b'))).toBe('*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n');
    expect(send(1, resp('DBSIZE'))).toBe(':2\r\n');
    expect(send(1, resp('FLUSHALL'))).toBe('+OK\r\n');
    expect(send(1, resp('DBSIZE'))).toBe(':0\r\n');
    expect(send(1, resp('GET', 'a'))).toBe('$-1\r\n');
    expect(send(1, resp('SELECT', '0'))).toBe('+OK\r\n');
    expect(send(1, resp('SELECT', '1'))).toBe('-ERR DB index is out of range\r\n');
    expect(send(1, resp('HELLO', '3'))).toMatch(/^-NOPROTO /);
    expect(send(1, resp('CLIENT', 'SETNAME', 'x'))).toBe('+OK\r\n');
    expect(send(1, resp('CLIENT', 'SETINFO', 'lib-name', 'x'))).toBe('+OK\r\n');
    expect(send(1, resp('COMMAND', 'DOCS'))).toBe('*0\r\n');
    expect(send(1, resp('CONFIG', 'GET', 'save'))).toBe('*2\r\n$4\r\nsave\r\n$0\r\n\r\n');
    expect(send(1, resp('CONFIG', 'GET', 'appendonly'))).toBe('*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n');
    expect(send(1, resp('INFO', 'server'))).toMatch(/^\$\d+\r\n# Server\r\nredis_version:/);
    expect(send(1, resp('NOSUCH', 'x'))).toBe("-ERR unknown command 'NOSUCH'\r\n");
    expect(send(1, resp('GET'))).toBe("-ERR wrong number of arguments for 'get' command\r\n");
    // Names of Object.prototype members are just unknown commands (and still get a reply).
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect(send(1, resp(name))).toBe(`-ERR unknown command '${name}'\r\n`);
    }
    expect(send(1, 'gEt a\r\n')).toBe('$-1\r\n');
  });

  it('reads TIME from the injected clock and RANDOMKEY from the injected random source', () => {
    const { send } = guest({ clock: () => 1_700_000_000_123.456, random: () => 0.5 });
    expect(send(1, resp('TIME'))).toBe('*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n');
    expect(send(1, resp('RANDOMKEY'))).toBe('$-1\r\n');
    send(1, resp('SET', 'only', '1'));
    expect(send(1, resp('RANDOMKEY'))).toBe('$4\r\nonly\r\n');
  });

  it('accepts inline commands and processes a pipelined chunk in order as one reply chunk', () => {
    const h = guest();
    h.guest.openConnection(7);
    const chunks: number[] = [];
    h.guest.onOutput((id) => id === 7 && chunks.push(1));
    const out = h.send(7, 'SET a 1\r\nINCR a\nGET a\r\n' + resp('INCRBY', 'a', '10').toString() + 'PING\r\n\r\n');
    expect(out).toBe('+OK\r\n:2\r\n$1\r\n2\r\n:12\r\n+PONG\r\n');
    expect(chunks).toHaveLength(1);
  });

  it('stores binary keys and values unchanged', () => {
    const { send } = guest();
    const key = Buffer.from([0, 1, 2, 255, 13, 10]);
    const value = Buffer.alloc(10_000, 7);
    value[0] = 0;
    value[9999] = 255;
    expect(send(1, resp('SET', key, value))).toBe('+OK\r\n');
    expect(send(1, resp('GET', key))).toBe(`$10000\r\n${value.toString('latin1')}\r\n`);
  });

  it('replies -OOM when guest memory is full, deterministically, and keeps serving', () => {
    const { send, guest: g } = guest({ memoryBytes: 64 * 1024 });
    let i = 0;
    let reply = '';
    for (; i < 10_000; i++) {
      reply = send(1, resp('SET', `key${i}`, 'x'.repeat(100)));
      if (reply !== '+OK\r\n') break;
    }
    expect(reply).toBe('-OOM guest memory full\r\n');
    expect(g.keyCount).toBe(i);
    expect(send(1, resp('GET', 'key0'))).toBe(`$100\r\n${'x'.repeat(100)}\r\n`);
    expect(send(1, resp('DEL', 'key0'))).toBe(':1\r\n');
    // The freed block is reused by an entry of the same size class.
    expect(send(1, resp('SET', 'again', 'y'.repeat(100)))).toBe('+OK\r\n');
    expect(send(1, resp('APPEND', 'again', 'z'.repeat(20_000)))).toBe('-OOM guest memory full\r\n');
    expect(send(1, resp('STRLEN', 'again'))).toBe(':100\r\n');
  });

  it('QUIT replies OK and closes the connection; later input on it is dropped', () => {
    const h = guest();
    expect(h.send(3, resp('QUIT').toString() + resp('SET', 'after', '1').toString())).toBe('+OK\r\n');
    expect(h.closed.has(3)).toBe(true);
    expect(h.send(4, resp('EXISTS', 'after'))).toBe(':0\r\n');
  });
});
