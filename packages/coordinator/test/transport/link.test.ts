import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { WsPeerLink } from '../../src/transport/ws-link.js';
import { MAX_FRAME_BYTES } from '../internals.js';
import { closed, collect, dial, listen, pair, within, type Listening } from './helpers.js';

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

describe('a PeerLink between a listener and a dialer', () => {
  it('opens after authentication and hello, with the negotiated extensions and both hellos', async () => {
    const { l, server, client } = await pair({}, {});
    servers.push(l);
    expect(client.peerHello.nodeId).toBe('node-a');
    expect(server.peerHello.nodeId).toBe('node-b');
    expect(client.localHello.role).toBe('secondary');
    expect(client.extensions).toEqual(['checkpoint-ack', 'epoch', 'heartbeat']);
    expect(server.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(client.remoteAddress).toBe(`127.0.0.1:${l.server.port}`);
  });

  it('carries bytes both ways and reports a local close as null and a peer close as LINK_CLOSED', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const atClient = collect(client);
    const atServer = collect(server);
    await server.send(Buffer.from('from the primary'));
    await client.send(Buffer.from('from the secondary'));
    expect((await atClient.waitFor(16)).toString()).toBe('from the primary');
    expect((await atServer.waitFor(18)).toString()).toBe('from the secondary');
    const serverEnd = closed(server);
    const clientEnd = closed(client);
    client.close('test over');
    expect(await clientEnd).toBeNull();
    const err = await serverEnd;
    expect(err?.code).toBe('LINK_CLOSED');
    expect(err?.message).toContain('test over');
    await expect(client.send(Buffer.from('late'))).rejects.toMatchObject({ code: 'LINK_CLOSED' });
  });
});

/** Payload lengths of the binary frames in `bytes` (unmasked frames from a server; control frames skipped). */
function binaryFrameLengths(bytes: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at < bytes.length; ) {
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let head = 2;
    if (length === 126) (length = bytes.readUInt16BE(at + 2)), (head = 4);
    else if (length === 127) (length = Number(bytes.readBigUInt64BE(at + 2))), (head = 10);
    if (opcode === 0x2 || opcode === 0x0) out.push(length);
    at += head + length;
  }
  return out;
}

describe('sendPieces (the primary sends guest pages as views)', () => {
  it('delivers the exact concatenation in frames of at most MAX_FRAME_BYTES, cutting pieces larger than a frame', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    // A piece larger than a frame, empty pieces, and a total that ends mid-frame: 3 frames.
    const pieces = [randomBytes(100), randomBytes(MAX_FRAME_BYTES + 12_345), Buffer.alloc(0), randomBytes(300_000), new Uint8Array(randomBytes(777)), Buffer.alloc(0)];
    const total = pieces.reduce((n, p) => n + p.length, 0);
    // The frames as they cross the socket (an extra listener on the dialer's TCP socket only watches).
    const wire: Buffer[] = [];
    const socket = (client as WsPeerLink).socket;
    socket.on('data', (b: Buffer) => wire.push(b));
    const atClient = collect(client);
    await server.sendPieces!(pieces);
    await server.whenWritten!();
    expect(Buffer.compare(await atClient.waitFor(total), Buffer.concat(pieces))).toBe(0);
    const frames = binaryFrameLengths(Buffer.concat(wire));
    expect(frames.reduce((a, b) => a + b, 0)).toBe(total);
    expect(frames).toHaveLength(Math.ceil(total / MAX_FRAME_BYTES));
    expect(Math.max(...frames)).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    // The dialer's frames are masked with a zero key: its pieces go out as views too, the same bytes.
    const atServer = collect(server);
    await client.sendPieces!(pieces);
    expect(Buffer.compare(await atServer.waitFor(total), Buffer.concat(pieces))).toBe(0);
  });
});

describe('colo reads the frames itself (no reassembly copy by ws)', () => {
  it('delivers data that follows the hello in the same reads, whole or cut anywhere, after the handshake messages', async () => {
    for (let round = 0; round < 8; round++) {
      const data = randomBytes(2 * MAX_FRAME_BYTES + Math.floor(Math.random() * MAX_FRAME_BYTES));
      const sent: Promise<void>[] = [];
      // The primary writes the moment its end of the link exists: the first frames follow the hello answer
      // in the same reads (whole, or cut mid-header or mid-payload) before the dialer's link exists.
      const l = await listen({ onLink: (link) => void sent.push(link.sendPieces!([data.subarray(0, 1000), data.subarray(1000)])) });
      servers.push(l);
      const client = await dial(l.server.url);
      const got = collect(client);
      expect(Buffer.compare(await got.waitFor(data.length), data)).toBe(0);
      await Promise.all(sent);
      client.close('round over');
    }
  });

  it("still answers the primary's pings (its round-trip time is measured) and hears its close reason", async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const rtt = await within(2000, 'no round-trip time on the listener side', new Promise<number>((resolve) => server.onRtt(resolve)));
    expect(rtt).toBeGreaterThan(0);
    const end = closed(client);
    server.close('primary going away');
    const err = await within(2000, 'the dialer did not hear the close', end);
    expect(err?.code).toBe('LINK_CLOSED');
    expect(err?.message).toContain('primary going away');
  });
});

describe('listeners that throw', () => {
  it('a data listener that throws ends the link with LINK_PROTOCOL instead of crashing the node', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const seen: string[] = [];
    client.onData((b) => {
      const text = Buffer.from(b).toString();
      seen.push(text);
      if (text === 'bad') throw new Error('not a record');
    });
    const c = closed(client);
    const s = closed(server);
    await server.send(Buffer.from('good'));
    await new Promise((r) => setTimeout(r, 20));
    await server.send(Buffer.from('bad'));
    await server.send(Buffer.from('after')).catch(() => undefined);
    const err = await c;
    expect(err?.code).toBe('LINK_PROTOCOL');
    expect(err?.message).toContain('not a record');
    expect((await s)?.code).toBe('LINK_PROTOCOL');
    expect(seen).toEqual(['good', 'bad']);
  });

  it('a close listener that throws does not stop the others', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    client.onClose(() => {
      throw new Error('oops');
    });
    const c = closed(client);
    client.close();
    expect(await c).toBeNull();
    server.close();
  });
});

describe('the listener', () => {
  it('closing it ends its links, and the dialers hear why', async () => {
    const { l, client } = await pair();
    const c = closed(client);
    await l.server.close();
    const err = await c;
    expect(err?.code).toBe('LINK_CLOSED');
    expect(err?.message).toContain('shutting down');
    await expect(dial(l.server.url)).rejects.toMatchObject({ code: 'LINK_SOCKET_ERROR' });
  });

  it('survives an onLink callback that throws, closing that link', async () => {
    let calls = 0;
    const l = await listen({
      onLink: () => {
        calls++;
        throw new Error('no room');
      },
    });
    servers.push(l);
    const client = await dial(l.server.url);
    const err = await closed(client);
    expect(err?.code).toBe('LINK_CLOSED');
    expect(calls).toBe(1);
    const again = await dial(l.server.url);
    await closed(again);
    expect(calls).toBe(2);
  });

  it('answers plain HTTP with 426 and stays up', async () => {
    const { l, server } = await pair();
    servers.push(l);
    const res = await fetch(l.server.url.replace('ws://', 'http://'));
    expect(res.status).toBe(426);
    server.close();
  });
});
