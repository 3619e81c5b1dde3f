import { randomBytes } from 'node:crypto';
import { afterEach, expect, it } from 'vitest';
import { secondaryNode, startPrimary, waitFor } from './pair.js';

/** The primary's status reports the initial synchronisation's progress while it runs (`colo pair` prints it). */
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

it("a primary's status shows the pre-copy round and its pages sent during a synchronisation, and nothing after", async () => {
  const psk = randomBytes(32);
  const pages = 16384; // 64 MiB: a synchronisation long enough to be seen in flight
  const { guest, primary } = await startPrimary({ mode: 'colo', pages }, psk);
  const secondary = secondaryNode({ mode: 'colo' }, primary.listenUrl!, psk);
  stops.push(async () => {
    await secondary.stop();
    await primary.stop();
    guest.destroy();
    secondary.domain?.destroy();
  });
  expect(primary.status().sync).toBeNull();
  const seen: { round: number; pagesSent: number; totalPages: number; bytesSent: number; seconds: number }[] = [];
  let sampling = true;
  const sample = () => {
    const s = primary.status().sync;
    if (s) seen.push(s);
    if (sampling) setImmediate(sample);
  };
  sample();
  await secondary.start();
  await waitFor('protection', () => primary.status().protected);
  sampling = false;
  expect(seen.length, 'progress was seen while the pages were being sent').toBeGreaterThan(0);
  const round1 = seen.filter((s) => s.round === 1);
  expect(round1.length).toBeGreaterThan(0);
  for (const s of round1) {
    expect(s.totalPages).toBe(pages); // log-dirty starts with every page dirty: round 1 is the whole guest
    expect(s.pagesSent).toBeLessThanOrEqual(s.totalPages);
    expect(s.bytesSent).toBe(s.pagesSent * 4096);
    expect(s.seconds).toBeGreaterThanOrEqual(0);
  }
  // The round's clock only goes on (a rate and the time left follow from it: colo status prints them).
  for (let i = 1; i < round1.length; i++) expect(round1[i]!.seconds).toBeGreaterThanOrEqual(round1[i - 1]!.seconds);
  // Pages sent only go up within a round, and some progress was seen part-way.
  for (let i = 1; i < round1.length; i++) expect(round1[i]!.pagesSent).toBeGreaterThanOrEqual(round1[i - 1]!.pagesSent);
  expect(round1.some((s) => s.pagesSent > 0 && s.pagesSent < s.totalPages)).toBe(true);
  expect(primary.status().sync).toBeNull();
  expect(secondary.status().sync).toBeNull();
});
