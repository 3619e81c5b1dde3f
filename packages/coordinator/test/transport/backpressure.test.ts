import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES } from '../internals.js';
import { collect, pair, sleep, type Listening } from './helpers.js';

const MiB = 1024 * 1024;
const servers: Listening[] = [];
afterEach(async () => {
  for (const l of servers.splice(0)) await l.server.close();
});

describe('backpressure', () => {
  it("a receiver that pauses stops the sender's send(), bounded by highWater + one frame; resuming completes it", async () => {
    const highWaterMark = 4 * MiB;
    const { l, server, client } = await pair({ highWaterMark }, { highWaterMark });
    servers.push(l);
    const got = collect(client);
    client.pauseReceiving();

    const chunk = randomBytes(MiB);
    const total = 256; // MiB; far more than the kernel's socket buffers on loopback hold
    let maxBuffered = 0;
    let resolved = 0;
    const sampler = setInterval(() => {
      maxBuffered = Math.max(maxBuffered, server.bufferedAmount);
    }, 5);
    const sending = (async () => {
      for (let i = 0; i < total; i++) {
        await server.send(chunk);
        resolved++;
        maxBuffered = Math.max(maxBuffered, server.bufferedAmount);
      }
    })();
    // Let the sender run until it stops making progress.
    let before = -1;
    while (resolved !== before) {
      before = resolved;
      await sleep(150);
    }
    console.log(`sender stalled after ${resolved} MiB; peak bufferedAmount ${maxBuffered} bytes`);
    expect(resolved).toBeLessThan(total);
    expect(got.received()).toBe(0);
    expect(server.bufferedAmount).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + MAX_FRAME_BYTES);

    client.resumeReceiving();
    await sending;
    clearInterval(sampler);
    const bytes = await got.waitFor(total * MiB);
    expect(bytes.length).toBe(total * MiB);
    for (const i of [0, 17, total - 1]) {
      expect(bytes.subarray(i * MiB, (i + 1) * MiB).equals(chunk)).toBe(true);
    }
    expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + MAX_FRAME_BYTES);
    client.close();
  });

  it('holds frames that arrive before anyone listens, and delivers them in order to the first listener', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    await server.send(Buffer.from('first '));
    await server.send(Buffer.from('second'));
    await sleep(50);
    const got = collect(client);
    expect((await got.waitFor(12)).toString()).toBe('first second');
    client.close();
  });

  it('delivers bytes that arrived before the peer closed, then reports the close', async () => {
    const { l, server, client } = await pair();
    servers.push(l);
    const events: string[] = [];
    client.pauseReceiving();
    await server.send(Buffer.from('last words'));
    await sleep(50);
    client.onData((b) => events.push(`data:${Buffer.from(b).toString()}`));
    const ended = new Promise<void>((resolve) =>
      client.onClose((e) => {
        events.push(`close:${e?.code}`);
        resolve();
      }),
    );
    server.close('done');
    client.resumeReceiving();
    await ended;
    expect(events).toEqual(['data:last words', 'close:LINK_CLOSED']);
  });
});
