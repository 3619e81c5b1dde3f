/**
 * The time to recover (RTO) with each arbiter: three COLO pairs (two `colo node` processes each, as `colo pair`
 * runs them) with the `none`, `local` and `etcd` arbiters (a real single-member etcd on loopback), the same in
 * every other way. Each round SIGKILLs the primary of each pair in turn (rotating order) and times the kill to
 * the first SET the new primary acknowledges, from a client that dials the secondary's service port every
 * millisecond; the killed node rejoins as secondary before the next round. The baseline is the `none` pair in
 * the same run (its RTO is the takeover without any arbiter round trip). Also reported: the arbiter's own
 * decision time on that path (the new primary's /status: arbiter.lastDecision.seconds).
 * Target (issue 20): the etcd arbiter adds at most 20 ms to the RTO (median against median).
 *
 * Needs a build and the tools (`npm run tools`: etcd). Run alone: `npx tsx --conditions=@colo/source bench/run.ts failover`.
 */
import { RespClient } from '../packages/cli/src/client/resp-client.js';
import { getStatus } from '../packages/cli/src/client/admin-client.js';
import { startEtcd } from '../test/support/etcd.js';
import { median, type BenchRow, type BenchSuite } from './harness.js';
import { startPair } from './pair.js';

/** Kill rounds per arbiter (COLO_BENCH_FAILOVERS). */
const ROUNDS = Number(process.env.COLO_BENCH_FAILOVERS ?? 9);
/** Ports 23100..23129 (bench pair 22800.., ab-pair 23000..). */
const BASES = { none: 23100, local: 23110, etcd: 23120 } as const;
const TARGET_ADDED_MS = 20;
type Kind = keyof typeof BASES;

/** Kill to the first acknowledged SET on `port` (ms); throws after 30 s. */
async function timeToServe(port: number, killedAt: number): Promise<number> {
  const deadline = killedAt + 30_000;
  for (;;) {
    try {
      const c = await RespClient.connect('127.0.0.1', port, 1000);
      try {
        if ((await c.command('SET', 'rto', String(killedAt))) === 'OK') return performance.now() - killedAt;
      } finally {
        c.close();
      }
    } catch {
      // not serving yet (refused: still a secondary, or the service not open)
    }
    if (performance.now() > deadline) throw new Error(`no primary served on ${port} within 30 s of the kill`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const suite: BenchSuite = {
  name: 'failover: RTO by arbiter (SIGKILL of the primary, COLO, 16 MiB guest)',
  async run(log) {
    const etcd = await startEtcd();
    const pairs = {} as Record<Kind, Awaited<ReturnType<typeof startPair>>>;
    try {
      for (const kind of Object.keys(BASES) as Kind[]) {
        pairs[kind] = await startPair(BASES[kind], 'colo', {}, undefined, { arbiter: kind, etcd: kind === 'etcd' ? etcd.endpoint : undefined });
      }
      const rto: Record<Kind, number[]> = { none: [], local: [], etcd: [] };
      const decision: Record<Kind, number[]> = { none: [], local: [], etcd: [] };
      const kinds = Object.keys(BASES) as Kind[];
      for (let round = 0; round < ROUNDS; round++) {
        for (let j = 0; j < kinds.length; j++) {
          const kind = kinds[(round + j) % kinds.length]!;
          const { sup } = pairs[kind];
          const { primary, secondary } = await protectedPair(sup, 60_000);
          const victim = sup.nodes[primary].process!;
          const killedAt = performance.now();
          victim.kill('SIGKILL');
          const ms = await timeToServe(sup.nodes[secondary].service.port, killedAt);
          rto[kind].push(ms);
          const s = await getStatus(sup.nodes[secondary].adminUrl, 2000);
          const d = (s.arbiter as { lastDecision?: { purpose: string; seconds: number } } | undefined)?.lastDecision;
          if (d?.purpose === 'promote') decision[kind].push(d.seconds * 1000);
          log(`round ${round + 1} ${kind}: RTO ${ms.toFixed(1)} ms (arbiter ${d?.purpose === 'promote' ? `${(d.seconds * 1000).toFixed(2)} ms` : 'n/a'})`);
        }
      }
      const base = median(rto.none);
      const rows: BenchRow[] = [];
      for (const kind of kinds) {
        const m = median(rto[kind]);
        const row: BenchRow = { name: `RTO, arbiter ${kind} (median of ${ROUNDS})`, value: m, unit: 'ms', baseline: `arbiter none ${base.toFixed(1)} ms`, ratio: m / base };
        if (kind !== 'none') {
          row.target = `adds <= ${TARGET_ADDED_MS} ms (adds ${(m - base).toFixed(1)} ms)`;
          row.met = m - base <= TARGET_ADDED_MS;
        }
        rows.push(row);
      }
      for (const kind of ['local', 'etcd'] as const) {
        rows.push({ name: `arbiter decision on the takeover, ${kind} (median)`, value: median(decision[kind]), unit: 'ms', baseline: `RTO ${kind} ${median(rto[kind]).toFixed(1)} ms`, ratio: median(decision[kind]) / median(rto[kind]) });
      }
      return rows;
    } finally {
      for (const p of Object.values(pairs)) await p.sup.stop();
      await etcd.destroy();
    }
  },
};

/** Waits until one node is a protected primary and the other its synchronised secondary. */
async function protectedPair(sup: Awaited<ReturnType<typeof startPair>>['sup'], timeoutMs: number): Promise<{ primary: 0 | 1; secondary: 0 | 1 }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await sup.statuses();
    const i = all.findIndex((s) => s?.role === 'primary' && s.protected);
    if (i >= 0 && all[1 - i]?.role === 'secondary' && all[1 - i]?.protected && sup.nodes[i]!.process) return { primary: i as 0 | 1, secondary: (1 - i) as 0 | 1 };
    if (Date.now() > deadline) throw new Error(`pair not protected within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export default suite;
