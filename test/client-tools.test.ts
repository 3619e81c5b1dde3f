import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { metricsCheckpoints, metricValue, redisBenchmark, redisCli, statusCheckpoints, waitServing } from './support/clients.js';
import { startPair, type TestPair } from './support/pair.js';

/**
 * The real Redis tools through a real protected pair (two `colo node` processes): redis-cli gets correct replies,
 * redis-benchmark completes without errors, and the checkpoints it causes are counted by reason on /status and
 * /metrics: in COLO, TIME (the guest's clock differs on the two nodes) causes 'miscompare' checkpoints, while
 * a SET/GET-only run causes none.
 * Ports: COLO pair 22000.., Remus pair 22100.. (service +0/+1, admin +2/+3, replication +4/+5).
 */

const coloBase = 22000;
const remusBase = 22100;

/** The commands every mode must answer exactly as Redis does. */
function checkReplies(port: number, prefix: string): void {
  expect(redisCli(port, 'SET', `${prefix}:k1`, 'hello')).toBe('OK');
  expect(redisCli(port, 'GET', `${prefix}:k1`)).toBe('hello');
  expect(redisCli(port, 'GET', `${prefix}:missing`)).toBe('');
  expect(redisCli(port, 'INCR', `${prefix}:n`)).toBe('1');
  expect(redisCli(port, 'INCR', `${prefix}:n`)).toBe('2');
  expect(redisCli(port, 'SET', `${prefix}:k2`, 'world')).toBe('OK');
  expect(redisCli(port, 'MGET', `${prefix}:k1`, `${prefix}:missing`, `${prefix}:k2`, `${prefix}:n`)).toBe('hello\n\nworld\n2');
  expect(redisCli(port, 'APPEND', `${prefix}:k1`, ', there')).toBe('12');
  expect(redisCli(port, 'GET', `${prefix}:k1`)).toBe('hello, there');
  expect(redisCli(port, 'INCR', `${prefix}:k1`)).toMatch(/^ERR value is not an integer/);
}

describe('COLO pair with redis-cli and redis-benchmark', () => {
  let pair: TestPair;
  beforeAll(async () => {
    pair = await startPair({ basePort: coloBase, mode: 'colo' });
    await pair.waitProtected(60_000);
  }, 90_000);
  afterAll(async () => {
    await pair?.stop();
  });

  test('redis-cli: SET/GET/INCR/MGET/APPEND answer correctly through the pair', async () => {
    const { port } = await waitServing(pair);
    checkReplies(port, 'colo');
  });

  test('SET/GET-only redis-benchmark causes no miscompare checkpoint; TIME causes one each', async () => {
    const { index, port } = await waitServing(pair);
    const admin = pair.adminUrls[index];
    const before = await statusCheckpoints(admin);
    const bench = await redisBenchmark(port, ['-t', 'set,get', '-n', '20000', '-q']);
    expect(Object.keys(bench.rps).sort()).toEqual(['GET', 'SET']);
    const afterSetGet = await statusCheckpoints(admin);
    // Both guests compute identical replies for SET/GET: nothing to checkpoint for.
    expect(afterSetGet.miscompare ?? 0, `checkpoints before ${JSON.stringify(before)} after ${JSON.stringify(afterSetGet)}`).toBe(before.miscompare ?? 0);
    // The secondary keeps only the input above the primary's delivered watermark (a batch at most), not the
    // 40,000 events since the last checkpoint.
    const retained = await metricValue(pair.adminUrls[index === 0 ? 1 : 0], 'colo_input_retained_events');
    expect(retained).toBeGreaterThanOrEqual(0);
    expect(retained).toBeLessThanOrEqual(100);

    // TIME reads each node's own clock: the replies differ, the pair checkpoints and releases the primary's.
    const times = 5;
    for (let i = 0; i < times; i++) {
      const [secs, micros] = redisCli(port, 'TIME').split('\n').map(Number);
      expect(Math.abs(secs! - Date.now() / 1000)).toBeLessThan(60);
      expect(micros).toBeGreaterThanOrEqual(0);
      expect(micros).toBeLessThan(1_000_000);
    }
    const afterTime = await statusCheckpoints(admin);
    const miscompares = (afterTime.miscompare ?? 0) - (afterSetGet.miscompare ?? 0);
    // One per TIME unless a periodic checkpoint happened to cover one first (the first reason wins).
    expect(miscompares, `checkpoints after TIME ${JSON.stringify(afterTime)}`).toBeGreaterThanOrEqual(times - 1);
    expect(miscompares).toBeLessThanOrEqual(times);
    // /metrics counts the same checkpoints as /status.
    const metrics = await metricsCheckpoints(admin);
    const now = await statusCheckpoints(admin);
    expect(metrics.miscompare).toBe(now.miscompare);
    expect(metrics.initial).toBe(now.initial);
    const out = (await (await fetch(`${admin}/status`)).json()) as { output: { compare: { miscompare: number; match: number } } };
    expect(out.output.compare.miscompare).toBeGreaterThanOrEqual(miscompares);
    expect(out.output.compare.match).toBeGreaterThan(40_000);
  }, 240_000);

  test('redis-benchmark -t set,get,incr -n 20000 completes with no errors; data is consistent afterwards', async () => {
    const { index, port } = await waitServing(pair);
    const before = await statusCheckpoints(pair.adminUrls[index]);
    const bench = await redisBenchmark(port, ['-t', 'set,get,incr', '-n', '20000', '-q']);
    expect(Object.keys(bench.rps).sort()).toEqual(['GET', 'INCR', 'SET']);
    for (const r of Object.values(bench.rps)) expect(r).toBeGreaterThan(0);
    // INCR is deterministic too: still no miscompare.
    const after = await statusCheckpoints(pair.adminUrls[index]);
    expect(after.miscompare ?? 0, `checkpoints before ${JSON.stringify(before)} after ${JSON.stringify(after)}`).toBe(before.miscompare ?? 0);
    console.log(`COLO pair redis-benchmark: ${JSON.stringify(bench.rps)} rps, p50 ${JSON.stringify(bench.p50)} ms`);
    // redis-benchmark's INCR test increments 'counter:__rand_int__' (one key without -r): 20000 acknowledged increments.
    expect(Number(redisCli(port, 'GET', 'counter:__rand_int__'))).toBeGreaterThanOrEqual(20_000);
  }, 240_000);
});

describe('Remus pair with redis-cli and redis-benchmark', () => {
  let pair: TestPair;
  beforeAll(async () => {
    // A short interval: every reply waits for the next acknowledged checkpoint.
    pair = await startPair({ basePort: remusBase, mode: 'remus', extra: { checkpoint: { remus_interval: '20ms' } } });
    await pair.waitProtected(60_000);
  }, 90_000);
  afterAll(async () => {
    await pair?.stop();
  });

  test('redis-cli: correct replies, TIME causes no miscompare (Remus does not compare)', async () => {
    const { index, port } = await waitServing(pair);
    checkReplies(port, 'remus');
    for (let i = 0; i < 3; i++) expect(redisCli(port, 'TIME').split('\n')).toHaveLength(2);
    const c = await statusCheckpoints(pair.adminUrls[index]);
    expect(c.miscompare ?? 0).toBe(0);
    expect(c.periodic ?? 0).toBeGreaterThan(0);
  });

  test('redis-benchmark -t set,get,incr -n 20000 completes with no errors; periodic checkpoints counted', async () => {
    const { index, port } = await waitServing(pair);
    const admin = pair.adminUrls[index];
    const before = await statusCheckpoints(admin);
    const bench = await redisBenchmark(port, ['-t', 'set,get,incr', '-n', '20000', '-q']);
    expect(Object.keys(bench.rps).sort()).toEqual(['GET', 'INCR', 'SET']);
    console.log(`Remus pair (20 ms) redis-benchmark: ${JSON.stringify(bench.rps)} rps, p50 ${JSON.stringify(bench.p50)} ms`);
    const after = await statusCheckpoints(admin);
    expect(after.periodic! - (before.periodic ?? 0)).toBeGreaterThan(0);
    expect(after.miscompare ?? 0).toBe(0);
    const metrics = await metricsCheckpoints(admin);
    expect(metrics.periodic).toBeGreaterThanOrEqual(after.periodic!);
    expect(Number(redisCli(port, 'GET', 'counter:__rand_int__'))).toBeGreaterThanOrEqual(20_000);
  }, 300_000);
});
