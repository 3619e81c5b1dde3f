import { postAction } from '../../packages/cli/src/client/admin-client.js';
import { RespClient, RespError, type RespReply } from '../../packages/cli/src/client/resp-client.js';
import { waitServing } from './clients.js';
import type { TestPair } from './pair.js';

/**
 * The acknowledged-write ledger behind the kill tests (issue 5): what clients were told, checked against what
 * the surviving guest holds after each primary crash.
 *
 * A write whose reply arrived is ACKNOWLEDGED and must survive. A write whose reply never arrived (in flight when
 * the primary died) may or may not have happened, exactly as with a single server that crashes, so it widens
 * what a key may hold rather than being ignored: a value key may hold its acknowledged value or one of the values
 * sent after it; a counter must be at least its highest acknowledged value and at most the number of increments
 * ever sent. Once verified, what the survivor holds becomes the new baseline (a client has now read it).
 */
export class Ledger {
  private readonly values = new Map<string, { acked: string | null; maybe: Set<string> }>();
  private readonly counters = new Map<string, { acked: number; sent: number }>();
  acknowledged = 0;

  beginSet(key: string, value: string): void {
    let e = this.values.get(key);
    if (!e) this.values.set(key, (e = { acked: null, maybe: new Set() }));
    e.maybe.add(value);
  }

  ackSet(key: string, value: string): void {
    const e = this.values.get(key)!;
    e.acked = value;
    e.maybe.clear();
    this.acknowledged++;
  }

  beginIncr(key: string): void {
    let e = this.counters.get(key);
    if (!e) this.counters.set(key, (e = { acked: 0, sent: 0 }));
    e.sent++;
  }

  /** Returns a problem when the reply goes backwards (another client's increment may come between, not before). */
  ackIncr(key: string, reply: number, monotonicPerClient: number): string | undefined {
    const e = this.counters.get(key)!;
    this.acknowledged++;
    if (reply <= monotonicPerClient) return `INCR ${key} answered ${reply} after this client had seen ${monotonicPerClient}`;
    if (reply > e.sent) return `INCR ${key} answered ${reply} but only ${e.sent} increments were ever sent`;
    e.acked = Math.max(e.acked, reply);
    return undefined;
  }

  /** What a GET of `key` may answer now, while no crash happened since its last acknowledged write. */
  expectedNow(key: string): string | null | undefined {
    const e = this.values.get(key);
    if (!e || e.maybe.size > 0) return undefined; // unknown or a write in flight: not checkable
    return e.acked;
  }

  keys(): string[] {
    return [...this.values.keys(), ...this.counters.keys()];
  }

  /**
   * Checks what the survivor holds (`found`, by key, null for a missing key) against the ledger; returns every
   * lost or impossible write, naming key, expected and found. Re-baselines the ledger to `found`.
   */
  verify(found: Map<string, string | null>): string[] {
    const problems: string[] = [];
    for (const [key, e] of this.values) {
      const f = found.get(key) ?? null;
      if (f !== e.acked && !(f !== null && e.maybe.has(f))) {
        problems.push(`key ${key}: expected ${JSON.stringify(e.acked)}${e.maybe.size ? ` (or an unacknowledged ${JSON.stringify([...e.maybe])})` : ''}, found ${JSON.stringify(f)}`);
      }
      e.acked = f;
      e.maybe.clear();
    }
    for (const [key, e] of this.counters) {
      const raw = found.get(key) ?? null;
      const f = raw === null ? 0 : Number(raw);
      if (!(f >= e.acked)) problems.push(`counter ${key}: expected at least ${e.acked} (highest acknowledged), found ${JSON.stringify(raw)}`);
      else if (f > e.sent) problems.push(`counter ${key}: found ${f}, more than the ${e.sent} increments ever sent`);
      e.acked = f;
    }
    return problems;
  }
}

export interface WorkloadOptions {
  clients: number;
  /** Share of commands that are TIME (nondeterministic: COLO checkpoints on each). */
  timeShare: number;
  keysPerClient: number;
}

export interface WorkerStats {
  commands: number;
  times: number;
  /** Why each client stopped (a connection error after a kill; 'stopped' when asked). */
  endings: string[];
}

/**
 * Clients issuing SET / INCR (own and shared counters) / GET / TIME one command at a time each, recording every
 * acknowledged write in the ledger and checking every GET against it (read-your-writes while no crash happened).
 * Each client stops at its first connection error (the primary died) or when `stop()` is called.
 */
export class Workload {
  private stopping = false;
  private readonly running: Promise<void>[] = [];
  private readonly clients: RespClient[] = [];
  readonly stats: WorkerStats = { commands: 0, times: 0, endings: [] };
  readonly problems: string[] = [];
  private seq = 0;
  private readonly ledger: Ledger;
  private readonly o: WorkloadOptions;
  private readonly rnd: () => number;

  constructor(ledger: Ledger, o: WorkloadOptions, rnd: () => number) {
    this.ledger = ledger;
    this.o = o;
    this.rnd = rnd;
  }

  /** Connects all clients to `port` and starts them. */
  async start(port: number): Promise<void> {
    this.stopping = false;
    this.stats.endings = [];
    for (let i = 0; i < this.o.clients; i++) {
      const c = await RespClient.connect('127.0.0.1', port, 5000);
      this.clients.push(c);
      this.running.push(this.run(i, c));
    }
  }

  /** Resolves when every client ended (after a kill), or fails naming the clients still waiting for a reply. */
  async ended(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(this.running);
    await Promise.race([
      all,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`clients still waiting for a reply ${timeoutMs} ms after the primary died (a hung connection); endings so far: ${this.stats.endings.join(', ')}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    this.running.length = 0;
    this.clients.length = 0;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
    for (const c of this.clients) c.close();
    this.running.length = 0;
    this.clients.length = 0;
  }

  private async run(i: number, c: RespClient): Promise<void> {
    const seen = new Map<string, number>();
    try {
      while (!this.stopping) await ledgerCommand(c, i, this.ledger, this.o, this.rnd, seen, this.stats, this.problems, () => ++this.seq);
      this.stats.endings.push('stopped');
    } catch (e) {
      this.stats.endings.push((e as { code?: string }).code ?? (e as Error).message);
      c.close();
    }
  }
}

/**
 * One command of client `i`: SET / INCR (own and shared counters) / GET / TIME, the write recorded in the ledger
 * and acknowledged when its reply arrives, a GET checked against it (read-your-writes). `seen` is the client's
 * last INCR reply per counter. Throws on a connection error (the write stays unacknowledged).
 */
export async function ledgerCommand(
  c: RespClient,
  i: number,
  L: Ledger,
  o: WorkloadOptions,
  rnd: () => number,
  seen: Map<string, number>,
  stats: { commands: number; times: number },
  problems: string[],
  nextValue: () => number,
): Promise<void> {
  const r = rnd();
  const k = `c${i}:k${Math.floor(rnd() * o.keysPerClient)}`;
  if (r < o.timeShare) {
    const reply = await c.command('TIME');
    stats.times++;
    if (!Array.isArray(reply) || reply.length !== 2) problems.push(`TIME answered ${JSON.stringify(reply)}`);
  } else if (r < 0.45) {
    const v = `v${i}.${nextValue()}`;
    L.beginSet(k, v);
    const reply = await c.command('SET', k, v);
    if (reply !== 'OK') problems.push(`SET ${k} answered ${JSON.stringify(reply)}`);
    else L.ackSet(k, v);
  } else if (r < 0.7) {
    const key = r < 0.6 ? `c${i}:n` : 'shared:n';
    L.beginIncr(key);
    const reply = await c.command('INCR', key);
    if (typeof reply !== 'number') problems.push(`INCR ${key} answered ${describe(reply)}`);
    else {
      const p = L.ackIncr(key, reply, seen.get(key) ?? 0);
      if (p) problems.push(p);
      seen.set(key, reply);
    }
  } else {
    const expected = L.expectedNow(k);
    const reply = await c.command('GET', k);
    if (expected !== undefined && reply !== expected) problems.push(`GET ${k} answered ${describe(reply)}, the last acknowledged SET wrote ${JSON.stringify(expected)}`);
  }
  stats.commands++;
}

function describe(r: RespReply): string {
  return r instanceof RespError ? `error ${r.message}` : JSON.stringify(r);
}

/** Reads every ledger key from the service at `port` (MGET in batches). */
export async function readAll(port: number, keys: string[]): Promise<Map<string, string | null>> {
  const c = await RespClient.connect('127.0.0.1', port, 5000);
  try {
    const found = new Map<string, string | null>();
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100);
      const reply = await c.command('MGET', ...batch);
      if (!Array.isArray(reply) || reply.length !== batch.length) throw new Error(`MGET answered ${describe(reply)}`);
      batch.forEach((k, j) => found.set(k, reply[j] as string | null));
    }
    return found;
  } finally {
    c.close();
  }
}

/** A small seeded PRNG (mulberry32): a failing run prints its seed and can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface KillRunOptions {
  kills: number;
  seed: number;
  workload: WorkloadOptions;
  /** Clients run this long (uniformly random in [min, max] ms) on a protected pair before the kill. */
  runMs: [number, number];
  /** Share of kills fired right after POST /checkpoint (0..`checkpointKillDelayMs` ms later): mid-checkpoint. */
  checkpointKillShare: number;
  checkpointKillDelayMs: number;
  /** What dies in each round (default: the primary's colo process, SIGKILL). */
  kill?: (pair: TestPair, primaryIndex: 0 | 1) => void;
  log?: (line: string) => void;
}

export interface KillRunReport {
  kills: number;
  checkpointKills: number;
  acknowledged: number;
  commands: number;
  times: number;
  verifiedKeys: number;
  /** Kill to a serving survivor, ms, per kill. */
  rtoMs: number[];
  /** Serving survivor to a protected pair again, ms, per kill. */
  reprotectMs: number[];
  problems: string[];
}

/**
 * The kill loop: on a protected pair, clients run; the primary's process is SIGKILLed (at a random moment, or
 * right after a requested checkpoint); the survivor must serve; every acknowledged write must read back; clients
 * reconnect to the survivor and keep writing while the restarted node rejoins as secondary; once the pair is
 * protected again, the next round. Stops at the first lost write (the report's problems name it).
 */
export async function runKills(pair: TestPair, o: KillRunOptions): Promise<KillRunReport> {
  const rnd = prng(o.seed);
  const ledger = new Ledger();
  const work = new Workload(ledger, o.workload, rnd);
  const report: KillRunReport = { kills: 0, checkpointKills: 0, acknowledged: 0, commands: 0, times: 0, verifiedKeys: 0, rtoMs: [], reprotectMs: [], problems: [] };
  const log = o.log ?? (() => {});
  let serving = await waitServing(pair);
  await work.start(serving.port);
  try {
    for (let round = 1; round <= o.kills; round++) {
      const protectedAt = Date.now();
      await pair.waitProtected(60_000);
      if (round > 1) report.reprotectMs.push(Date.now() - protectedAt);
      // Let the clients run on the protected pair (they may already have run during re-protection).
      await sleep(o.runMs[0] + rnd() * (o.runMs[1] - o.runMs[0]));
      const victimIndex = serving.index;
      const victim = pair.sup.nodes[victimIndex].process;
      if (!victim || victim.exitCode !== null) throw new Error(`round ${round}: the primary ${pair.sup.nodes[victimIndex].id} has no live process`);
      // The pair must still be protected here: losing protection without a kill is a failure of its own.
      try {
        await pair.waitProtected(0);
      } catch (e) {
        report.problems.push(`before kill ${round}, without any kill: ${(e as Error).message}`);
        break;
      }
      let how = 'at a random moment';
      if (rnd() < o.checkpointKillShare) {
        report.checkpointKills++;
        postAction(pair.adminUrls[victimIndex], 'checkpoint', pair.token, 5000).catch(() => {});
        const d = rnd() * o.checkpointKillDelayMs;
        how = `${d.toFixed(1)} ms after POST /checkpoint`;
        await sleep(d);
      }
      const killedAt = Date.now();
      if (o.kill) o.kill(pair, victimIndex);
      else victim.kill('SIGKILL');
      report.kills++;
      await work.ended(10_000);
      serving = await waitServing(pair, 30_000, victimIndex);
      report.rtoMs.push(Date.now() - killedAt);
      const keys = ledger.keys();
      const problems = ledger.verify(await readAll(serving.port, keys));
      report.verifiedKeys += keys.length;
      log(`round ${round}: killed ${pair.sup.nodes[victimIndex].id} ${how}; ${pair.sup.nodes[serving.index].id} serves after ${report.rtoMs.at(-1)} ms; ${keys.length} keys verified, ${ledger.acknowledged} writes acknowledged so far`);
      report.problems.push(...work.problems.splice(0), ...problems.map((p) => `after kill ${round} (${how}): ${p}`));
      if (report.problems.length > 0) break;
      await work.start(serving.port);
    }
  } finally {
    await work.stop().catch(() => {});
    report.acknowledged = ledger.acknowledged;
    report.commands = work.stats.commands;
    report.times = work.stats.times;
    report.problems.push(...work.problems);
  }
  return report;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
