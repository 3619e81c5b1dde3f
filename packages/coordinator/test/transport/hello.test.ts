import { afterEach, describe, expect, it } from 'vitest';
import { dial, hello, listen, rawPeer, type Listening } from './helpers.js';
import { pskProof } from '../../src/transport/psk.js';
import { KEY } from './helpers.js';
import { randomBytes } from 'node:crypto';

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});
async function listening(...args: Parameters<typeof listen>): Promise<Listening> {
  const l = await listen(...args);
  servers.push(l);
  return l;
}

describe('the hello exchange', () => {
  it('refuses a dialer speaking another protocol version (LINK_VERSION_MISMATCH on both sides)', async () => {
    let asked = 0;
    const l = await listening({
      hello: (peer) => {
        asked++;
        return hello({ channel: peer.channel, role: 'primary' });
      },
    });
    const err = await dial(l.server.url, { hello: hello({ protocol: 2 }) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_VERSION_MISMATCH' });
    expect((await l.nextRefusal()).code).toBe('LINK_VERSION_MISMATCH');
    expect(asked).toBe(0);
  });

  it('the dialer refuses a listener answering with another protocol version', async () => {
    const l = await listening({ hello: (peer) => hello({ channel: peer.channel, role: 'primary', protocol: 3 }) });
    const err = await dial(l.server.url).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_VERSION_MISMATCH' });
    expect(err).toHaveProperty('message', expect.stringContaining('protocol 3'));
  });

  it("lets the listener's callback refuse a peer, e.g. for a stale epoch, with its own code and words", async () => {
    const l = await listening({
      hello: (peer) =>
        peer.epoch < 5
          ? { refuse: `stale epoch ${peer.epoch}: this primary is at epoch 5`, code: 'LINK_REFUSED' }
          : hello({ channel: peer.channel, role: 'primary', epoch: 5 }),
    });
    const err = await dial(l.server.url, { hello: hello({ epoch: 4 }) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_REFUSED' });
    expect((err as Error).message).toContain('stale epoch 4');
    const serverSide = await l.nextRefusal();
    expect(serverSide.code).toBe('LINK_REFUSED');
    expect(l.links).toHaveLength(0);

    const accepted = l.nextLink();
    const ok = await dial(l.server.url, { hello: hello({ epoch: 5 }) });
    expect((await accepted).peerHello.epoch).toBe(5);
    expect(ok.peerHello.epoch).toBe(5);
    ok.close();
  });

  it('a throwing hello callback refuses the peer instead of crashing the listener', async () => {
    const l = await listening({
      hello: () => {
        throw new Error('ledger unavailable');
      },
    });
    const err = await dial(l.server.url).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_REFUSED' });
    expect((err as Error).message).toContain('ledger unavailable');
  });

  it('negotiates the extensions both sides offered', async () => {
    const l = await listening({
      hello: (peer) => hello({ channel: peer.channel, role: 'primary', extensions: ['epoch', 'heartbeat', 'proxy-compare'] }),
    });
    const accepted = l.nextLink();
    const client = await dial(l.server.url, { hello: hello({ extensions: ['checkpoint-ack', 'heartbeat', 'epoch'] }) });
    const server = await accepted;
    expect(client.extensions).toEqual(['epoch', 'heartbeat']);
    expect(server.extensions).toEqual(['epoch', 'heartbeat']);
    expect(server.peerHello.extensions).toEqual(['checkpoint-ack', 'heartbeat', 'epoch']);
    client.close();
  });

  it('keeps channels apart: a proxy-channel dialer gets a proxy-channel link', async () => {
    const l = await listening();
    const accepted = l.nextLink();
    const client = await dial(l.server.url, { hello: hello({ channel: 'proxy' }) });
    expect((await accepted).localHello.channel).toBe('proxy');
    expect(client.peerHello.channel).toBe('proxy');
    client.close();
  });

  it('refuses a malformed hello after a valid authentication (LINK_PROTOCOL)', async () => {
    const l = await listening();
    const raw = await rawPeer(l.server.url);
    const challenge = JSON.parse((await raw.next()).toString()) as { nonce: string };
    const clientNonce = randomBytes(32);
    const proof = pskProof(KEY, 'client', 'replication', Buffer.from(challenge.nonce, 'hex'), clientNonce);
    raw.ws.send(Buffer.from(JSON.stringify({ t: 'auth', channel: 'replication', nonce: clientNonce.toString('hex'), proof: proof.toString('hex') })));
    expect(JSON.parse((await raw.next()).toString()).t).toBe('auth-ok');
    raw.ws.send(Buffer.from(JSON.stringify({ t: 'hello', hello: { ...hello(), role: 'arbiter' } })));
    expect((await raw.ended).code).toBe(4005);
    expect((await l.nextRefusal()).message).toContain('role');
  });
});
