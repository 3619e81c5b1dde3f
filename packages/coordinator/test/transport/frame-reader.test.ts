import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameReader, type FrameSender } from '../../src/transport/frame-reader.js';

/** One RFC 6455 frame as a server sends it (unmasked), written out here independently of the reader. */
function frame(opcode: number, payload: Buffer, fin = true, extra: { rsv?: number; mask?: boolean; key?: Buffer } = {}): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = (fin ? 0x80 : 0) | ((extra.rsv ?? 0) << 4) | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (extra.mask || extra.key) {
    head[1]! |= 0x80;
    const key = extra.key ?? Buffer.alloc(4);
    return Buffer.concat([head, key, Buffer.from(payload.map((b, i) => b ^ key[i % 4]!))]);
  }
  return Buffer.concat([head, payload]);
}

function recorder(maxMessageBytes = Number.MAX_SAFE_INTEGER, sender: FrameSender = 'server') {
  const data: Buffer[] = [];
  const events: string[] = [];
  const reader = new FrameReader(
    {
      data: (b) => data.push(b),
      ping: (p) => events.push(`ping:${p.toString('hex')}`),
      pong: (p) => events.push(`pong:${p.toString('hex')}`),
      close: (code, reason) => events.push(`close:${code}:${reason.toString()}`),
      messageEnd: () => events.push('end'),
    },
    maxMessageBytes,
    sender,
  );
  return { reader, data, events };
}

/** Feeds `bytes` to the reader cut at the given offsets. */
function feed(reader: FrameReader, bytes: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    if (c <= at || c >= bytes.length) continue;
    chunks.push(bytes.subarray(at, c));
    at = c;
  }
  chunks.push(bytes.subarray(at));
  for (const c of chunks) reader.push(c);
  return chunks;
}

describe('FrameReader (the dialer reads the server frames itself)', () => {
  it('hands on the payload of every binary message, fragmented or not, byte-exact and as views, however the bytes are cut', () => {
    const message = fc.record({
      sizes: fc.array(fc.integer({ min: 0, max: 70_000 }), { minLength: 1, maxLength: 4 }),
      pingBetween: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, rawCuts) => {
        const wire: Buffer[] = [];
        const payloads: Buffer[] = [];
        const pings: string[] = [];
        for (const m of messages) {
          m.sizes.forEach((size, i) => {
            const p = randomBytes(size);
            payloads.push(p);
            wire.push(frame(i === 0 ? 0x2 : 0x0, p, i === m.sizes.length - 1));
            // Control frames may come between the fragments of a message (RFC 6455 5.4).
            if (m.pingBetween && i < m.sizes.length - 1) {
              const ping = randomBytes(1 + (size % 125));
              pings.push(`ping:${ping.toString('hex')}`);
              wire.push(frame(0x9, ping));
            }
          });
        }
        const bytes = Buffer.concat(wire);
        const { reader, data, events } = recorder();
        const chunks = feed(reader, bytes, rawCuts.map((c) => c % (bytes.length + 1)));
        expect(Buffer.compare(Buffer.concat(data), Buffer.concat(payloads))).toBe(0);
        expect(events.filter((e) => e !== 'end')).toEqual(pings);
        expect(events.filter((e) => e === 'end')).toHaveLength(messages.length);
        // Nothing copied: every piece of data is a view of one of the chunks pushed.
        for (const d of data) expect(chunks.some((c) => c.buffer === d.buffer)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('reports pings, pongs and a close (with and without a code), and reads nothing after the close', () => {
    const { reader, data, events } = recorder();
    const closeBody = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')]);
    reader.push(Buffer.concat([frame(0x9, Buffer.from('ab')), frame(0xa, Buffer.alloc(0)), frame(0x8, closeBody), frame(0x2, Buffer.from('late'))]));
    expect(events).toEqual(['ping:6162', 'pong:', 'close:1000:bye']);
    expect(data).toHaveLength(0);
    const other = recorder();
    other.reader.push(frame(0x8, Buffer.alloc(0)));
    expect(other.events).toEqual(['close:1005:']);
  });

  const refused: [string, Buffer, RegExp][] = [
    ['a masked frame', frame(0x2, Buffer.from('x'), true, { mask: true }), /masked/],
    ['RSV bits', frame(0x2, Buffer.from('x'), true, { rsv: 4 }), /RSV/],
    ['a text frame', frame(0x1, Buffer.from('x')), /text frame/],
    ['an unknown opcode', frame(0x3, Buffer.from('x')), /opcode 0x3/],
    ['a fragmented control frame', frame(0x9, Buffer.from('x'), false), /fragmented control/],
    ['a control frame over 125 bytes', frame(0xa, Buffer.alloc(126)), /126 bytes/],
    ['a continuation outside a message', frame(0x0, Buffer.from('x')), /continuation/],
    ['a binary frame inside a message', Buffer.concat([frame(0x2, Buffer.from('x'), false), frame(0x2, Buffer.from('y'))]), /inside a fragmented/],
    ['a close frame with a 1-byte payload', frame(0x8, Buffer.from([3])), /1-byte/],
  ];
  for (const [what, bytes, message] of refused) {
    it(`refuses ${what} with LINK_PROTOCOL and a WebSocket close status, and stays refused`, () => {
      const { reader } = recorder();
      expect(() => reader.push(bytes)).toThrow(
        expect.objectContaining({ code: 'LINK_PROTOCOL', message: expect.stringMatching(message), closeCode: what === 'a text frame' ? 1003 : 1002 }),
      );
      expect(() => reader.push(frame(0x2, Buffer.from('ok')))).toThrow(expect.objectContaining({ code: 'LINK_PROTOCOL' }));
    });
  }

  it('refuses a message over the size limit as soon as a header announces it, fragments counted together', () => {
    const { reader, data } = recorder(1000);
    reader.push(frame(0x2, Buffer.alloc(600), false));
    expect(() => reader.push(frame(0x0, Buffer.alloc(401)).subarray(0, 4))).toThrow(
      expect.objectContaining({ code: 'LINK_PROTOCOL', message: expect.stringMatching(/more than 1000 bytes/), closeCode: 1009 }),
    );
    expect(Buffer.concat(data)).toHaveLength(600);
    // Exactly at the limit is fine, and the count starts again with the next message.
    const ok = recorder(1000);
    ok.reader.push(Buffer.concat([frame(0x2, Buffer.alloc(600), false), frame(0x0, Buffer.alloc(400)), frame(0x2, Buffer.alloc(1000))]));
    expect(Buffer.concat(ok.data)).toHaveLength(2000);
  });
});

describe("FrameReader reading a client's frames (the listener's side)", () => {
  it('undoes any masking key, however the bytes are cut, and hands on zero-key payload untouched, as views', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ size: fc.integer({ min: 0, max: 70_000 }), zeroKey: fc.boolean(), fin: fc.boolean() }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (frames, rawCuts) => {
          const wire: Buffer[] = [];
          const payloads: Buffer[] = [];
          let open = false;
          frames.forEach((f, i) => {
            const p = randomBytes(f.size);
            payloads.push(p);
            const fin = f.fin || i === frames.length - 1;
            wire.push(frame(open ? 0x0 : 0x2, p, fin, { key: f.zeroKey ? Buffer.alloc(4) : randomBytes(4) }));
            open = !fin;
          });
          const bytes = Buffer.concat(wire);
          const { reader, data } = recorder(Number.MAX_SAFE_INTEGER, 'client');
          const chunks = feed(reader, bytes, rawCuts.map((c) => c % (bytes.length + 1)));
          expect(Buffer.compare(Buffer.concat(data), Buffer.concat(payloads))).toBe(0);
          for (const d of data) expect(chunks.some((c) => c.buffer === d.buffer)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('unmasks control frames too', () => {
    const { reader, events } = recorder(1000, 'client');
    reader.push(Buffer.concat([frame(0x9, Buffer.from('hi'), true, { key: Buffer.from([1, 2, 3, 4]) }), frame(0x8, Buffer.from([0x03, 0xe8, 0x62]), true, { key: Buffer.from([9, 9, 9, 9]) })]));
    expect(events).toEqual(['ping:6869', 'close:1000:b']);
  });

  it('refuses an unmasked frame from a client (RFC 6455 5.1) with 1002', () => {
    const { reader } = recorder(1000, 'client');
    expect(() => reader.push(frame(0x2, Buffer.from('x')))).toThrow(expect.objectContaining({ code: 'LINK_PROTOCOL', message: expect.stringMatching(/unmasked/), closeCode: 1002 }));
  });
});
