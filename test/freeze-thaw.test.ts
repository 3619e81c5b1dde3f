import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EtcdArbiter } from '@colo/coordinator';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { Ledger, prng, readAll } from './support/ledger.js';
import { PinnedClients } from './support/pinned-clients.js';
import { startEtcd, type EtcdServer } from './support/etcd.js';
import { startPair, type TestPair } from './support/pair.js';

/**
 * Issue 20 (a, b), no split brain on the one-host pair: the README's `colo pair` with its default `local` arbiter
 * (both modes) and with the `etcd` arbiter (a real etcd on loopback, COLO mode),
 * four clients pinned to the two service addresses (two each) writing SET/INCR with TIME, and a node frozen with
 * SIGSTOP past the heartbeat timeout (1 s) and thawed, round after round, the primary or the secondary. A frozen
 * primary's secondary wins the next epoch and takes over; the thawed old primary asks for the same epoch, loses,
 * releases nothing more and leaves (the supervisor re-adds it as a secondary). A frozen secondary loses to the
 * primary, which continues. After each round, once the pair is protected again, every acknowledged write must
 * read back from the primary, and the nodes' logs must show one winner per epoch.
 * Replay with COLO_FREEZE_SEED. Ports: local COLO 22600.., local Remus 22700.., etcd COLO 21400.. (service +0/+1,
 * admin +2/+3, replication +4/+5; etcd on free ports).
 */
const SEED = Number(process.env.COLO_FREEZE_SEED ?? Date.now() % 1_000_000);
/** `none` instead of `local` shows what the arbiter prevents (this test then fails: writes lost, epochs won twice). */
const LOCAL = (process.env.COLO_FREEZE_ARBITER ?? 'local') as 'local' | 'none';
const FREEZE_MS = 3000;
/** Which node each round freezes. */
const ROUNDS: ('primary' | 'secondary')[] = ['primary', 'secondary', 'primary', 'primary', 'secondary', 'primary'];

const pairs: TestPair[] = [];
let etcd: EtcdServer | undefined;
beforeAll(async () => {
  etcd = await startEtcd();
}, 60_000);
afterAll(async () => {
  for (const p of pairs) await p.stop();
  await etcd?.destroy();
});

describe.each([
  ['colo', LOCAL, 22600],
  ['remus', LOCAL, 22700],
  ['colo', 'etcd', 21400],
] as const)('%s pair with the %s arbiter', (mode, arbiter, base) => {
  test(`${ROUNDS.length} freezes of ${FREEZE_MS} ms lose no acknowledged write (seed ${SEED})`, async () => {
    const pair = await startPair({ basePort: base, mode, arbiter, etcd: arbiter === 'etcd' ? etcd!.endpoint : undefined, memory: '16MiB', extra: mode === 'remus' ? { checkpoint: { remus_interval: '20ms' } } : {} });
    pairs.push(pair);
    await pair.waitProtected(60_000);
    const rnd = prng(SEED);
    const ledger = new Ledger();
    const ports = pair.sup.nodes.map((n) => n.service.port);
    const clients = new PinnedClients(ledger, { clients: 4, timeShare: 0.05, keysPerClient: 40, ports }, rnd);
    const report: string[] = [];
    const problems: string[] = [];
    clients.start();
    try {
      for (const [r, victimRole] of ROUNDS.entries()) {
        const round = r + 1;
        const before = await pair.waitProtected(60_000);
        const runMs = 300 + rnd() * 700;
        await sleep(runMs);
        const victim = victimRole === 'primary' ? before.index : ((1 - before.index) as 0 | 1);
        const proc = pair.sup.nodes[victim].process;
        if (!proc || proc.exitCode !== null) throw new Error(`round ${round}: ${pair.sup.nodes[victim].id} has no live process`);
        const acknowledgedBefore = ledger.acknowledged;
        clients.markOutage();
        const frozenAt = Date.now();
        proc.kill('SIGSTOP');
        try {
          await sleep(FREEZE_MS);
        } finally {
          proc.kill('SIGCONT');
        }
        // The pair heals by itself: the loser leaves and rejoins as a secondary.
        const after = await pair.waitProtected(60_000);
        const healedMs = Date.now() - frozenAt;
        await clients.stop(15_000);
        const keys = ledger.keys();
        const lost = ledger.verify(await readAll(after.status.service!.port, keys));
        problems.push(...clients.problems.splice(0).map((p) => `round ${round}: ${p}`), ...lost.map((p) => `round ${round}: lost ${p}`));
        const primaryAfter = pair.sup.nodes[after.index].id;
        report.push(
          `round ${round}: froze the ${victimRole} ${pair.sup.nodes[victim].id} for ${FREEZE_MS} ms after ${runMs.toFixed(0)} ms; ` +
            `primary now ${primaryAfter} (epoch ${after.status.epoch}); unavailable ${clients.outageMs() ?? 'n/a'} ms; protected again after ${healedMs} ms; ` +
            `${ledger.acknowledged - acknowledgedBefore} writes acknowledged in the round, ${lost.length} lost, ${keys.length} keys verified`,
        );
        // Who serves afterwards is what the arbiter decided: the frozen primary's secondary, or the primary.
        if (victimRole === 'primary') expect(after.index, report.at(-1)).not.toBe(victim);
        else expect(after.index, report.at(-1)).toBe(before.index);
        if (problems.length > 0) break;
        clients.start();
      }
    } finally {
      await clients.stop(15_000).catch((e: Error) => problems.push(e.message));
    }
    const wins = epochWinners(pair);
    const summary = `${mode} with ${arbiter}, seed ${SEED}: ${ledger.acknowledged} writes acknowledged, ${clients.stats.commands} commands (${clients.stats.times} TIME), ${clients.stats.reconnects} reconnects; epochs won: ${JSON.stringify(wins.byEpoch)}; logs in ${pair.dir}`;
    console.log(`${report.join('\n')}\n${summary}`);
    expect(problems, summary).toEqual([]);
    expect(wins.doubles, summary).toEqual([]);
    expect(report).toHaveLength(ROUNDS.length);
    expect(ledger.acknowledged).toBeGreaterThan(ROUNDS.length * 50);
    // Every round changed the epoch once (one winner) and the arbiter's record agrees with the nodes.
    const status = await Promise.all(pair.adminUrls.map((u) => getStatus(u, 2000)));
    const record = arbiter === 'etcd' ? await etcdRecord(pair) : pair.sup.arbiterRecord();
    expect(record?.epoch).toBe(Math.max(...status.map((s) => s.epoch)));
    expect(record?.epoch).toBeGreaterThanOrEqual(ROUNDS.length);
  }, 400_000);
});

/**
 * The decisions each node logged (`arbiter: <purpose> at epoch N won|lost`): winners by epoch, and every epoch
 * that two nodes both won (a split brain: must be empty).
 */
function epochWinners(pair: TestPair): { byEpoch: Record<number, string>; doubles: string[] } {
  const byEpoch: Record<number, string> = {};
  const doubles: string[] = [];
  for (const n of pair.sup.nodes) {
    for (const line of readFileSync(join(pair.dir, `node-${n.name}.log`), 'utf8').split('\n')) {
      if (!line.includes('"arbiter: ')) continue;
      const e = JSON.parse(line) as { purpose: string; epoch: number; won: boolean };
      if (!e.won || e.purpose === 'protect') continue;
      const winner = byEpoch[e.epoch];
      if (winner !== undefined && winner !== n.id) doubles.push(`epoch ${e.epoch} won by ${winner} and by ${n.id} (${e.purpose})`);
      byEpoch[e.epoch] = n.id;
    }
  }
  return { byEpoch, doubles };
}

/** The pair's record in the test's etcd, read as a node reads it. */
async function etcdRecord(pair: TestPair): Promise<{ epoch: number; holder: string } | null> {
  const a = new EtcdArbiter({ endpoints: [etcd!.endpoint], pair: pair.sup.etcdPairName! });
  try {
    return await a.read();
  } finally {
    await a.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
