import { afterEach, describe, expect, it } from 'vitest';
import { cutLink, stallLink } from '../../src/transport/faults.js';
import type { LinkError, PeerLink } from '../internals.js';
import { closed, collect, FAST_HEARTBEAT, pair, sleep, type Listening } from './helpers.js';

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

/** Scheduling slack on a shared 2-core machine, on top of what the heartbeat itself allows. */
const SLACK_MS = 250;

function countCloses(link: PeerLink): { calls: (LinkError | null)[] } {
  const calls: (LinkError | null)[] = [];
  link.onClose((e) => calls.push(e));
  return { calls };
}

describe('heartbeats', () => {
  it('measure the round-trip time on both ends', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    expect(client.rttSeconds).toBeUndefined();
    const seen = await new Promise<number>((resolve) => client.onRtt(resolve));
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(FAST_HEARTBEAT.timeoutMs / 1000);
    expect(client.rttSeconds).toBe(seen);
    await new Promise<number>((resolve) => server.onRtt(resolve));
    expect(server.rttSeconds).toBeGreaterThan(0);
    client.close();
  });

  it('keep an idle link open well past the timeout', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const s = countCloses(server);
    const c = countCloses(client);
    await sleep(FAST_HEARTBEAT.timeoutMs * 3);
    expect(s.calls).toEqual([]);
    expect(c.calls).toEqual([]);
    client.close();
  });

  it('declare a stalled peer dead (LINK_HEARTBEAT_TIMEOUT) within timeout + interval', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const s = countCloses(server);
    const ended = closed(server);
    const stalledAt = performance.now();
    const stall = stallLink(client);
    const err = await ended;
    const took = performance.now() - stalledAt;
    expect(err?.code).toBe('LINK_HEARTBEAT_TIMEOUT');
    expect(took).toBeGreaterThanOrEqual(FAST_HEARTBEAT.timeoutMs - FAST_HEARTBEAT.intervalMs);
    expect(took).toBeLessThanOrEqual(FAST_HEARTBEAT.timeoutMs + FAST_HEARTBEAT.intervalMs + SLACK_MS);
    await sleep(200);
    expect(s.calls).toHaveLength(1);
    // The terminated socket is what the stalled end finds when it wakes up.
    const c = closed(client);
    stall.resume();
    expect((await c)?.code).toMatch(/^LINK_(CLOSED|SOCKET_ERROR)$/);
  });

  it('a stalled end sends nothing: its send() stays pending', async () => {
    const { l, server, client } = await pair({ heartbeat: { intervalMs: 50, timeoutMs: 5000 } }, { heartbeat: { intervalMs: 50, timeoutMs: 5000 } });
    servers.push(l);
    const got = collect(server);
    const stall = stallLink(client);
    let sent = false;
    const sending = client.send(Buffer.from('after the stall')).then(() => (sent = true));
    await sleep(200);
    expect(sent).toBe(false);
    expect(got.received()).toBe(0);
    stall.resume();
    await sending;
    expect((await got.waitFor(15)).toString()).toBe('after the stall');
    client.close();
  });

  it('report an abrupt close (no close frame) to the peer exactly once', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const s = countCloses(server);
    const c = countCloses(client);
    const ended = closed(server);
    cutLink(client);
    const err = await ended;
    expect(err?.code).toMatch(/^LINK_(CLOSED|SOCKET_ERROR)$/);
    client.close();
    server.close();
    cutLink(client);
    await sleep(FAST_HEARTBEAT.timeoutMs + 100);
    expect(s.calls).toHaveLength(1);
    expect(c.calls).toHaveLength(1);
    expect(c.calls[0]?.code).toBe('LINK_SOCKET_ERROR');
    // A listener added after the end hears it once too.
    expect((await closed(server))?.code).toBe(err?.code);
  });

  it('do not kill a link whose receiver pauses longer than the timeout', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const s = countCloses(server);
    const c = countCloses(client);
    const got = collect(client);
    client.pauseReceiving();
    await server.send(Buffer.from('held while paused'));
    await sleep(FAST_HEARTBEAT.timeoutMs * 2.5);
    expect(got.received()).toBe(0);
    expect(s.calls).toEqual([]);
    expect(c.calls).toEqual([]);
    client.resumeReceiving();
    expect((await got.waitFor(17)).toString()).toBe('held while paused');
    await sleep(FAST_HEARTBEAT.timeoutMs * 1.5);
    expect(s.calls).toEqual([]);
    expect(c.calls).toEqual([]);
    client.close();
  });
});
