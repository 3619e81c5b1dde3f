import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, createWriteStream, existsSync, mkdtempSync, readFileSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { NodeStatusDoc } from '../../packages/cli/src/client/admin-client.js';
import { NODE_HEAP_FLAGS } from '../../packages/cli/src/runtime/node-flags.js';
import type { Lab } from './netns.js';
import { coloBin } from './tools.js';

/**
 * Two `colo node` processes (the built CLI) in two hosts of a network lab, supervised the way `colo pair`
 * supervises its nodes: a node process that ends (fenced: exit 1, killed, or anything else) is started again as
 * a secondary of whichever node acts as primary now. Unlike `colo pair` there is no split-brain watchdog: the
 * tests exist to see whether the nodes themselves (their arbiter) prevent two primaries, so nothing here may
 * hide it. The one repair, `fenceStalePrimary`, is for the test to call after it has recorded its verdict.
 *
 * The test process lives in the root namespace, which has no address in the lab, so it cannot reach a node's
 * admin API itself: every status question goes through `probe`, which the test wires to its client worker.
 */

export type Role = 'primary' | 'secondary';
export type Probe = (adminUrl: string) => Promise<NodeStatusDoc | undefined>;

export interface NetnsPairOptions {
  lab: Lab;
  /** The lab hosts the two nodes run in (node-a in the first, node-b in the second). */
  hosts: [string, string];
  mode: 'colo' | 'remus';
  /** Asks a node's admin API for GET /status from somewhere that reaches it; undefined when it does not answer. */
  probe: Probe;
  /**
   * The arbiter both nodes use: etcd, or explicitly none. Left out, the config has no `arbiter` section (for a
   * runtime without arbiter settings, which refuses unknown sections).
   */
  arbiter?: { kind: 'etcd'; endpoints: string; pair: string } | { kind: 'none' };
  memory?: string;
  logLevel?: string;
  /** More config sections, merged into both nodes' YAML. */
  extra?: Record<string, unknown>;
  coloBin?: string;
  /** Called with each supervision event (start, exit, restart), for the test's output. */
  onEvent?: (line: string) => void;
}

/** One process of one node: its own log file, so the log of each process can be read on its own. */
export interface NodeRun {
  node: 'a' | 'b';
  pid: number;
  role: Role;
  startedAt: number;
  exitedAt?: number;
  exit?: string;
  logFile: string;
}

export interface PairNode {
  name: 'a' | 'b';
  id: string;
  host: string;
  addr: string;
  adminUrl: string;
  service: { host: string; port: number };
  replicationUrl: string;
  configFile: string;
  process?: ChildProcess;
  /** Every process this node ran, oldest first. */
  runs: NodeRun[];
}

// The namespaces are the lab's own: every node can use the same well-known ports on its own address.
const SERVICE_PORT = 6380;
const ADMIN_PORT = 9464;
const REPLICATION_PORT = 7800;

export class NetnsPair {
  readonly nodes: [PairNode, PairNode];
  readonly dir: string;
  readonly token: string;
  private readonly o: NetnsPairOptions;
  private stopping = false;
  private readonly eventsFile: string;
  private readonly logs = new Set<WriteStream>();
  /** Nodes a test froze: never restarted while frozen, and thawed before a stop. */
  private readonly frozen = new Set<PairNode>();

  constructor(o: NetnsPairOptions) {
    this.o = o;
    this.dir = mkdtempSync(join(tmpdir(), 'colo-netns-'));
    this.eventsFile = join(this.dir, 'events.jsonl');
    const psk = join(this.dir, 'psk');
    const tokenFile = join(this.dir, 'admin-token');
    this.token = randomBytes(24).toString('base64url');
    writeFileSync(psk, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    writeFileSync(tokenFile, this.token + '\n', { mode: 0o600 });
    const mk = (name: 'a' | 'b', host: string): PairNode => {
      const addr = o.lab.addr(host);
      return {
        name,
        id: `node-${name}`,
        host,
        addr,
        adminUrl: `http://${addr}:${ADMIN_PORT}`,
        service: { host: addr, port: SERVICE_PORT },
        replicationUrl: `ws://${addr}:${REPLICATION_PORT}`,
        configFile: join(this.dir, `node-${name}.yaml`),
        runs: [],
      };
    };
    this.nodes = [mk('a', o.hosts[0]), mk('b', o.hosts[1])];
    for (const [i, n] of this.nodes.entries()) {
      const other = this.nodes[1 - i]!;
      const config: Record<string, unknown> = {
        node: { id: n.id, mode: o.mode },
        guest: { memory: o.memory ?? '16MiB', dirty_rate: 0 },
        // The lab's addresses are off loopback, but its namespaces and bridge exist only for this test: the links
        // and the admin API run in clear by choice (the nodes log a warning), as a product default they would not.
        replication: { listen: `${n.addr}:${REPLICATION_PORT}`, peer: other.replicationUrl, psk_file: psk, allow_cleartext: true },
        service: { listen: `${n.addr}:${SERVICE_PORT}` },
        admin: { listen: `${n.addr}:${ADMIN_PORT}`, token_file: tokenFile, allow_cleartext: true },
        log: { level: o.logLevel ?? 'info' },
        ...(o.arbiter ? { arbiter: o.arbiter.kind === 'etcd' ? { kind: 'etcd', endpoints: o.arbiter.endpoints, pair: o.arbiter.pair } : { kind: 'none' } } : {}),
        ...o.extra,
      };
      writeFileSync(n.configFile, `# written by test/support/netns-pair.ts\n${stringify(config)}`);
    }
  }

  get adminUrls(): [string, string] {
    return [this.nodes[0].adminUrl, this.nodes[1].adminUrl];
  }

  /** Starts node-a as primary, then node-b as its secondary once node-a listens for one. */
  async start(timeoutMs = 30_000): Promise<void> {
    this.spawnNode(this.nodes[0], 'primary');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.o.probe(this.nodes[0].adminUrl);
      if (s?.role === 'primary' && s.listening) break;
      if (Date.now() > deadline) throw new Error(`node-a did not listen for a secondary within ${timeoutMs} ms: ${JSON.stringify(s)}\n${this.logTails()}`);
      await sleep(100);
    }
    this.spawnNode(this.nodes[1], 'secondary');
  }

  async statuses(): Promise<(NodeStatusDoc | undefined)[]> {
    return Promise.all(this.nodes.map((n) => this.o.probe(n.adminUrl)));
  }

  /** The node acting as primary now, with both statuses (undefined when none answers as primary). */
  async primary(): Promise<{ index: 0 | 1; status: NodeStatusDoc; all: (NodeStatusDoc | undefined)[] } | undefined> {
    const all = await this.statuses();
    const i = all.findIndex((s) => s?.role === 'primary');
    return i >= 0 ? { index: i as 0 | 1, status: all[i]!, all } : undefined;
  }

  /**
   * Waits until one node is a protected primary and the other its synchronised secondary. With
   * `twoPrimariesMs`, gives up early once both nodes have answered as primary for that long without a break:
   * a split brain nothing in the pair resolves (waiting longer only makes the test slower).
   */
  async waitProtected(timeoutMs = 60_000, twoPrimariesMs = Infinity): Promise<{ index: 0 | 1; status: NodeStatusDoc }> {
    const deadline = Date.now() + timeoutMs;
    let bothSince: number | undefined;
    for (;;) {
      const all = await this.statuses();
      const i = all.findIndex((s) => s?.role === 'primary' && s.protected);
      if (i >= 0 && all[1 - i]?.role === 'secondary' && all[1 - i]?.protected) return { index: i as 0 | 1, status: all[i]! };
      const both = all.every((s) => s?.role === 'primary');
      bothSince = both ? (bothSince ?? Date.now()) : undefined;
      if (bothSince !== undefined && Date.now() - bothSince >= twoPrimariesMs) {
        throw new Error(`two primaries for ${twoPrimariesMs} ms and nothing resolves it: ${JSON.stringify(all.map((s) => s && { node: s.nodeId, role: s.role, state: s.state, epoch: s.epoch }))}; logs in ${this.dir}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`pair not protected after ${timeoutMs} ms: ${JSON.stringify(all.map((s) => s && { role: s.role, state: s.state, epoch: s.epoch, protected: s.protected }))}; logs in ${this.dir}`);
      }
      await sleep(150);
    }
  }

  /** The live process of node `i` (throws when it has none: the test expected one). */
  processOf(i: 0 | 1): ChildProcess {
    const p = this.nodes[i].process;
    if (!p || p.exitCode !== null || p.signalCode !== null) throw new Error(`${this.nodes[i].id} has no live process`);
    return p;
  }

  kill(i: 0 | 1, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.record(this.nodes[i], { what: 'signal', signal });
    this.processOf(i).kill(signal);
  }

  /** SIGSTOP: the process keeps its sockets but runs no code (a VM paused by its host, a long GC, a swap storm). */
  freeze(i: 0 | 1): void {
    const n = this.nodes[i];
    this.frozen.add(n);
    this.record(n, { what: 'freeze' });
    this.processOf(i).kill('SIGSTOP');
  }

  /** Thaws every node a test froze (after a fault, whatever happened in it). */
  thawAll(): void {
    for (const i of [0, 1] as const) if (this.frozen.has(this.nodes[i])) this.thaw(i);
  }

  thaw(i: 0 | 1): void {
    const n = this.nodes[i];
    this.record(n, { what: 'thaw' });
    this.frozen.delete(n);
    n.process?.kill('SIGCONT');
  }

  private spawnNode(n: PairNode, role: Role): void {
    const cli = this.o.coloBin ?? coloBin;
    if (!existsSync(cli)) throw new Error(`the colo CLI is not built (${cli}): run 'npx turbo run build'`);
    const logFile = join(this.dir, `${n.id}.${n.runs.length + 1}.log`);
    const log = createWriteStream(logFile, { flags: 'a' });
    this.logs.add(log);
    // As `colo pair` runs its nodes: with their heap flags.
    const child = this.o.lab.spawn(n.host, process.execPath, [...NODE_HEAP_FLAGS, cli, 'node', '--config', n.configFile, '--node-role', role], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    const run: NodeRun = { node: n.name, pid: child.pid ?? -1, role, startedAt: Date.now(), logFile };
    n.runs.push(run);
    n.process = child;
    this.record(n, { what: 'start', role, pid: run.pid, log: logFile });
    child.on('exit', (code, signal) => {
      run.exitedAt = Date.now();
      run.exit = signal ?? `code ${code}`;
      this.record(n, { what: 'exit', pid: run.pid, exit: run.exit });
      child.stdout?.unpipe(log);
      child.stderr?.unpipe(log);
      log.end();
      this.logs.delete(log);
      if (n.process === child) n.process = undefined;
      if (!this.stopping) void this.rejoin(n);
    });
  }

  /** A node's process ended: once the other node acts as primary, start this one again as its secondary. */
  private async rejoin(n: PairNode): Promise<void> {
    const other = this.nodes.find((x) => x !== n)!;
    const since = Date.now();
    while (!this.stopping) {
      const s = await this.o.probe(other.adminUrl);
      if (s?.role === 'primary') break;
      if (!other.process && !this.frozen.has(other) && Date.now() - since > 5000) {
        // Both down: the only way on is an empty guest, so every acknowledged write is lost (the ledger says so).
        this.record(n, { what: 'both-down' });
        this.spawnNode(n, 'primary');
        return;
      }
      await sleep(200);
    }
    if (!this.stopping) this.spawnNode(n, 'secondary');
  }

  /**
   * The operator's repair of docs/operations.md ("Split brain") for two nodes both acting as primary: stop the
   * one with the lower epoch (the supervisor re-adds it as a secondary of the other). For the test to call
   * after it has recorded a split brain, so the next fault starts from one pair again. Returns what it did.
   */
  async fenceStalePrimary(): Promise<string | undefined> {
    const [a, b] = await this.statuses();
    if (a?.role !== 'primary' || b?.role !== 'primary') return undefined;
    const loser: 0 | 1 = a.epoch === b.epoch ? (this.nodes[0].runs.at(-1)!.startedAt < this.nodes[1].runs.at(-1)!.startedAt ? 0 : 1) : a.epoch < b.epoch ? 0 : 1;
    const what = `two primaries (node-a epoch ${a.epoch}, node-b epoch ${b.epoch}): stopped ${this.nodes[loser].id}`;
    this.record(this.nodes[loser], { what: 'fence-stale-primary', detail: what });
    this.processOf(loser).kill('SIGKILL');
    return what;
  }

  private record(n: PairNode, e: Record<string, unknown>): void {
    const line = { time: new Date().toISOString(), node: n.id, ...e };
    appendFileSync(this.eventsFile, JSON.stringify(line) + '\n');
    this.o.onEvent?.(`${n.id}: ${Object.entries(e).map(([k, v]) => `${k}=${String(v)}`).join(' ')}`);
  }

  /** The last `lines` lines of every process's log and the supervision events, for a failure message. */
  logTails(lines = 40): string {
    const out: string[] = [`logs in ${this.dir}`];
    for (const n of this.nodes) {
      for (const r of n.runs.slice(-2)) {
        const text = existsSync(r.logFile) ? readFileSync(r.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '(no log)';
        out.push(`--- ${n.id} pid ${r.pid} as ${r.role} (${r.exit ?? 'running'}): ${r.logFile}\n${text}`);
      }
    }
    if (existsSync(this.eventsFile)) out.push(`--- supervision events\n${readFileSync(this.eventsFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`);
    return out.join('\n');
  }

  /** Stops both nodes (thawing a frozen one first: a stopped process cannot handle SIGTERM). */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    for (const n of this.frozen) n.process?.kill('SIGCONT');
    this.frozen.clear();
    await Promise.all(
      this.nodes.map(
        (n) =>
          new Promise<void>((resolve) => {
            const child = n.process;
            if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ------------------------------------------------------------------------------------------ log analysis

/**
 * A stretch of time in which one node process acted as primary without a secondary: its output went to
 * clients backed by nothing but itself (state `unprotected`: "output passes straight through"). Found from
 * the node's own log, its statechart transitions (`state X -> Y`, with `role` and `epoch` bound), and ended by
 * a transition out of it or by the process's end.
 */
export interface AloneInterval {
  node: string;
  pid: number;
  epoch: number;
  from: number;
  to: number;
  /** Still alone when the logs were read. */
  open: boolean;
}

/** Primary states in which output is released without a secondary holding it. */
export function releasesAlone(role: string, state: string): boolean {
  return role === 'primary' && (state === 'unprotected' || state.startsWith('unprotected.'));
}

interface TransitionLine {
  time: string;
  role?: string;
  epoch?: number;
  from?: string;
  to?: string;
  msg?: string;
}

/** Reads every process's log of both nodes and returns the intervals in which a node released output alone. */
export function aloneIntervals(pair: NetnsPair, now = Date.now()): AloneInterval[] {
  const out: AloneInterval[] = [];
  for (const n of pair.nodes) {
    for (const run of n.runs) {
      if (!existsSync(run.logFile)) continue;
      let open: AloneInterval | undefined;
      for (const line of readFileSync(run.logFile, 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        let l: TransitionLine;
        try {
          l = JSON.parse(line) as TransitionLine;
        } catch {
          continue; // a line cut short by a SIGKILL
        }
        if (typeof l.to !== 'string' || typeof l.from !== 'string' || !l.msg?.startsWith('state ')) continue;
        const t = Date.parse(l.time);
        const alone = releasesAlone(l.role ?? '', l.to);
        if (open && (!alone || l.epoch !== open.epoch)) {
          open.to = t;
          out.push(open);
          open = undefined;
        }
        if (alone && !open) open = { node: n.id, pid: run.pid, epoch: l.epoch ?? -1, from: t, to: t, open: false };
      }
      if (open) {
        open.to = run.exitedAt ?? now;
        open.open = run.exitedAt === undefined;
        out.push(open);
      }
    }
  }
  return out.sort((x, y) => x.from - y.from);
}

/**
 * Split brain, from the intervals: two different nodes releasing output alone in the same epoch (what the
 * arbiter's compare-and-swap on the epoch forbids), or at the same moment whatever their epochs (two primaries
 * acknowledging writes the other never sees). One line per offending pair of intervals.
 */
export function splitBrains(intervals: AloneInterval[], since = 0): string[] {
  const problems: string[] = [];
  const fmt = (i: AloneInterval) => `${i.node} (pid ${i.pid}) alone in epoch ${i.epoch} from ${new Date(i.from).toISOString()} to ${i.open ? 'now' : new Date(i.to).toISOString()}`;
  for (let i = 0; i < intervals.length; i++) {
    for (let j = i + 1; j < intervals.length; j++) {
      const x = intervals[i]!;
      const y = intervals[j]!;
      // Only pairs with an interval that began at `since` or later: older ones were reported before.
      if (x.node === y.node || Math.max(x.from, y.from) < since) continue;
      if (x.epoch === y.epoch) problems.push(`same epoch ${x.epoch}: ${fmt(x)}; ${fmt(y)}`);
      else if (x.from < y.to && y.from < x.to) problems.push(`at the same time (${Math.min(x.to, y.to) - Math.max(x.from, y.from)} ms): ${fmt(x)}; ${fmt(y)}`);
    }
  }
  return problems;
}
