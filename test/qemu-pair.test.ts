import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sweepLeftovers } from '@colo/qemu';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { redisBenchmark, redisCli, waitServing } from './support/clients.js';
import { runKills } from './support/ledger.js';
import { startPair, type TestPair } from './support/pair.js';
import { runColo } from './support/cli.js';
import { tool } from './support/tools.js';

/**
 * Issue 21, a real guest: `colo pair --guest qemu` as `colo node` processes, each protecting a QEMU virtual
 * machine (Debian's kernel, busybox, a real redis-server; TCG here) in Remus mode. redis-cli and redis-benchmark
 * reach the guest's redis through colo's service listener; then the ledger: the primary's colo process is
 * SIGKILLed (its QEMU dies with it), the secondary starts its QEMU from the last acknowledged checkpoint and
 * serves, every acknowledged write reads back, and the killed node rejoins as secondary. Then the primary's QEMU
 * alone is killed, and frozen (SIGSTOP) past the heartbeat timeout, half of the times in the middle of a checkpoint.
 * Ports: 21500.. (service +0/+1, admin +2/+3, replication +4/+5), the guests' forwards 21510/21511.
 */
const BASE = 21500;
const KILLS = Number(process.env.COLO_QEMU_KILLS ?? 3);
const SEED = Number(process.env.COLO_QEMU_SEED ?? Date.now() % 1_000_000);
let pair: TestPair;

beforeAll(async () => {
  pair = await startPair({
    basePort: BASE,
    mode: 'remus',
    memory: '128MiB',
    // Every reply waits for the next checkpoint: a short interval keeps the clients' round trips short.
    extra: { checkpoint: { remus_interval: '50ms' } },
    qemu: { kernel: tool('GUEST_KERNEL'), initrd: tool('GUEST_INITRD'), accel: 'tcg', forwardPort: BASE + 10 },
  });
  await pair.waitProtected(180_000);
}, 240_000);

afterAll(async () => {
  await pair?.stop();
  // A node killed by a round (SIGKILL: no cleanup of its own) leaves its guest's RAM file; its QEMU died with it.
  sweepLeftovers('/dev/shm');
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith('colo-qemu-'))).toEqual([]);
});

/** The pid of the QEMU under a node's process (setpriv execs it: it is the node's direct child). */
function qemuOf(p: TestPair, i: 0 | 1): number {
  const node = p.sup.nodes[i].process!.pid!;
  const qemu = execFileSync('pgrep', ['-P', String(node), '-f', 'qemu-system'], { encoding: 'utf8' }).trim().split('\n')[0];
  if (!qemu) throw new Error(`no QEMU under node process ${node}`);
  return Number(qemu);
}

test('redis-cli and redis-benchmark through a protected QEMU pair reach the real redis-server in the guest', async () => {
  const { port } = await waitServing(pair);
  expect(redisCli(port, 'SET', 'greeting', 'hello from a protected VM')).toBe('OK');
  expect(redisCli(port, 'GET', 'greeting')).toBe('hello from a protected VM');
  // The guest's own kernel answers: this is no simulated guest.
  expect(redisCli(port, 'INFO', 'server')).toMatch(/os:Linux 6\.1\.\d+-\d+-cloud-amd64/);
  // Fifty clients connect at once: colo connects them to the guest a few at a time (QEMU's user networking drops
  // part of such a burst).
  const bench = await redisBenchmark(port, ['-t', 'set,get', '-n', '1000', '-c', '50', '-q'], 150_000);
  expect(bench.rps.SET).toBeGreaterThan(0);
  expect(bench.rps.GET).toBeGreaterThan(0);
  console.log(`redis-benchmark through the protected QEMU pair (Remus every 50 ms, TCG, 50 clients): ${JSON.stringify(bench.rps)} requests/s`);
  // Page deltas and the device state's delta (on by default): a checkpoint is a small fraction of its ~600 KB of
  // device state and its pages whole.
  const { status } = await pair.primary();
  console.log(`last checkpoint: ${status.lastCheckpoint!.pages} pages in ${status.lastCheckpoint!.bytes} bytes`);
  expect(status.lastCheckpoint!.bytes).toBeLessThan(200 * 1024);
}, 180_000);

test(`${KILLS} SIGKILLs of the primary lose no acknowledged write (seed ${SEED})`, async () => {
  const lines: string[] = [];
  const r = await runKills(pair, {
    kills: KILLS,
    seed: SEED,
    workload: { clients: 4, timeShare: 0, keysPerClient: 30 },
    runMs: [1500, 3000],
    checkpointKillShare: 0.3,
    checkpointKillDelayMs: 20,
    log: (l) => lines.push(l),
  });
  const summary = `seed ${SEED}; ${r.kills} kills, ${r.commands} commands, ${r.acknowledged} acknowledged writes, ${r.verifiedKeys} key reads verified; RTO ms ${JSON.stringify(r.rtoMs)}; re-protect ms ${JSON.stringify(r.reprotectMs)}; logs in ${pair.dir}`;
  console.log(`${lines.join('\n')}\n${summary}`);
  expect(r.problems, summary).toEqual([]);
  expect(r.kills).toBe(KILLS);
  expect(r.acknowledged).toBeGreaterThan(KILLS * 10);
  await pair.waitProtected(180_000);
}, 900_000);

test('a primary whose QEMU dies (SIGKILL of QEMU alone) stops, and the secondary takes over: no acknowledged write lost', async () => {
  // A fresh ledger: the keys the test before wrote are not this one's to check.
  const { port } = await waitServing(pair);
  expect(redisCli(port, 'FLUSHALL')).toBe('OK');
  const lines: string[] = [];
  const r = await runKills(pair, {
    kills: 2,
    seed: SEED + 1,
    workload: { clients: 4, timeShare: 0, keysPerClient: 30 },
    runMs: [1500, 3000],
    checkpointKillShare: 0.5,
    checkpointKillDelayMs: 20,
    // The guest's process, not colo's.
    kill: (p, i) => process.kill(qemuOf(p, i), 'SIGKILL'),
    log: (l) => lines.push(l),
  });
  const summary = `${r.kills} QEMU kills, ${r.acknowledged} acknowledged writes; RTO ms ${JSON.stringify(r.rtoMs)}; logs in ${pair.dir}`;
  console.log(`${lines.join('\n')}\n${summary}`);
  expect(r.problems, summary).toEqual([]);
  expect(r.kills).toBe(2);
  await pair.waitProtected(180_000);
}, 600_000);

test('a primary whose QEMU freezes (SIGSTOP) past the heartbeat timeout steps down, and the secondary takes over: no acknowledged write lost', async () => {
  const { port } = await waitServing(pair);
  expect(redisCli(port, 'FLUSHALL')).toBe('OK');
  const lines: string[] = [];
  const frozen: number[] = [];
  try {
    const r = await runKills(pair, {
      kills: 2,
      seed: SEED + 2,
      workload: { clients: 4, timeShare: 0, keysPerClient: 30 },
      runMs: [1500, 3000],
      // Half the freezes land right after a requested checkpoint, in its middle.
      checkpointKillShare: 0.5,
      checkpointKillDelayMs: 20,
      // The node's process runs on and heartbeats; only its guest stops. The next checkpoint's QMP command times
      // out (5 s), the node steps down (COLO_GUEST_LOST, no arbiter asked) and its exit takes the frozen QEMU
      // with it (pdeathsig: SIGKILL ends a stopped process too).
      kill: (p, i) => {
        const pid = qemuOf(p, i);
        frozen.push(pid);
        process.kill(pid, 'SIGSTOP');
      },
      log: (l) => lines.push(l),
    });
    const summary = `${r.kills} QEMU freezes (${r.checkpointKills} mid-checkpoint), ${r.acknowledged} acknowledged writes; RTO ms ${JSON.stringify(r.rtoMs)}; logs in ${pair.dir}`;
    console.log(`${lines.join('\n')}\n${summary}`);
    expect(r.problems, summary).toEqual([]);
    expect(r.kills).toBe(2);
    // Found by the checkpoint's deadline, not by luck: no takeover before the QMP timeout.
    for (const ms of r.rtoMs) expect(ms).toBeGreaterThan(4_000);
    await pair.waitProtected(180_000);
    // The frozen guests are gone with their nodes: nothing stopped is left running.
    for (const pid of frozen) expect(() => process.kill(pid, 0)).toThrow();
  } finally {
    for (const pid of frozen) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}, 600_000);

test('colo drill works unchanged against a QEMU pair: crash, takeover, every key verified, re-protected', async () => {
  await pair.waitProtected(180_000);
  const r = await runColo(
    ['drill', '--node', pair.adminUrls[0], '--node', pair.adminUrls[1], '--token-file', join(pair.dir, 'admin-token'), '--keys', '200', '--json', '--failover-timeout', '20', '--reprotect-timeout', '120'],
    240_000,
  );
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  const report = JSON.parse(r.stdout) as { ok: boolean; rtoSeconds?: number; ledger: { acknowledged: number; verified: number; missing: unknown[]; wrong: unknown[] } };
  expect(report.ok).toBe(true);
  expect(report.ledger.missing).toEqual([]);
  expect(report.ledger.wrong).toEqual([]);
  expect(report.ledger.verified).toBe(report.ledger.acknowledged);
  console.log(`colo drill on the QEMU pair: RTO ${report.rtoSeconds} s, ${report.ledger.verified} keys verified`);
}, 300_000);
