import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { sendTextFrame } from '../../src/transport/faults.js';
import { closed, pair, listen, rawPeer, type Listening } from './helpers.js';

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

describe('frames that break the rules', () => {
  it('an oversize frame before authentication is refused with a typed error, and the listener lives on', async () => {
    const l = await listen({ maxPayload: 64 * 1024 });
    servers.push(l);
    const raw = await rawPeer(l.server.url);
    await raw.opened;
    raw.ws.send(randomBytes(64 * 1024 + 1));
    const end = await raw.ended;
    expect(end.code).toBe(1009); // ws: message too big
    expect((await l.nextRefusal()).code).toBe('LINK_PROTOCOL');
    const accepted = l.nextLink();
    const { dial } = await import('./helpers.js');
    const ok = await dial(l.server.url);
    await accepted;
    ok.close();
  });

  it('an oversize frame on an open link ends it with LINK_PROTOCOL on both sides, no crash', async () => {
    // The listener accepts 64 KiB frames; the dialer sends 1 MiB frames.
    const { l, server, client } = await pair({ maxPayload: 64 * 1024 });
    servers.push(l);
    const s = closed(server);
    const c = closed(client);
    await client.send(randomBytes(1024 * 1024)).catch(() => undefined);
    expect((await s)?.code).toBe('LINK_PROTOCOL');
    expect((await c)?.code).toBe('LINK_PROTOCOL');
  });

  // Either end reads the other's frames itself (FrameReader): the same rules, the same outcome.
  it('an oversize frame from the listener ends the link with LINK_PROTOCOL on both sides, no crash', async () => {
    const { l, server, client } = await pair({}, { maxPayload: 64 * 1024 });
    servers.push(l);
    const s = closed(server);
    const c = closed(client);
    await server.send(randomBytes(1024 * 1024)).catch(() => undefined);
    const err = await c;
    expect(err?.code).toBe('LINK_PROTOCOL');
    expect(err?.message).toMatch(/more than 65536 bytes/); // the dialer's own reader refused it
    expect((await s)?.code).toBe('LINK_PROTOCOL');
  });

  // Refused by the receiving end's own frame reader, as WebSocket says (1003, unsupported data).
  for (const from of ['dialer', 'listener'] as const) {
    it(`a text frame from the ${from} ends the link with LINK_PROTOCOL on both sides`, async () => {
      const { l, server, client } = await pair();
      servers.push(l);
      const s = closed(server);
      const c = closed(client);
      sendTextFrame(from === 'dialer' ? client : server, 'hello?');
      expect((await s)?.code).toBe('LINK_PROTOCOL');
      expect((await c)?.code).toBe('LINK_PROTOCOL');
    });
  }
});
