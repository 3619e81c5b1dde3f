import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { READ_REGION_BYTES, ReadRing, type ReadRingConsumer } from '../../src/transport/read-ring.js';
import type { WsPeerLink } from '../../src/transport/ws-link.js';
import { pair, within, type Listening } from './helpers.js';

/**
 * Tens of MiB checked at every delivery, while other test files load both cores: the helpers' fast heartbeat
 * (400 ms) once timed the link out in a full run. These tests are about the bytes, not liveness.
 */
const BULK_HEARTBEAT = { intervalMs: 200, timeoutMs: 10_000 };

const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

/** Deterministic stream bytes: byte i of the stream is a function of i, so any view can be checked where it lies. */
function streamBytes(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    const x = from + i;
    b[i] = (x ^ (x >>> 8) ^ (x >>> 16) ^ 0x5a) & 0xff;
  }
  return b;
}

/** Fills `into` as a socket read would, with the next n stream bytes. */
function readInto(ring: ReadRing, at: number, n: number): number {
  const into = ring.region();
  const take = Math.min(n, into.length);
  streamBytes(at, take).copy(into);
  ring.read(into, take);
  return take;
}

describe('ReadRing (reused memory for socket reads)', () => {
  it('reuses its memory while the consumer keeps nothing, without a fresh buffer', () => {
    const ring = new ReadRing(4 * READ_REGION_BYTES);
    let delivered = 0;
    const seen: Buffer[] = [];
    ring.consumer = { deliver: (v) => ((delivered += v.length), seen.push(v)), copies: () => false, deliveredPayload: () => delivered, retainedPayload: () => 0 };
    let at = 0;
    for (let i = 0; i < 40; i++) at += readInto(ring, at, 300_000 + i * 7919);
    expect(ring.stats).toEqual({ ringReads: 40, fallbackReads: 0, copiedReads: 0 });
    // 40 reads of ~300 KB went through 4 MiB: the ring came round, so early views now show later bytes.
    expect(seen.every((v) => ring.owns(v))).toBe(true);
    expect(seen[0]!.equals(streamBytes(0, seen[0]!.length))).toBe(false);
  });

  it('never reads into memory the consumer still references: it falls back to fresh memory instead', () => {
    const ring = new ReadRing(4 * READ_REGION_BYTES);
    const kept: { at: number; view: Buffer }[] = [];
    let delivered = 0;
    let retained = Infinity; // keeps every view
    const consumer: ReadRingConsumer = {
      deliver: (v) => {
        kept.push({ at: delivered, view: v });
        delivered += v.length;
      },
      copies: () => false,
      deliveredPayload: () => delivered,
      retainedPayload: () => Math.min(retained, delivered),
    };
    ring.consumer = consumer;
    let at = 0;
    for (let i = 0; i < 30; i++) at += readInto(ring, at, 500_000);
    expect(ring.stats.fallbackReads).toBeGreaterThan(0);
    for (const k of kept) expect(k.view.equals(streamBytes(k.at, k.view.length)), `bytes at ${k.at}`).toBe(true);
    // Once the consumer lets go of all but the last 1 MB, the ring is used again, and that last 1 MB is intact.
    retained = 1_000_000;
    const before = ring.stats.ringReads;
    for (let i = 0; i < 30; i++) at += readInto(ring, at, 500_000);
    expect(ring.stats.ringReads).toBeGreaterThan(before + 20);
    const tail = kept.filter((k) => k.at >= delivered - 1_000_000);
    for (const k of tail) expect(k.view.equals(streamBytes(k.at, k.view.length)), `bytes at ${k.at}`).toBe(true);
  });

  it('keeps copies of what is read before there is a consumer, and reuses at once the memory of reads its consumer copies', () => {
    const ring = new ReadRing(2 * READ_REGION_BYTES);
    let at = 0;
    for (let i = 0; i < 3; i++) at += readInto(ring, at, 700_000);
    // The ring went round: the early reads must have been copied to survive it.
    const got: Buffer[] = [];
    let copying = true;
    ring.consumer = { deliver: (v) => got.push(Buffer.from(v)), copies: () => copying, deliveredPayload: () => 0, retainedPayload: () => Infinity };
    expect(Buffer.concat(got).equals(streamBytes(0, at))).toBe(true);
    // A consumer that copies (the upgrade, the handshake) pins nothing, even claiming to retain everything.
    for (let i = 0; i < 6; i++) at += readInto(ring, at, 700_000);
    expect(ring.stats).toEqual({ ringReads: 0, fallbackReads: 0, copiedReads: 9 });
    copying = false;
    for (let i = 0; i < 3; i++) at += readInto(ring, at, 700_000);
    // Now it keeps views of all it was given: the ring must not be overwritten under them.
    expect(ring.stats.ringReads).toBeGreaterThan(0);
    expect(ring.stats.fallbackReads).toBeGreaterThan(0);
    expect(Buffer.concat(got).equals(streamBytes(0, at))).toBe(true);
  });
});

describe('a dialer reading into reused memory (reuseReadMemory)', () => {
  it('delivers the exact stream to a listener that keeps views of its recent bytes, and copies to one that keeps everything', async () => {
    const { l, server, client } = await pair({ heartbeat: BULK_HEARTBEAT }, { reuseReadMemory: true, heartbeat: BULK_HEARTBEAT });
    servers.push(l);
    const total = 48 * 1024 * 1024; // three times the ring
    // The declared listener keeps views of at most its last `window` bytes and checks them at every delivery.
    const window = 3 * 1024 * 1024;
    const kept: { at: number; view: Uint8Array }[] = [];
    let got = 0;
    let keptBytes = 0;
    let bad = '';
    const done = new Promise<void>((resolve) => {
      client.onData(
        (b) => {
          kept.push({ at: got, view: b });
          keptBytes += b.length;
          got += b.length;
          while (kept.length > 1 && keptBytes - kept[0]!.view.length >= window) keptBytes -= kept.shift()!.view.length;
          for (const k of kept) {
            if (!bad && !Buffer.from(k.view.buffer, k.view.byteOffset, k.view.length).equals(streamBytes(k.at, k.view.length))) bad = `bytes at ${k.at} changed under a kept view`;
          }
          if (got >= total) resolve();
        },
        { retainedBytes: () => keptBytes },
      );
    });
    // The undeclared listener keeps every view it is given: it must have been given copies.
    const all: Uint8Array[] = [];
    client.onData((b) => all.push(b));
    const hash = createHash('sha256');
    for (let at = 0; at < total; ) {
      const n = Math.min(total - at, 1 + ((at * 2654435761) % (3 * 1024 * 1024)));
      const piece = streamBytes(at, n);
      hash.update(piece);
      await server.send(piece);
      at += n;
    }
    await within(30_000, 'the whole stream', done);
    expect(bad).toBe('');
    const received = createHash('sha256');
    for (const b of all) received.update(b);
    expect(received.digest('hex')).toBe(hash.digest('hex'));
    const stats = (client as WsPeerLink).readRingStats!;
    expect(stats.ringReads).toBeGreaterThan(16); // reads went through the ring, which came round
    client.close('done');
  }, 60_000);

  it('keeps the bytes intact while receiving is paused and frames are held', async () => {
    const { l, server, client } = await pair({ heartbeat: BULK_HEARTBEAT }, { reuseReadMemory: true, heartbeat: BULK_HEARTBEAT });
    servers.push(l);
    const chunks: Uint8Array[] = [];
    let got = 0;
    client.onData((b) => ((got += b.length), chunks.push(b)), { retainedBytes: () => got }); // keeps all: never overwritten
    client.pauseReceiving();
    const total = 40 * 1024 * 1024;
    const sending = (async () => {
      for (let at = 0; at < total; at += 1024 * 1024) await server.send(streamBytes(at, 1024 * 1024));
    })();
    await new Promise((r) => setTimeout(r, 300));
    client.resumeReceiving();
    await sending;
    while (got < total) await new Promise((r) => setTimeout(r, 20));
    let at = 0;
    for (const c of chunks) {
      expect(Buffer.from(c.buffer, c.byteOffset, c.length).equals(streamBytes(at, c.length)), `bytes at ${at}`).toBe(true);
      at += c.length;
    }
    expect((client as WsPeerLink).readRingStats!.fallbackReads).toBeGreaterThan(0);
    client.close('done');
  }, 60_000);
});
