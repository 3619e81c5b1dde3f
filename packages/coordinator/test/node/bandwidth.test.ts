import { randomBytes } from 'node:crypto';
import { afterEach, expect, it } from 'vitest';
import { Throttle, THROTTLE_BURST_BYTES } from '../../src/transport/throttle.js';
import { PAGE, secondaryNode, startPrimary, waitFor } from './pair.js';

/**
 * replication.max_bandwidth: the primary's main stream never goes faster than the limit (plus its 10 ms burst),
 * over a whole 64 MiB initial synchronisation and the checkpoints after it, and still makes progress at close
 * to the limit. The lower bound on the time is the limiter's own guarantee; the upper one only says the limit
 * is not a stall.
 */
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

it('a throttle lets bytes go no faster than its rate, and the first burst at once', async () => {
  expect(() => new Throttle(0)).toThrow(RangeError);
  expect(() => new Throttle(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  const rate = 8 * 1024 * 1024;
  const t = new Throttle(rate);
  // Within the burst (64 KiB) a take does not wait for a timer.
  const t0 = performance.now();
  let first = false;
  void t.take(16 * 1024).then(() => (first = true));
  await Promise.resolve();
  expect(first).toBe(true);
  const total = 2 * 1024 * 1024;
  for (let sent = 16 * 1024; sent < total; sent += 64 * 1024) await t.take(64 * 1024);
  // The last take may go one burst ahead of the schedule, which itself began one burst back: at most two bursts
  // ahead of bytes / rate, whatever the timers do.
  const seconds = (performance.now() - t0) / 1000;
  expect(seconds).toBeGreaterThanOrEqual((total - 2 * THROTTLE_BURST_BYTES) / rate - 0.0001);
  // An idle link saves up no more than one burst: after a pause, 1 MiB still takes its time.
  await new Promise((r) => setTimeout(r, 300));
  const t1 = performance.now();
  for (let sent = 0; sent < 1024 * 1024; sent += 64 * 1024) await t.take(64 * 1024);
  expect((performance.now() - t1) / 1000).toBeGreaterThanOrEqual((1024 * 1024 - 2 * THROTTLE_BURST_BYTES) / rate - 0.0001);
});

it('the limit holds within 10 % over a 64 MiB initial synchronisation, and the pair is protected at the end', async () => {
  const psk = randomBytes(32);
  const pages = 16384; // 64 MiB
  const limit = 32 * 1024 * 1024; // 32 MiB/s: about 2 s for the guest
  const { guest, primary } = await startPrimary({ mode: 'remus', pages, primary: { replication: { listen: { host: '127.0.0.1', port: 0 }, maxBandwidth: limit } } }, psk);
  const secondary = secondaryNode({ mode: 'remus' }, primary.listenUrl!, psk);
  stops.push(async () => {
    await secondary.stop();
    await primary.stop();
    guest.destroy();
    secondary.domain?.destroy();
  });
  const received0 = secondary.replicationBytesReceived;
  const t0 = performance.now();
  await secondary.start();
  await waitFor('protection', () => primary.status().protected, 30_000);
  const seconds = (performance.now() - t0) / 1000;
  const bytes = secondary.replicationBytesReceived - received0;
  expect(bytes).toBeGreaterThanOrEqual(pages * PAGE);
  const rate = bytes / seconds;
  console.log(`64 MiB synchronisation under a ${limit / 2 ** 20} MiB/s limit: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${seconds.toFixed(2)} s = ${(rate / 2 ** 20).toFixed(1)} MiB/s`);
  expect(rate).toBeLessThanOrEqual(limit * 1.1);
  expect(rate).toBeGreaterThan(limit * 0.5);
  // Checkpoints keep working under the limit, and its progress reports stay whole.
  const m = await primary.requestCheckpoint('manual');
  expect(m.pages).toBeGreaterThanOrEqual(0);
  expect(primary.status().sync).toBeNull();
}, 60_000);

it('a limit that is not a positive number is refused', () => {
  return expect(startPrimary({ mode: 'remus', primary: { replication: { listen: { host: '127.0.0.1', port: 0 }, maxBandwidth: -5 } } }, randomBytes(32))).rejects.toMatchObject({ code: 'COLO_BAD_OPTIONS' });
});
