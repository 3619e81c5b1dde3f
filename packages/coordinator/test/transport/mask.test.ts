import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { collect, dial, listen, type Listening } from './helpers.js';

/**
 * The dialer's frames on the wire: masked (as RFC 6455 requires of a client) with a zero key, which ws skips
 * on both ends (see dialer.ts). Checked on the bytes a TCP relay between the two ends saw.
 */
describe('dialer frames on the wire', () => {
  let l: Listening;
  let relay: Server;
  afterAll(async () => {
    relay?.close();
    await l?.server.close();
  });

  it('carry the mask bit and a zero masking key, so the payload travels as it is', async () => {
    l = await listen();
    const target = new URL(l.server.url);
    const upstream: Buffer[] = [];
    relay = createServer((down) => {
      const up = createConnection({ host: target.hostname, port: Number(target.port) });
      down.on('data', (b: Buffer) => {
        upstream.push(Buffer.from(b));
        up.write(b);
      });
      up.pipe(down);
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
      down.on('close', () => up.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as AddressInfo).port;

    const accepted = l.nextLink();
    const client = await dial(`ws://127.0.0.1:${port}`);
    const server = await accepted;
    const payload = randomBytes(70_000); // a 64-bit length: header of 2 + 8 bytes, then the key
    const sink = collect(server);
    await client.send(payload);
    await sink.waitFor(payload.length);
    sink.stop();
    client.close();

    const wire = Buffer.concat(upstream);
    const at = wire.indexOf(payload);
    expect(at, 'the payload was not on the wire as sent').toBeGreaterThan(14);
    // Frame head: FIN + binary opcode, MASK bit + 127 (64-bit length), the length, then the 4-byte key.
    const head = wire.subarray(at - 14, at);
    expect(head[0]).toBe(0x82);
    expect(head[1]).toBe(0x80 | 127);
    expect(head.readBigUInt64BE(2)).toBe(BigInt(payload.length));
    expect([...head.subarray(10, 14)]).toEqual([0, 0, 0, 0]);
    expect(sink.bytes().equals(payload)).toBe(true);
  });
});
