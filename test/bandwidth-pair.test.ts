import { afterAll, beforeAll, expect, test } from 'vitest';
import { runColo } from './support/cli.js';
import { redisCli, waitServing } from './support/clients.js';
import { startPair, type TestPair } from './support/pair.js';

/**
 * replication.max_bandwidth end to end: two `colo node` processes whose configs limit the replication stream to
 * 16 MiB/s. A 64 MiB guest's synchronisation then takes at least 4 s (the limit reached the node from its
 * config); after the primary is killed the survivor serves at once (the limit is on the stream, not on
 * takeovers) and the restarted node is synchronised again under the same limit.
 * Ports 21640.. (service +0/+1, admin +2/+3, replication +4/+5).
 */
const LIMIT_MIB = 16;
const MEMORY_MIB = 64;
let pair: TestPair;
let firstSyncMs = 0;
/** `colo status`'s sync line for the primary, seen during the first synchronisation. */
let syncLine = '';

beforeAll(async () => {
  const t0 = Date.now();
  pair = await startPair({ basePort: 21640, mode: 'remus', memory: `${MEMORY_MIB}MiB`, extra: { replication: { max_bandwidth: `${LIMIT_MIB}MiB` } } });
  // While the synchronisation runs (about 4 s under the limit), `colo status` says how far it is.
  for (const deadline = Date.now() + 30_000; !syncLine && Date.now() < deadline; ) {
    const st = await runColo(['status', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1]]);
    syncLine = /^ {2}sync {8}.*$/m.exec(st.stdout)?.[0] ?? '';
    // A first look before the primary has sent a page has no rate yet: look again.
    if (!/MiB\/s/.test(syncLine)) syncLine = '';
  }
  await pair.waitProtected(60_000);
  firstSyncMs = Date.now() - t0;
}, 90_000);

afterAll(async () => {
  await pair?.stop();
});

test('colo status shows the synchronisation as it runs: pages and bytes of the total, the rate, the time left', () => {
  const m = /^ {2}sync {8}pre-copy round 1: ([\d,]+) of 16,384 pages \((\d+) of 64 MiB\), (\d+) MiB\/s, about (\d+ s|under a second) left$/.exec(syncLine);
  expect(m, syncLine).not.toBe(null);
  expect(Number(m![1]!.replaceAll(',', ''))).toBeLessThan(16_384);
  // The rate is the stream's, under its 16 MiB/s limit (a little above it at first: the limiter's first burst).
  expect(Number(m![3])).toBeLessThanOrEqual(LIMIT_MIB * 1.5);
});

test('a pair under a bandwidth limit synchronises no faster than the limit, fails over, and re-protects under it', async () => {
  const floorMs = (MEMORY_MIB / LIMIT_MIB) * 1000 * 0.95;
  expect(firstSyncMs).toBeGreaterThanOrEqual(floorMs);
  const { index, port } = await waitServing(pair);
  expect(redisCli(port, 'SET', 'limited', 'yes')).toBe('OK');
  pair.sup.nodes[index].process!.kill('SIGKILL');
  const survivor = await waitServing(pair, 30_000, index);
  expect(redisCli(survivor.port, 'GET', 'limited')).toBe('yes');
  const t0 = Date.now();
  const back = await pair.waitProtected(90_000);
  const reprotectMs = Date.now() - t0;
  console.log(`under ${LIMIT_MIB} MiB/s: first synchronisation ${firstSyncMs} ms, re-protection after the kill ${reprotectMs} ms (floor ${floorMs.toFixed(0)} ms)`);
  expect(back.index).toBe(survivor.index);
  expect(reprotectMs).toBeGreaterThanOrEqual(floorMs - 1000);
  // Checkpoints go on under the limit, and status reports them.
  const before = back.status.checkpoints?.periodic ?? 0;
  await new Promise((r) => setTimeout(r, 1000));
  const { status } = await pair.waitProtected(5_000);
  expect(status.checkpoints?.periodic ?? 0).toBeGreaterThan(before);
}, 180_000);
