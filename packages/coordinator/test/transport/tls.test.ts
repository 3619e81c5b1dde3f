import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from './certs.js';
import { collect, dial, KEY, listen, rawPeer, type Listening } from './helpers.js';

let pki: TestPki;
beforeAll(() => {
  pki = makeTestPki();
});
afterAll(() => pki?.dispose());

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

async function mtlsListener(psk?: Uint8Array): Promise<Listening> {
  const l = await listen({
    security: { tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca1 }, ...(psk ? { psk } : {}) },
  });
  servers.push(l);
  expect(l.server.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
  return l;
}

describe('mutual TLS', () => {
  it('links two nodes whose certificates come from the same CA, without a pre-shared key', async () => {
    const l = await mtlsListener();
    const accepted = l.nextLink();
    const client = await dial(l.server.url, { security: { tls: { ...pki.client, ca: pki.ca1 } } });
    const server = await accepted;
    const got = collect(client);
    await server.send(Buffer.from('over tls'));
    expect((await got.waitFor(8)).toString()).toBe('over tls');
    // Over TLS too colo reads the frames itself; a few MiB arrive byte-exact after the hello.
    const big = randomBytes(3 * 1024 * 1024 + 17);
    await server.send(big);
    expect(Buffer.compare((await got.waitFor(8 + big.length)).subarray(8), big)).toBe(0);
    client.close();
  });

  it('combines with a pre-shared key, and a wrong key is still refused inside TLS', async () => {
    const l = await mtlsListener(KEY);
    const accepted = l.nextLink();
    const client = await dial(l.server.url, { security: { psk: KEY, tls: { ...pki.client, ca: pki.ca1 } } });
    expect((await accepted).peerHello.nodeId).toBe('node-b');
    client.close();
    const bad = await dial(l.server.url, {
      security: { psk: Buffer.alloc(32, 7), tls: { ...pki.client, ca: pki.ca1 } },
    }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'LINK_AUTH_FAILED' });
  });

  it('refuses a client certificate signed by another CA', async () => {
    const l = await mtlsListener();
    const err = await dial(l.server.url, { security: { tls: { ...pki.impostor, ca: pki.ca1 } } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'LinkError', code: 'LINK_TLS_FAILED' });
    expect((await l.nextRefusal()).code).toBe('LINK_TLS_FAILED');
    expect(l.links).toHaveLength(0);
  });

  it('refuses a client with no certificate', async () => {
    const l = await mtlsListener();
    const raw = await rawPeer(l.server.url, { ca: pki.ca1 });
    await raw.ended;
    expect(raw.frames).toHaveLength(0);
    expect((await l.nextRefusal()).code).toBe('LINK_TLS_FAILED');
    // The same through connectToPeer: a key but no certificate is not enough for an mTLS listener.
    const err = await dial(l.server.url, { security: { psk: KEY } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_TLS_FAILED' });
  });

  it('the dialer refuses a listener whose certificate its CA did not sign', async () => {
    const l = await mtlsListener();
    const err = await dial(l.server.url, { security: { tls: { ...pki.client, ca: pki.ca2 } } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LINK_TLS_FAILED' });
    expect(l.links).toHaveLength(0);
  });
});
