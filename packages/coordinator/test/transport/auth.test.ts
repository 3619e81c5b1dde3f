import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectToPeer, listenForPeers } from '../internals.js';
import { pskProof } from '../../src/transport/psk.js';
import { closed, collect, dial, FAST_HEARTBEAT, hello, KEY, listen, rawPeer, type Listening } from './helpers.js';

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});
async function listening(...args: Parameters<typeof listen>): Promise<Listening> {
  const l = await listen(...args);
  servers.push(l);
  return l;
}

/** Plays the dialer's side of the handshake by hand, so tests can forge or replay parts of it. */
function authMessage(challenge: Buffer, key: Uint8Array | null, opts: { channel?: string; proofChannel?: 'replication' | 'proxy'; clientNonce?: Buffer } = {}) {
  const c = JSON.parse(challenge.toString()) as { nonce: string };
  const clientNonce = opts.clientNonce ?? randomBytes(32);
  const channel = opts.channel ?? 'replication';
  const proof = key
    ? pskProof(key, 'client', opts.proofChannel ?? (channel as 'replication'), Buffer.from(c.nonce, 'hex'), clientNonce).toString('hex')
    : null;
  return { message: Buffer.from(JSON.stringify({ t: 'auth', channel, nonce: clientNonce.toString('hex'), proof })), clientNonce };
}

describe('pre-shared-key authentication', () => {
  it('with the same key on both sides, both ends authenticate each other and bytes flow both ways', async () => {
    const l = await listening();
    const accepted = l.nextLink();
    const client = await dial(l.server.url);
    const server = await accepted;
    const atServer = collect(server);
    const atClient = collect(client);
    await client.send(Buffer.from('up'));
    await server.send(Buffer.from('down'));
    expect((await atServer.waitFor(2)).toString()).toBe('up');
    expect((await atClient.waitFor(4)).toString()).toBe('down');
    client.close();
  });

  it('refuses a wrong key on both sides, and the listener goes on accepting the right one', async () => {
    const l = await listening();
    const err = await dial(l.server.url, { security: { psk: randomBytes(32) } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'LinkError', code: 'LINK_AUTH_FAILED' });
    const serverSide = await l.nextRefusal();
    expect(serverSide.code).toBe('LINK_AUTH_FAILED');
    expect(l.refusals[0]!.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(l.links).toHaveLength(0);

    const accepted = l.nextLink();
    const good = await dial(l.server.url);
    expect((await accepted).peerHello.nodeId).toBe('node-b');
    good.close();
  });

  it('refuses a dialer with no key (LINK_AUTH_MISSING on both sides)', async () => {
    const l = await listening();
    const err = await dial(l.server.url, { security: {} }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_AUTH_MISSING' });
    expect((await l.nextRefusal()).code).toBe('LINK_AUTH_MISSING');
  });

  it('refuses a listener that cannot prove the key: the dialer checks the listener too', async () => {
    // A listener that does not know the key: it answers the challenge with a made-up proof.
    const { WebSocketServer } = await import('ws');
    const fake = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => fake.once('listening', r));
    fake.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.send(Buffer.from(JSON.stringify({ t: 'challenge', v: 1, nonce: randomBytes(32).toString('hex'), psk: true })));
      ws.once('message', () => ws.send(Buffer.from(JSON.stringify({ t: 'auth-ok', proof: randomBytes(32).toString('hex') }))));
    });
    const port = (fake.address() as { port: number }).port;
    const err = await dial(`ws://127.0.0.1:${port}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_AUTH_FAILED' });
    // And a listener that claims to need no key is not trusted either (no TLS to vouch for it).
    fake.removeAllListeners('connection');
    fake.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.send(Buffer.from(JSON.stringify({ t: 'challenge', v: 1, nonce: randomBytes(32).toString('hex'), psk: false })));
      ws.once('message', () => ws.send(Buffer.from(JSON.stringify({ t: 'auth-ok', proof: null }))));
    });
    const err2 = await dial(`ws://127.0.0.1:${port}`).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: 'LINK_AUTH_MISSING' });
    await new Promise((r) => fake.close(r));
  });

  it('a proof recorded on one connection is worthless on the next, and a proof for another channel fails', async () => {
    const l = await listening();
    const first = await rawPeer(l.server.url);
    const { message } = authMessage(await first.next(), KEY);
    first.ws.send(message);
    const ok = JSON.parse((await first.next()).toString()) as { t: string };
    expect(ok.t).toBe('auth-ok'); // the forged dialer knows the key, so this one passes
    first.ws.terminate();

    const replay = await rawPeer(l.server.url);
    await replay.next(); // a fresh challenge
    replay.ws.send(message);
    expect((await replay.ended).code).toBe(4001);
    expect((await l.nextRefusal()).code).toBe('LINK_AUTH_FAILED');

    const cross = await rawPeer(l.server.url);
    cross.ws.send(authMessage(await cross.next(), KEY, { channel: 'replication', proofChannel: 'proxy' }).message);
    expect((await cross.ended).code).toBe(4001);
    expect(l.links).toHaveLength(0);
  });

  it('closes a raw client that skips authentication and sends bytes; it never gets a stream byte', async () => {
    const l = await listening();
    const raw = await rawPeer(l.server.url);
    await raw.opened;
    raw.ws.send(randomBytes(4096));
    raw.ws.send(randomBytes(100));
    const end = await raw.ended;
    expect(end.code).toBe(4005);
    expect((await l.nextRefusal()).code).toBe('LINK_PROTOCOL');
    // The only frame it ever saw is the challenge.
    expect(raw.frames).toHaveLength(1);
    expect(JSON.parse(raw.frames[0]!.toString()).t).toBe('challenge');
    expect(l.links).toHaveLength(0);
  });

  it('drops a peer that connects and says nothing, at the handshake deadline', async () => {
    const l = await listening({ handshakeTimeoutMs: 300 });
    const started = Date.now();
    const raw = await rawPeer(l.server.url);
    await raw.ended;
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect((await l.nextRefusal()).code).toBe('LINK_CONNECT_TIMEOUT');
  });

  it('a dialer gives up on a listener that accepts TCP and never answers (LINK_CONNECT_TIMEOUT)', async () => {
    const sockets: import('node:net').Socket[] = [];
    const mute = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    const port = (mute.address() as { port: number }).port;
    const started = Date.now();
    const err = await dial(`ws://127.0.0.1:${port}`, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_CONNECT_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(2000);
    for (const s of sockets) s.destroy();
    await new Promise((r) => mute.close(r));
  });

  it('a dialer reports a refused connection as LINK_SOCKET_ERROR', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    await expect(dial(`ws://127.0.0.1:${port}`)).rejects.toMatchObject({ code: 'LINK_SOCKET_ERROR' });
  });

  it('refuses bad configuration with LINK_CONFIG before touching the network', async () => {
    await expect(
      listenForPeers({ host: '127.0.0.1', port: 0, security: {}, heartbeat: FAST_HEARTBEAT, hello: () => hello(), onLink: () => undefined }),
    ).rejects.toMatchObject({ code: 'LINK_CONFIG' });
    await expect(
      connectToPeer({ url: 'ws://127.0.0.1:1', security: { psk: Buffer.from('short') }, heartbeat: FAST_HEARTBEAT, hello: hello() }),
    ).rejects.toMatchObject({ code: 'LINK_CONFIG' });
    await expect(
      connectToPeer({ url: 'http://x', security: { psk: KEY }, heartbeat: FAST_HEARTBEAT, hello: hello() }),
    ).rejects.toMatchObject({ code: 'LINK_CONFIG' });
    await expect(
      connectToPeer({ url: 'ws://127.0.0.1:1', security: { psk: KEY }, heartbeat: { intervalMs: 100, timeoutMs: 50 }, hello: hello() }),
    ).rejects.toMatchObject({ code: 'LINK_CONFIG' });
  });

  it('never logs the key', async () => {
    const lines: string[] = [];
    const { pino } = await import('pino');
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
    const l = await listening({ logger });
    await dial(l.server.url, { security: { psk: randomBytes(32) }, logger }).catch(() => undefined);
    await l.nextRefusal();
    const ok = l.nextLink();
    const link = await dial(l.server.url, { logger });
    const server = await ok;
    const end = closed(server);
    link.close();
    await end;
    const all = lines.join('');
    expect(all).toContain('LINK_AUTH_FAILED');
    expect(all).toContain('127.0.0.1');
    for (const form of [KEY.toString('hex'), KEY.toString('base64'), JSON.stringify([...KEY])]) {
      expect(all).not.toContain(form);
    }
  });
});
