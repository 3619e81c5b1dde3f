import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEtcd } from './support/etcd.js';
import { prng } from './support/ledger.js';
import { ClientWorker, LedgerFeed, type WorkloadSpec } from './support/netns-client-worker.js';
import { aloneIntervals, NetnsPair, splitBrains } from './support/netns-pair.js';
import { createLab, type Lab } from './support/netns.js';

/**
 * Issue 20, "no split brain": two colo nodes in two network namespaces (hosts a, b), a real etcd in a third
 * (e), clients in a fourth (c). For both modes, each fault in turn runs while a ledger of acknowledged writes is
 * kept (ledger.ts rules); after each fault heals, every acknowledged write must read back from the surviving
 * primary, the pair must be protected again, and the nodes' own logs must show no two nodes releasing output
 * alone in one epoch, nor at one moment.
 *
 * The control at the end runs the frozen-primary fault with the `none` arbiter and expects the harness to see
 * lost writes and two nodes releasing output alone: if it did not, the matrix would be blind. Replay a run with
 * COLO_FAULT_SEED. Addresses: 10.200.0.1 (a), .2 (b), .3 (e), .4 (c), inside the lab's namespaces only.
 */
const SEED = Number(process.env.COLO_FAULT_SEED ?? Date.now() % 1_000_000);

const HOLD_MS = 5000;
const FREEZE_MS = 3000;
const PROTECTED_RUN_MS = 2000;
const REPROTECT_TIMEOUT_MS = 60_000;
/** Two primaries this long after the heal: a split brain the pair does not resolve by itself. */
const TWO_PRIMARIES_MS = 15_000;

interface FaultContext {
  lab: Lab;
  pair: NetnsPair;
  worker: ClientWorker;
  etcd: Awaited<ReturnType<typeof startEtcd>>;
  primary: 0 | 1;
  secondary: 0 | 1;
  rnd: () => number;
  /** Records a step of the fault's schedule (printed with the report). */
  step: (what: string) => void;
}

interface Fault {
  name: string;
  /** Applies the fault, holds it, and heals it. */
  run(ctx: FaultContext): Promise<void>;
}

const host = (ctx: FaultContext, i: 0 | 1) => ctx.pair.nodes[i].host;

/** Kills a node right after POST /checkpoint reached the worker's socket: inside the checkpoint it started. */
async function killAfterCheckpoint(ctx: FaultContext, victim: 0 | 1): Promise<void> {
  const { sent, answered } = ctx.worker.post(ctx.pair.nodes[ctx.primary].adminUrl, 'checkpoint', ctx.pair.token);
  answered.catch(() => {});
  await sent;
  const delay = ctx.rnd() * 5;
  await sleep(delay);
  ctx.pair.kill(victim, 'SIGKILL');
  ctx.step(`SIGKILL ${ctx.pair.nodes[victim].id} ${delay.toFixed(1)} ms after POST /checkpoint to ${ctx.pair.nodes[ctx.primary].id}`);
  // No hold: a kill is over at once, and the time to a protected pair again counts from it.
}

const FAULTS: Fault[] = [
  {
    name: 'partition a|b, both still reach etcd and clients',
    async run(ctx) {
      await ctx.lab.cut(host(ctx, 0), host(ctx, 1), { direction: 'both' });
      ctx.step(`cut ${ctx.lab.cuts().join(', ')}`);
      await sleep(HOLD_MS);
      await ctx.lab.heal();
      ctx.step('healed');
    },
  },
  {
    name: 'primary cut from everything',
    async run(ctx) {
      await ctx.lab.isolate(host(ctx, ctx.primary));
      ctx.step(`isolated ${ctx.pair.nodes[ctx.primary].id}: ${ctx.lab.cuts().join(', ')}`);
      await sleep(HOLD_MS);
      await ctx.lab.heal();
      ctx.step('healed');
    },
  },
  {
    name: 'secondary cut from everything',
    async run(ctx) {
      await ctx.lab.isolate(host(ctx, ctx.secondary));
      ctx.step(`isolated ${ctx.pair.nodes[ctx.secondary].id}: ${ctx.lab.cuts().join(', ')}`);
      await sleep(HOLD_MS);
      await ctx.lab.heal();
      ctx.step('healed');
    },
  },
  {
    name: `primary frozen ${FREEZE_MS / 1000} s (past the 1 s heartbeat timeout), then thawed`,
    async run(ctx) {
      ctx.pair.freeze(ctx.primary);
      ctx.step(`SIGSTOP ${ctx.pair.nodes[ctx.primary].id}`);
      await sleep(FREEZE_MS);
      ctx.pair.thaw(ctx.primary);
      ctx.step(`SIGCONT ${ctx.pair.nodes[ctx.primary].id}`);
      await sleep(HOLD_MS - FREEZE_MS);
    },
  },
  {
    name: `secondary frozen ${FREEZE_MS / 1000} s, then thawed`,
    async run(ctx) {
      ctx.pair.freeze(ctx.secondary);
      ctx.step(`SIGSTOP ${ctx.pair.nodes[ctx.secondary].id}`);
      await sleep(FREEZE_MS);
      ctx.pair.thaw(ctx.secondary);
      ctx.step(`SIGCONT ${ctx.pair.nodes[ctx.secondary].id}`);
      await sleep(HOLD_MS - FREEZE_MS);
    },
  },
  {
    name: 'etcd stopped while protected, then partition a|b, then etcd back, then heal',
    async run(ctx) {
      await ctx.etcd.stop();
      ctx.step('etcd stopped');
      await sleep(1500);
      await ctx.lab.cut(host(ctx, 0), host(ctx, 1), { direction: 'both' });
      ctx.step(`cut ${ctx.lab.cuts().join(', ')}`);
      await sleep(HOLD_MS);
      await ctx.etcd.restart();
      ctx.step('etcd back');
      await sleep(3000);
      await ctx.lab.heal();
      ctx.step('healed');
    },
  },
  {
    name: 'SIGKILL of the primary right after POST /checkpoint',
    run: (ctx) => killAfterCheckpoint(ctx, ctx.primary),
  },
  {
    name: 'SIGKILL of the secondary right after POST /checkpoint',
    run: (ctx) => killAfterCheckpoint(ctx, ctx.secondary),
  },
];

interface FaultReport {
  mode: string;
  fault: string;
  seed: number;
  schedule: string[];
  acknowledged: number;
  acknowledgedBy: number[];
  lost: string[];
  /** Longest time without an acknowledged write from the fault's start to the workload's stop. */
  unavailableMs: number;
  /** From the end of the fault (the heal, the thaw's hold, the kill) to a protected pair again (undefined: not within the timeout). */
  reprotectMs?: number;
  notProtected?: string;
  splitBrain: string[];
  /** Seen while running: a GET contradicting the last acknowledged SET, an INCR going backwards, a wrong answer. */
  anomalies: string[];
  survivor: string;
  repair?: string;
}

const reports: FaultReport[] = [];
let lab: Lab;
let worker: ClientWorker;
let etcd: Awaited<ReturnType<typeof startEtcd>>;

beforeAll(async () => {
  lab = await createLab('fault-matrix');
  worker = new ClientWorker(lab, 'c');
  etcd = await startEtcd({ netns: lab.hosts.e!.ns, host: lab.addr('e') });
}, 60_000);

afterAll(async () => {
  worker?.close();
  await etcd?.destroy().catch(() => {});
  await lab?.destroy();
  console.log(summary());
});

function summary(): string {
  const lines = [
    `fault matrix, seed ${SEED}, arbiter: etcd (${etcd?.endpoint}) unless the mode says none`,
    'mode  | # | acked (a/b)       | lost | unavail ms | reprotect ms | split brain | anomalies | fault',
  ];
  reports.forEach((r) => {
    const i = FAULTS.findIndex((f) => f.name === r.fault) + 1;
    lines.push(
      `${r.mode.padEnd(5)} | ${i} | ${String(r.acknowledged).padStart(5)} (${r.acknowledgedBy.join('/')})`.padEnd(32) +
        ` | ${String(r.lost.length).padStart(4)} | ${String(r.unavailableMs).padStart(10)} | ${String(r.reprotectMs ?? 'never').padStart(12)} | ${String(r.splitBrain.length).padStart(11)} | ${String(r.anomalies.length).padStart(9)} | ${r.fault}`,
    );
  });
  return lines.join('\n');
}

function describeReport(r: FaultReport, pair: NetnsPair): string {
  const few = (xs: string[]) => (xs.length === 0 ? 'none' : `${xs.length}: ${xs.slice(0, 5).join(' | ')}${xs.length > 5 ? ' | ...' : ''}`);
  return [
    `[${r.mode}] ${r.fault} (seed ${r.seed})`,
    `  schedule: ${r.schedule.join('; ')}`,
    `  acknowledged ${r.acknowledged} writes (node-a ${r.acknowledgedBy[0]}, node-b ${r.acknowledgedBy[1]}); survivor ${r.survivor}`,
    `  lost: ${few(r.lost)}`,
    `  unavailable (longest gap between acknowledged writes): ${r.unavailableMs} ms; protected again after ${r.reprotectMs ?? 'never'} ms`,
    `  split brain: ${few(r.splitBrain)}`,
    `  anomalies while running: ${few(r.anomalies)}`,
    ...(r.notProtected ? [`  not protected: ${r.notProtected}`] : []),
    ...(r.repair ? [`  repaired after the verdict: ${r.repair}`] : []),
    `  logs: ${pair.dir}`,
  ].join('\n');
}

/** The arbiter a pair's nodes run with: the etcd in host e, or explicitly none (the control below). */
type ArbiterChoice = 'etcd' | 'none';

/**
 * One pair in the lab for a describe block, with its ledger, and `runFault`: the whole procedure for one fault
 * (protected run, fault, heal, re-protection, verification, log check), returning the report.
 */
function usePair(mode: 'colo' | 'remus', arbiter: ArbiterChoice) {
  let pair: NetnsPair;
  let feed: LedgerFeed;
  let off: () => void;
  const events: string[] = [];
  // Remus holds each reply until the next checkpoint (200 ms): more clients keep the ledger busy.
  const spec = (seed: number): WorkloadSpec => ({
    clients: mode === 'remus' ? 12 : 6,
    timeShare: 0.05,
    keysPerClient: 30,
    seed,
    connectionMs: [300, 1500],
    commandTimeoutMs: 2500,
    connectTimeoutMs: 1000,
  });

  beforeAll(async () => {
    pair = new NetnsPair({
      lab,
      hosts: ['a', 'b'],
      mode,
      probe: (url) => worker.status(url),
      arbiter: arbiter === 'etcd' ? { kind: 'etcd', endpoints: etcd.endpoint, pair: `fault-matrix-${mode}-${SEED}-${lab.prefix}` } : { kind: 'none' },
      onEvent: (l) => events.push(`${new Date().toISOString()} ${l}`),
    });
    feed = new LedgerFeed();
    off = worker.onEvent(feed.handle);
    await pair.start();
    await pair.waitProtected(REPROTECT_TIMEOUT_MS);
  }, 120_000);

  afterAll(async () => {
    off?.();
    await worker.stopWorkload().catch(() => {});
    await pair?.stop();
    await lab.heal().catch(() => {});
  });

  async function runFault(k: number, label: string): Promise<{ report: FaultReport; detail: string; healedAt: number; acks: LedgerFeed['acks'] }> {
    const fault = FAULTS[k]!;
    const seed = SEED * 100 + k + (mode === 'remus' ? 50 : 0) + (arbiter === 'none' ? 20 : 0);
    const rnd = prng(seed);
    const start = await pair.waitProtected(REPROTECT_TIMEOUT_MS).catch((e: Error) => {
      throw new Error(`the pair was not protected before the fault (an earlier fault left it broken): ${e.message}\n${pair.logTails()}`);
    });
    const schedule: string[] = [];
    const t0 = Date.now();
    const step = (what: string) => schedule.push(`+${((Date.now() - t0) / 1000).toFixed(2)} s ${what}`);
    const ackedBefore = feed.ledger.acknowledged;
    await worker.startWorkload(pair.nodes.map((n) => n.service), spec(seed));
    step(`workload started on a protected pair, ${pair.nodes[start.index].id} primary at epoch ${start.status.epoch}`);
    await sleep(PROTECTED_RUN_MS);
    // Still protected, and by the same primary: losing protection without a fault is a failure of its own.
    const before = await pair.statuses();
    if (!(before[start.index]?.role === 'primary' && before[start.index]?.protected && before[1 - start.index]?.protected)) {
      throw new Error(`the pair lost protection before the fault, without any: ${JSON.stringify(before.map((s) => s && { role: s.role, state: s.state, epoch: s.epoch }))}\n${pair.logTails()}`);
    }
    const faultAt = Date.now();
    const ctx: FaultContext = { lab, pair, worker, etcd, primary: start.index, secondary: (1 - start.index) as 0 | 1, rnd, step };
    try {
      await fault.run(ctx);
    } finally {
      // Whatever happened, the lab is whole again before the verdict (a thrown fault must not leave a cut).
      await lab.heal();
      pair.thawAll();
    }
    const healedAt = Date.now();
    let reprotectMs: number | undefined;
    let notProtected: string | undefined;
    try {
      await pair.waitProtected(REPROTECT_TIMEOUT_MS, TWO_PRIMARIES_MS);
      reprotectMs = Date.now() - healedAt;
      step('protected again');
      // Clients keep writing on the re-protected pair for a moment: the survivor must serve them too.
      await sleep(1000);
    } catch (e) {
      notProtected = (e as Error).message;
      step('NOT protected again');
    }
    await worker.stopWorkload();
    const end = Date.now();
    step('workload stopped');

    // The survivor: the primary the pair goes on with (the higher epoch if two claim it; on a tie, the one that
    // was not primary before the fault, as a takeover would have it).
    const all = await pair.statuses();
    const primaries = ([0, 1] as const).filter((i) => all[i]?.role === 'primary').sort((x, y) => all[y]!.epoch - all[x]!.epoch || (x === ctx.primary ? 1 : -1));
    if (primaries.length === 0) throw new Error(`no primary after the fault: ${JSON.stringify(all)}\n${pair.logTails()}`);
    const survivor = primaries[0]!;
    const lost = feed.verify(await worker.read(pair.nodes[survivor].service, feed.ledger.keys()));
    const anomalies = feed.problems.splice(0);
    const splitBrain = splitBrains(aloneIntervals(pair), t0);
    const report: FaultReport = {
      mode: label,
      fault: fault.name,
      seed,
      schedule,
      acknowledged: feed.ledger.acknowledged - ackedBefore,
      acknowledgedBy: feed.acknowledgedIn(t0, end),
      lost,
      unavailableMs: feed.longestGap(faultAt, end),
      reprotectMs,
      notProtected,
      splitBrain,
      anomalies,
      survivor: `${pair.nodes[survivor].id} (epoch ${all[survivor]!.epoch})`,
    };
    // After the verdict, never before it: an operator's repair of two primaries, so the next fault starts
    // from one pair (docs/operations.md, "Split brain").
    if (primaries.length > 1) {
      report.repair = await pair.fenceStalePrimary();
      await pair.waitProtected(REPROTECT_TIMEOUT_MS).catch(() => {});
    }
    reports.push(report);
    const text = describeReport(report, pair);
    console.log(text);
    const failed = lost.length > 0 || splitBrain.length > 0 || notProtected !== undefined || anomalies.length > 0;
    const detail = failed ? `${text}\nsupervision:\n${events.slice(-20).join('\n')}\n${pair.logTails(25)}` : text;
    return { report, detail, healedAt, acks: feed.acks };
  }

  return { runFault };
}

for (const mode of ['colo', 'remus'] as const) {
  describe(`${mode}: faults with the ledger running`, () => {
    const { runFault } = usePair(mode, 'etcd');
    FAULTS.forEach((fault, k) => {
      test(`${k + 1}. ${fault.name}: no acknowledged write lost, no split brain, protected again`, async () => {
        const { report: r, detail, healedAt, acks } = await runFault(k, mode);
        // At most 10 of each in the diff: a split brain gives thousands, and the counts are in `detail`.
        expect(r.lost.slice(0, 10), detail).toEqual([]);
        expect(r.splitBrain.slice(0, 10), detail).toEqual([]);
        expect(r.notProtected, detail).toBeUndefined();
        expect(r.anomalies.slice(0, 10), detail).toEqual([]);
        // The ledger ran: writes were acknowledged, and again after the fault (the service came back).
        expect(r.acknowledged, detail).toBeGreaterThan(0);
        expect(acks.some((a) => a.t > healedAt), detail).toBe(true);
      }, 150_000);
    });
  });
}

/**
 * The control: the same procedure with no arbiter, for the fault of issue 20 (a primary frozen past the
 * heartbeat timeout, then thawed). Without an arbiter nothing stops the thawed primary from acknowledging
 * writes the promoted secondary never sees, so the ledger and the log check must both catch it. If this test
 * fails, the matrix above is blind: its passing would prove nothing.
 */
describe('control: no arbiter', () => {
  const { runFault } = usePair('colo', 'none');
  const k = FAULTS.findIndex((f) => f.name.startsWith('primary frozen'));
  test(`${k + 1}. ${FAULTS[k]!.name}, arbiter none: the harness sees lost writes and a split brain`, async () => {
    const { report: r, detail } = await runFault(k, 'none');
    expect(r.lost.length, detail).toBeGreaterThan(0);
    expect(r.splitBrain.length, detail).toBeGreaterThan(0);
  }, 150_000);
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
