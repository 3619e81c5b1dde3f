import { afterAll, describe, expect, test } from 'vitest';
import { RespClient, RespError } from '../packages/cli/src/client/resp-client.js';
import { waitServing } from './support/clients.js';
import { prng } from './support/ledger.js';
import { startPair, type TestPair } from './support/pair.js';

/**
 * Losing the SECONDARY never costs a client a reply, and delays none beyond the heartbeat timeout: clients issue
 * commands back to back (COLO with TIME among them, so output is often held for a miscompare checkpoint; Remus
 * with a 20 ms interval, so output is always held for an acknowledgement) while the secondary's process is
 * SIGKILLed (its sockets close at once) or SIGSTOPped (silent: only the heartbeat timeout tells) and then killed.
 * Every command must get its reply on the same connection, within timeout + margin; every INCR continues its
 * counter; and the supervisor's restarted node makes the pair protected again before the next round.
 * Ports: COLO 22400.., Remus 22500.. (service +0/+1, admin +2/+3, replication +4/+5).
 */
const HEARTBEAT_TIMEOUT_MS = 1000;
/** Scheduling on a shared two-core machine plus one checkpoint after the secondary is dropped. */
const MARGIN_MS = 750;
const pairs: TestPair[] = [];
afterAll(async () => {
  await Promise.all(pairs.map((p) => p.stop()));
});

interface ClientRun {
  latencies: number[];
  /** Commands slower than 500 ms: when they were sent and how long they took (for the failure message). */
  slow: string[];
  problems: string[];
  stop(): Promise<void>;
}

/** One client issuing SET / INCR / GET / TIME back to back, checking each reply, timing each command. */
async function runClient(port: number, id: number, timeShare: number, seed: number): Promise<ClientRun> {
  const c = await RespClient.connect('127.0.0.1', port, 5000);
  const rnd = prng(seed);
  const run: ClientRun = { latencies: [], slow: [], problems: [], stop: async () => {} };
  let stopping = false;
  let n = 0;
  const loop = (async () => {
    try {
      while (!stopping) {
        const r = rnd();
        const t0 = performance.now();
        if (r < timeShare) {
          const reply = await c.command('TIME');
          if (!Array.isArray(reply) || reply.length !== 2) run.problems.push(`TIME answered ${JSON.stringify(reply)}`);
        } else if (r < 0.5) {
          const v = `v${id}.${n}`;
          if ((await c.command('SET', `sk:${id}`, v)) !== 'OK') run.problems.push(`SET failed`);
          const got = await c.command('GET', `sk:${id}`);
          if (got !== v) run.problems.push(`GET sk:${id} answered ${JSON.stringify(got)} after SET ${v}`);
        } else {
          const reply = await c.command('INCR', `sn:${id}`);
          if (reply instanceof RespError || reply !== n + 1) run.problems.push(`INCR sn:${id} answered ${JSON.stringify(reply)}, expected ${n + 1}`);
          n++;
        }
        const ms = performance.now() - t0;
        run.latencies.push(ms);
        if (ms > 500) run.slow.push(`${new Date(Date.now() - ms).toISOString()} +${ms.toFixed(0)} ms (${r < timeShare ? 'TIME' : r < 0.5 ? 'SET/GET' : 'INCR'})`);
      }
    } catch (e) {
      run.problems.push(`client ${id} lost its connection or a reply: ${(e as Error).message}`);
    } finally {
      c.close();
    }
  })();
  run.stop = async () => {
    stopping = true;
    await loop;
  };
  return run;
}

/** Median latency of 7 sequential PINGs on a fresh connection. */
async function probeMedianMs(port: number): Promise<number> {
  const c = await RespClient.connect('127.0.0.1', port, 5000);
  try {
    const t: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      expect(await c.command('PING')).toBe('PONG');
      t.push(performance.now() - t0);
    }
    return t.sort((a, b) => a - b)[3]!;
  } finally {
    c.close();
  }
}

async function secondaryLosses(mode: 'colo' | 'remus', base: number): Promise<void> {
  const pair = await startPair({
    basePort: base,
    mode,
    extra: { heartbeat: { interval: '100ms', timeout: `${HEARTBEAT_TIMEOUT_MS}ms` }, checkpoint: { remus_interval: '20ms' } },
  });
  pairs.push(pair);
  await pair.waitProtected(60_000);
  const { index: primary, port } = await waitServing(pair);
  const rnd = prng(base);
  const clients = await Promise.all([0, 1, 2].map((i) => runClient(port, i, mode === 'colo' ? 0.05 : 0.02, base + i)));
  const rounds: string[] = [];
  /** Each round: median PING latency once (re-)protected. */
  const held: number[] = [];
  const ways = ['kill', 'kill', 'stop', 'kill', 'stop'] as const;
  try {
    for (const [round, way] of ways.entries()) {
      await pair.waitProtected(60_000);
      held.push(await probeMedianMs(port));
      await new Promise((r) => setTimeout(r, 200 + rnd() * 400));
      const victim = pair.sup.nodes[1 - primary].process;
      if (!victim) throw new Error(`round ${round}: the secondary has no process`);
      const t0 = Date.now();
      if (way === 'kill') victim.kill('SIGKILL');
      else {
        // A hung secondary: its sockets stay open and silent; the primary must notice by the heartbeat timeout.
        victim.kill('SIGSTOP');
        await new Promise((r) => setTimeout(r, HEARTBEAT_TIMEOUT_MS + 500));
        victim.kill('SIGKILL');
      }
      await pair.waitProtected(60_000);
      rounds.push(`${way} at ${new Date(t0).toISOString()}: re-protected after ${Date.now() - t0} ms`);
      const now = await waitServing(pair);
      expect(now.index, 'the primary stays primary when its secondary dies').toBe(primary);
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
  const latencies = clients.flatMap((c) => c.latencies).sort((a, b) => a - b);
  const max = latencies.at(-1)!;
  const p99 = latencies[Math.floor(latencies.length * 0.99)]!;
  console.log(`${mode}: ${latencies.length} commands over ${ways.length} secondary losses; latency p50 ${latencies[latencies.length >> 1]!.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max.toFixed(1)} ms; ${rounds.join('; ')}`);
  expect(clients.flatMap((c) => c.problems)).toEqual([]);
  expect(latencies.length).toBeGreaterThan(100);
  // Once re-protected, output flows as the mode says: Remus holds each reply for about one interval (20 ms) plus
  // a checkpoint (pass-through would answer in a fraction of a millisecond; a wrong epoch numbering for the new
  // secondary held replies for seconds); COLO releases matching replies at once.
  console.log(`${mode}: PING median once protected, per round: ${held.map((x) => x.toFixed(1)).join(', ')} ms`);
  for (const h of held) {
    if (mode === 'remus') {
      expect(h).toBeGreaterThan(2);
      expect(h).toBeLessThan(100);
    } else expect(h).toBeLessThan(20);
  }
  // The primary's metrics say the same (issue 24, item 9): every reply's hold time is in colo_output_hold_seconds
  // (most pass straight through while the pair re-protects; Remus holds each protected reply for an
  // acknowledgement, 20 ms apart), and each frozen secondary left a checkpoint under way that was abandoned
  // (Remus checkpoints every 20 ms, so one is always in flight when the heartbeat times out).
  const text = await (await fetch(`${pair.adminUrls[primary]}/metrics`)).text();
  const sample = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  const holds = sample(/^colo_output_hold_seconds_count ([\d.e+]+)$/m);
  const within = sample(/^colo_output_hold_seconds_bucket\{le="0\.0025"\} ([\d.e+]+)$/m);
  const aborts = [...text.matchAll(/^colo_checkpoint_aborts_total\{cause="(\w+)"\} ([\d.e+]+)$/gm)].map((m) => [m[1], Number(m[2])] as const);
  console.log(`${mode}: output holds ${holds} (${holds - within} longer than 2.5 ms); checkpoint aborts ${JSON.stringify(Object.fromEntries(aborts))}`);
  expect(holds).toBeGreaterThanOrEqual(latencies.length);
  if (mode === 'remus') {
    expect(holds - within).toBeGreaterThanOrEqual(50);
    expect(aborts.reduce((n, [, v]) => n + v, 0)).toBeGreaterThanOrEqual(ways.filter((w) => w === 'stop').length);
  }
  expect(max, `slow replies ${JSON.stringify(clients.flatMap((c) => c.slow))}; max reply latency ${max.toFixed(1)} ms vs heartbeat timeout ${HEARTBEAT_TIMEOUT_MS} ms + ${MARGIN_MS} ms; logs in ${pair.dir}`).toBeLessThan(HEARTBEAT_TIMEOUT_MS + MARGIN_MS);
}

describe('losing the secondary', () => {
  test('COLO: every reply arrives, none later than the heartbeat timeout; the pair re-protects', async () => {
    await secondaryLosses('colo', 22400);
  }, 240_000);

  test('Remus: every reply arrives, none later than the heartbeat timeout; the pair re-protects', async () => {
    await secondaryLosses('remus', 22500);
  }, 240_000);
});
