import { afterEach, describe, expect, it } from 'vitest';
import { Extension, Peer, type PeerLink } from '../internals.js';
import { closed, hello, pair, within, type Listening } from '../transport/helpers.js';
import { startPrimary, secondaryNode, waitFor, type PairOptions } from './pair.js';
import { randomBytes } from 'node:crypto';

describe('Peer: the links of one peer, lost together', () => {
  const listeners: Listening[] = [];
  afterEach(async () => {
    for (const l of listeners.splice(0)) await l.server.close();
  });

  async function twoLinks(): Promise<{ a: PeerLink; b: PeerLink; farA: PeerLink; farB: PeerLink }> {
    const one = await pair();
    const two = await pair({}, { hello: hello({ channel: 'proxy' }) });
    listeners.push(one.l, two.l);
    return { a: one.client, b: two.client, farA: one.server, farB: two.server };
  }

  it('loses the peer once when any of its links ends, and closes the others', async () => {
    const { a, b, farA, farB } = await twoLinks();
    const peer = new Peer('node-b');
    peer.add(a);
    peer.add(b);
    const reasons: string[] = [];
    peer.onLost((reason) => reasons.push(reason));
    const bEnded = closed(b);
    farA.close('the far end goes away');
    await within(3000, 'b closed by the peer', bEnded);
    await within(3000, 'farB closed', closed(farB));
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/the replication link ended/);
    expect(peer.lost).toBe(true);
    // Told at once when it already is.
    const late = await new Promise<string>((resolve) => peer.onLost(resolve));
    expect(late).toBe(reasons[0]);
  });

  it('a drop closes every link with its reason; a link added to a lost peer is closed at once', async () => {
    const { a, b, farA } = await twoLinks();
    const peer = new Peer('node-b');
    peer.add(a);
    const farEnded = closed(farA);
    peer.drop('the proxy sent garbage');
    const error = await within(3000, 'far end closed', farEnded);
    expect(error?.message ?? '').toMatch(/garbage|closed/);
    const bEnded = closed(b);
    peer.add(b);
    await within(3000, 'a late link closed', bEnded);
  });

  it('a link replaced on its channel does not lose the peer', async () => {
    const one = await pair();
    const two = await pair();
    listeners.push(one.l, two.l);
    const [a, b] = [one.client, two.client];
    const peer = new Peer('node-b');
    let lost = 0;
    peer.onLost(() => lost++);
    peer.add(a);
    const aEnded = closed(a);
    peer.add(b);
    await within(3000, 'the replaced link closed', aEnded);
    await new Promise((r) => setTimeout(r, 50));
    expect(lost).toBe(0);
    expect(peer.link('replication')).toBe(b);
    peer.drop('done');
  });
});

describe('a pair with a side channel: one peer, one lost event', () => {
  const opts: PairOptions = { mode: 'remus', pages: 64 };
  const side = { sideChannels: [{ channel: 'proxy' as const, extensions: [Extension.INPUT_WATERMARK] }] };

  it('the secondary dials its side link first; ending it loses the peer on both nodes, replication link included', async () => {
    const psk = randomBytes(32);
    const primarySides: PeerLink[] = [];
    const { guest, primary } = await startPrimary({ ...opts, primary: { ...side, onSideLink: (l) => primarySides.push(l) } }, psk);
    const secondarySides: PeerLink[] = [];
    const order: string[] = [];
    const secondary = secondaryNode({ ...opts, secondary: { ...side, onSideLink: (l) => (secondarySides.push(l), order.push('side')) } }, primary.listenUrl!, psk);
    secondary.onTransition((t) => {
      if (t.to === 'syncing.receiving') order.push('replication');
    });
    const lost: string[] = [];
    primary.on('peerLost', (r) => lost.push(`primary: ${r}`));
    secondary.on('peerLost', (r) => lost.push(`secondary: ${r}`));
    try {
      await secondary.start();
      await waitFor('protected', () => primary.isProtectedPrimary);
      expect(order).toEqual(['side', 'replication']);
      expect(primarySides.map((l) => l.peerHello.channel)).toEqual(['proxy']);
      expect(secondarySides).toHaveLength(1);
      const replication = primary.replicationLink!;
      const replicationEnded = closed(replication);
      secondarySides[0]!.close('the proxy saw garbage');
      await within(5000, 'the primary closes the replication link too', replicationEnded);
      await waitFor('both lost their peer', () => lost.length >= 2 && lost);
      expect(lost.filter((l) => l.startsWith('primary'))).toHaveLength(1);
      expect(lost.filter((l) => l.startsWith('secondary'))).toHaveLength(1);
      await waitFor('the primary decides', () => primary.status().state !== 'protected.idle' && !primary.isProtectedPrimary);
    } finally {
      await secondary.stop();
      await primary.stop();
      guest.destroy();
      secondary.domain?.destroy();
    }
  });

  it('a secondary waits for a primary that is not up yet (startRetryMs), then joins', async () => {
    const psk = randomBytes(32);
    // A port nobody listens on yet: the primary comes up on it a second later.
    const probe = await startPrimary(opts, psk);
    const url = probe.primary.listenUrl!;
    const port = Number(new URL(url).port);
    await probe.primary.stop();
    probe.guest.destroy();
    const secondary = secondaryNode({ ...opts, secondary: { ...side, onSideLink: () => {}, startRetryMs: 10_000 } }, url, psk);
    const joining = secondary.start();
    await new Promise((r) => setTimeout(r, 300));
    const { guest, primary } = await startPrimary({ ...opts, primary: { ...side, onSideLink: () => {}, replication: { listen: { host: '127.0.0.1', port } } } }, psk);
    try {
      await within(8000, 'the secondary joins once the primary is up', joining);
      await waitFor('protected', () => primary.isProtectedPrimary);
    } finally {
      await secondary.stop();
      await primary.stop();
      guest.destroy();
      secondary.domain?.destroy();
    }
  });
});
