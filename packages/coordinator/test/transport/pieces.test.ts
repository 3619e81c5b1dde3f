/** The socket-free pieces of the transport, fed values directly. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { negotiateExtensions } from '../internals.js';
import { closeCodeFor, closeReason, errorFromPeerClose, LinkErrorCode } from '../../src/transport/errors.js';
import { Heartbeat } from '../../src/transport/heartbeat.js';
import { parseHello } from '../../src/transport/hello.js';
import { decodeMessage, encodeMessage } from '../../src/transport/messages.js';
import { proofMatches, pskProof } from '../../src/transport/psk.js';
import { hello } from './helpers.js';

describe('the PSK proof', () => {
  const key = randomBytes(32);
  const ns = randomBytes(32);
  const nc = randomBytes(32);
  it('depends on the key, the side, the channel and both nonces', () => {
    const base = pskProof(key, 'client', 'replication', ns, nc);
    expect(base).toHaveLength(32);
    expect(proofMatches(base, pskProof(key, 'client', 'replication', ns, nc))).toBe(true);
    for (const other of [
      pskProof(randomBytes(32), 'client', 'replication', ns, nc),
      pskProof(key, 'server', 'replication', ns, nc),
      pskProof(key, 'client', 'proxy', ns, nc),
      pskProof(key, 'client', 'replication', randomBytes(32), nc),
      pskProof(key, 'client', 'replication', ns, randomBytes(32)),
      // swapping the nonces is not the same proof
      pskProof(key, 'client', 'replication', nc, ns),
    ]) {
      expect(proofMatches(base, other)).toBe(false);
    }
  });
  it('a proof of the wrong length never matches (and does not throw)', () => {
    const base = pskProof(key, 'client', 'replication', ns, nc);
    expect(proofMatches(base, base.subarray(0, 31))).toBe(false);
    expect(proofMatches(base, Buffer.alloc(0))).toBe(false);
  });
});

describe('hello validation', () => {
  it('accepts a well-formed hello and copies it', () => {
    const h = hello();
    const parsed = parseHello(JSON.parse(JSON.stringify(h)));
    expect(parsed).toEqual(h);
  });
  it.each([
    ['a string', 'hello'],
    ['null', null],
    ['an unknown channel', { ...hello(), channel: 'video' }],
    ['an empty node id', { ...hello(), nodeId: '' }],
    ['a bad role', { ...hello(), role: 'arbiter' }],
    ['a bad mode', { ...hello(), mode: 'raid' }],
    ['a negative epoch', { ...hello(), epoch: -1 }],
    ['a fractional epoch', { ...hello(), epoch: 1.5 }],
    ['extensions that are not strings', { ...hello(), extensions: [1] }],
    ['a fractional protocol', { ...hello(), protocol: 1.5 }],
  ])('refuses %s with LINK_PROTOCOL', (_what, value) => {
    expect(() => parseHello(value)).toThrowError(expect.objectContaining({ code: 'LINK_PROTOCOL' }));
  });
  it('reports another protocol version as LINK_VERSION_MISMATCH even if the rest differs', () => {
    expect(() => parseHello({ protocol: 2, whatever: true })).toThrowError(
      expect.objectContaining({ code: 'LINK_VERSION_MISMATCH' }),
    );
  });
  it('never throws anything but a LinkError on arbitrary JSON (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseHello(v);
        } catch (e) {
          expect((e as { name: string }).name).toBe('LinkError');
        }
      }),
    );
  });
  it('negotiates the sorted intersection, the same from either side', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e')), fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e')), (x, y) => {
        const n = negotiateExtensions(x, y);
        expect(n).toEqual(negotiateExtensions(y, x));
        expect(n).toEqual([...new Set(x.filter((e) => y.includes(e)))].sort());
      }),
    );
  });
});

describe('handshake messages', () => {
  const nonce = randomBytes(32).toString('hex');
  it('round-trip', () => {
    const m = { t: 'auth' as const, channel: 'replication', nonce, proof: null };
    expect(decodeMessage(encodeMessage(m), 'auth')).toEqual(m);
  });
  it.each([
    ['not JSON', Buffer.from([0xff, 0x00, 0x13])],
    ['the wrong message', encodeMessage({ t: 'auth-ok', proof: null })],
    ['a short nonce', Buffer.from(JSON.stringify({ t: 'auth', channel: 'replication', nonce: 'abcd', proof: null }))],
    ['a non-hex proof', Buffer.from(JSON.stringify({ t: 'auth', channel: 'replication', nonce, proof: 'zz' }))],
    ['an oversize frame', Buffer.alloc(9000, 0x20)],
  ])('refuses %s with LINK_PROTOCOL', (_what, frame) => {
    expect(() => decodeMessage(frame, 'auth')).toThrowError(expect.objectContaining({ code: 'LINK_PROTOCOL' }));
  });
});

describe('close codes', () => {
  it('every code the link sends maps back to itself on the other side', () => {
    for (const code of Object.values(LinkErrorCode)) {
      const cc = closeCodeFor(code);
      expect(cc).toBeGreaterThanOrEqual(4000);
      const back = errorFromPeerClose(cc, 'why').code;
      if (code === 'LINK_CLOSED' || code === 'LINK_SOCKET_ERROR' || code === 'LINK_CONFIG') continue; // never sent
      expect(back).toBe(code);
    }
    expect(errorFromPeerClose(1006, '').code).toBe('LINK_CLOSED');
    expect(errorFromPeerClose(1000, 'bye').code).toBe('LINK_CLOSED');
    expect(errorFromPeerClose(1009, '').code).toBe('LINK_PROTOCOL');
  });
  it('close reasons fit in a control frame', () => {
    expect(Buffer.byteLength(closeReason('é'.repeat(200)))).toBeLessThanOrEqual(123);
    expect(closeReason('short')).toBe('short');
  });
});

describe('Heartbeat (fake clock)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  it('pings every interval, times out after the timeout of silence, and any frame resets it', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const pings: Buffer[] = [];
    const timeouts: number[] = [];
    const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 1000 }, {
      ping: (p) => pings.push(p),
      onTimeout: (ms) => timeouts.push(ms),
      onRtt: () => undefined,
    });
    hb.start();
    vi.advanceTimersByTime(950);
    expect(pings).toHaveLength(9);
    hb.heard();
    vi.advanceTimersByTime(950);
    expect(timeouts).toEqual([]);
    vi.advanceTimersByTime(100);
    expect(timeouts).toHaveLength(1);
    expect(timeouts[0]).toBeGreaterThanOrEqual(1000);
    const count = pings.length;
    vi.advanceTimersByTime(1000);
    expect(pings).toHaveLength(count); // stopped after the timeout
  });
  it('measures RTT from a ping to its pong and ignores unknown pongs', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const pings: Buffer[] = [];
    const rtts: number[] = [];
    const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 1000 }, {
      ping: (p) => pings.push(p),
      onTimeout: () => undefined,
      onRtt: (s) => rtts.push(s),
    });
    hb.start();
    vi.advanceTimersByTime(100);
    vi.advanceTimersByTime(30);
    hb.pong(pings[0]!);
    hb.pong(pings[0]!); // a duplicate says nothing new
    hb.pong(Buffer.from('junk'));
    expect(rtts).toHaveLength(1);
    expect(rtts[0]).toBeCloseTo(0.03, 5);
    hb.stop();
  });
  it('does not judge silence while told not to', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const timeouts: number[] = [];
    const hb = new Heartbeat({ intervalMs: 100, timeoutMs: 300 }, {
      ping: () => undefined,
      onTimeout: (ms) => timeouts.push(ms),
      onRtt: () => undefined,
    });
    hb.start();
    hb.setJudging(false);
    vi.advanceTimersByTime(5000);
    expect(timeouts).toEqual([]);
    hb.setJudging(true);
    vi.advanceTimersByTime(200);
    expect(timeouts).toEqual([]);
    vi.advanceTimersByTime(200);
    expect(timeouts).toHaveLength(1);
  });
});
