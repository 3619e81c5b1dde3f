import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { getStatus, postAction, type NodeStatusDoc } from '../../packages/cli/src/client/admin-client.js';
import { RespClient, RespError, type RespReply } from '../../packages/cli/src/client/resp-client.js';
import { Ledger, prng } from './ledger.js';
import type { Lab } from './netns.js';
import { repo } from './tools.js';

/**
 * Both ends of the clients of a pair in a network lab. The test process lives in the root namespace, which has
 * no address in the lab, so everything that talks to the nodes (the RESP workload, reads for verification,
 * admin calls) runs in a worker process inside the lab's client host. The two speak JSON lines over stdio:
 * commands in, events out. This module is that worker when run as a script, and `ClientWorker`, the test
 * process's handle on it, when imported; one file, so the protocol's two ends cannot drift apart.
 *
 * The workload: clients issuing SET / INCR (own and shared counters) / GET / TIME one command at a time each,
 * as in ledger.ts's Workload, but through BOTH nodes' service addresses, as clients behind a name that lists
 * both would: each connection lives a random while (clients come and go), the next one tries the other node
 * first, and a node that refuses, does not answer within the connect timeout, or lets a command go unanswered
 * past the command timeout sends the client to the other. Only a primary serves, so a healthy pair gets all
 * its clients; two primaries would get both halves of them, which is what makes a split brain visible.
 */

// ------------------------------------------------------------------------------------------ protocol

export interface ServiceAddress {
  host: string;
  port: number;
}

export interface WorkloadSpec {
  clients: number;
  /** Share of commands that are TIME (nondeterministic: a COLO pair checkpoints on each). */
  timeShare: number;
  keysPerClient: number;
  seed: number;
  /** A connection is closed after a random time in [min, max] ms, and the client reconnects. */
  connectionMs: [number, number];
  commandTimeoutMs: number;
  connectTimeoutMs: number;
}

export type Command =
  | { op: 'start'; id: number; services: ServiceAddress[]; spec: WorkloadSpec }
  | { op: 'stop'; id: number }
  | { op: 'read'; id: number; service: ServiceAddress; keys: string[]; timeoutMs: number }
  | { op: 'status'; id: number; url: string; timeoutMs: number }
  | { op: 'post'; id: number; url: string; action: 'checkpoint' | 'failover'; token: string };

/** `t` is the worker's Date.now() (one clock for the whole lab: namespaces share the kernel). */
export type WorkerEvent =
  | { ev: 'begin'; c: number; op: 'set'; key: string; value: string }
  | { ev: 'begin'; c: number; op: 'incr'; key: string }
  | { ev: 'ack'; c: number; op: 'set'; key: string; value: string; node: number; t: number }
  | { ev: 'ack'; c: number; op: 'incr'; key: string; reply: number; node: number; t: number }
  | { ev: 'get'; c: number; key: string; reply: string | null; node: number }
  | { ev: 'time'; c: number }
  | { ev: 'bad'; c: number; what: string; node: number }
  | { ev: 'connected'; c: number; node: number; t: number }
  | { ev: 'disconnected'; c: number; node: number; why: string; t: number }
  | { ev: 'done'; id: number; result?: unknown; error?: string }
  | { ev: 'posting'; id: number; t: number }
  | { ev: 'fatal'; error: string };

// ------------------------------------------------------------------------------------------ worker

class TimeoutError extends Error {}

function emit(e: WorkerEvent): void {
  process.stdout.write(JSON.stringify(e) + '\n');
}

function describe(r: RespReply): string {
  return r instanceof RespError ? `error ${r.message}` : JSON.stringify(r);
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new TimeoutError(`no reply within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

class Workload {
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;
  private readonly rnd: () => number;
  private readonly services: ServiceAddress[];
  private readonly spec: WorkloadSpec;

  constructor(services: ServiceAddress[], spec: WorkloadSpec) {
    this.services = services;
    this.spec = spec;
    this.rnd = prng(spec.seed);
    for (let i = 0; i < spec.clients; i++) this.loops.push(this.client(i));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
  }

  /** Connects to `first`, or failing that to the other node, until one accepts (or the workload stops). */
  private async connect(c: number, first: number): Promise<{ client: RespClient; node: number } | undefined> {
    for (let n = first; !this.stopping; n = (n + 1) % this.services.length) {
      const s = this.services[n]!;
      try {
        const client = await RespClient.connect(s.host, s.port, this.spec.connectTimeoutMs);
        emit({ ev: 'connected', c, node: n, t: Date.now() });
        return { client, node: n };
      } catch {
        // Refused (a secondary does not serve) or unreachable: the other node. A short pause keeps a pair
        // with no serving node from turning this into a busy loop.
        await sleep(50);
      }
    }
    return undefined;
  }

  private async client(c: number): Promise<void> {
    const sp = this.spec;
    let next = c % this.services.length;
    while (!this.stopping) {
      const conn = await this.connect(c, next);
      if (!conn) return;
      const { client, node } = conn;
      next = (node + 1) % this.services.length;
      const until = Date.now() + sp.connectionMs[0] + this.rnd() * (sp.connectionMs[1] - sp.connectionMs[0]);
      let why = 'reconnecting';
      try {
        while (!this.stopping && Date.now() < until) await this.one(c, client, node);
        if (this.stopping) why = 'stopped';
      } catch (e) {
        why = e instanceof TimeoutError ? e.message : ((e as { code?: string }).code ?? (e as Error).message);
      }
      client.close();
      emit({ ev: 'disconnected', c, node, why, t: Date.now() });
    }
  }

  private async one(c: number, client: RespClient, node: number): Promise<void> {
    const r = this.rnd();
    const key = `c${c}:k${Math.floor(this.rnd() * this.spec.keysPerClient)}`;
    const ask = (...args: string[]) => withTimeout(client.command(...args), this.spec.commandTimeoutMs, () => client.close());
    if (r < this.spec.timeShare) {
      const reply = await ask('TIME');
      if (!Array.isArray(reply) || reply.length !== 2) emit({ ev: 'bad', c, what: `TIME answered ${describe(reply)}`, node });
      else emit({ ev: 'time', c });
    } else if (r < 0.45) {
      const value = `v${c}.${++this.seq}`;
      emit({ ev: 'begin', c, op: 'set', key, value });
      const reply = await ask('SET', key, value);
      if (reply === 'OK') emit({ ev: 'ack', c, op: 'set', key, value, node, t: Date.now() });
      else emit({ ev: 'bad', c, what: `SET ${key} answered ${describe(reply)}`, node });
    } else if (r < 0.7) {
      const k = r < 0.6 ? `c${c}:n` : 'shared:n';
      emit({ ev: 'begin', c, op: 'incr', key: k });
      const reply = await ask('INCR', k);
      if (typeof reply === 'number') emit({ ev: 'ack', c, op: 'incr', key: k, reply, node, t: Date.now() });
      else emit({ ev: 'bad', c, what: `INCR ${k} answered ${describe(reply)}`, node });
    } else {
      const reply = await ask('GET', key);
      if (reply === null || typeof reply === 'string') emit({ ev: 'get', c, key, reply, node });
      else emit({ ev: 'bad', c, what: `GET ${key} answered ${describe(reply)}`, node });
    }
  }
}

async function readKeys(service: ServiceAddress, keys: string[], timeoutMs: number): Promise<Record<string, string | null>> {
  const c = await RespClient.connect(service.host, service.port, timeoutMs);
  try {
    const found: Record<string, string | null> = {};
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100);
      const reply = await withTimeout(c.command('MGET', ...batch), timeoutMs, () => c.close());
      if (!Array.isArray(reply) || reply.length !== batch.length) throw new Error(`MGET answered ${describe(reply)}`);
      batch.forEach((k, j) => (found[k] = reply[j] as string | null));
    }
    return found;
  } finally {
    c.close();
  }
}

async function workerMain(): Promise<void> {
  let workload: Workload | undefined;
  const answer = (id: number, p: Promise<unknown>) =>
    p.then(
      (result) => emit({ ev: 'done', id, result }),
      (e: Error) => emit({ ev: 'done', id, error: e.message }),
    );
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let cmd: Command;
    try {
      cmd = JSON.parse(line) as Command;
    } catch {
      emit({ ev: 'fatal', error: `not a JSON command: ${line.slice(0, 200)}` });
      return;
    }
    switch (cmd.op) {
      case 'start':
        if (workload) return void emit({ ev: 'done', id: cmd.id, error: 'a workload is already running' });
        workload = new Workload(cmd.services, cmd.spec);
        return void emit({ ev: 'done', id: cmd.id });
      case 'stop': {
        const w = workload;
        workload = undefined;
        return void answer(cmd.id, w ? w.stop() : Promise.resolve());
      }
      case 'read':
        return void answer(cmd.id, readKeys(cmd.service, cmd.keys, cmd.timeoutMs));
      case 'status':
        return void answer(cmd.id, getStatus(cmd.url, cmd.timeoutMs).catch(() => null));
      case 'post':
        emit({ ev: 'posting', id: cmd.id, t: Date.now() });
        return void answer(cmd.id, postAction(cmd.url, cmd.action, cmd.token, 10_000));
    }
  });
  // The test process went away (its end of stdin closed): so does the worker.
  lines.on('close', () => process.exit(0));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const thisFile = fileURLToPath(import.meta.url);
if (process.argv[1] === thisFile) {
  workerMain().catch((e: Error) => {
    emit({ ev: 'fatal', error: e.stack ?? e.message });
    process.exit(70);
  });
}

// ------------------------------------------------------------------------------------------ test side

type ClientEvent = Exclude<WorkerEvent, { ev: 'done' } | { ev: 'posting' } | { ev: 'fatal' }>;

/** The test process's handle on a worker running inside `host` of `lab`. */
export class ClientWorker {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onPosting?: (t: number) => void }>();
  private readonly listeners = new Set<(e: ClientEvent) => void>();
  private stderr = '';
  private ended: string | undefined;

  constructor(lab: Lab, host: string) {
    // tsx (a devDependency) runs the TypeScript sources; '@colo/source' resolves the workspace packages to src.
    this.child = lab.spawn(host, process.execPath, ['--import', 'tsx', '--conditions=@colo/source', thisFile], {
      cwd: repo,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.onLine(line));
    this.child.on('exit', (code, signal) => {
      this.ended = `the client worker exited (${signal ?? `code ${code}`}): ${this.stderr.trim()}`;
      for (const p of this.pending.values()) p.reject(new Error(this.ended));
      this.pending.clear();
    });
  }

  onEvent(cb: (e: ClientEvent) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private onLine(line: string): void {
    let e: WorkerEvent;
    try {
      e = JSON.parse(line) as WorkerEvent;
    } catch {
      this.stderr += `\n(stdout) ${line}`;
      return;
    }
    if (e.ev === 'done') {
      const p = this.pending.get(e.id);
      this.pending.delete(e.id);
      if (e.error !== undefined) p?.reject(new Error(e.error));
      else p?.resolve(e.result);
    } else if (e.ev === 'posting') {
      this.pending.get(e.id)?.onPosting?.(e.t);
    } else if (e.ev === 'fatal') {
      this.stderr += `\n(fatal) ${e.error}`;
    } else {
      for (const cb of this.listeners) cb(e);
    }
  }

  private call<T>(cmd: Record<string, unknown> & { op: Command['op'] }, onPosting?: (t: number) => void): Promise<T> {
    if (this.ended) return Promise.reject(new Error(this.ended));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onPosting });
      this.child.stdin!.write(JSON.stringify({ ...cmd, id }) + '\n');
    });
  }

  startWorkload(services: ServiceAddress[], spec: WorkloadSpec): Promise<void> {
    return this.call({ op: 'start', services, spec });
  }

  /** Resolves once every client has finished its current command and closed its connection. */
  stopWorkload(): Promise<void> {
    return this.call({ op: 'stop' });
  }

  /** GET /status of a node from inside the lab; undefined when it does not answer. */
  async status(url: string, timeoutMs = 800): Promise<NodeStatusDoc | undefined> {
    return (await this.call<NodeStatusDoc | null>({ op: 'status', url, timeoutMs })) ?? undefined;
  }

  /**
   * POST /<action> to a node. `sent` resolves when the worker is about to send it (so a test can act right
   * after, e.g. kill a node mid-checkpoint); `answered` with the node's answer.
   */
  post(url: string, action: 'checkpoint' | 'failover', token: string): { sent: Promise<number>; answered: Promise<unknown> } {
    let onPosting!: (t: number) => void;
    const sent = new Promise<number>((r) => (onPosting = r));
    const answered = this.call({ op: 'post', url, action, token }, onPosting);
    answered.catch(() => onPosting(Date.now()));
    return { sent, answered };
  }

  /** Every key's value on the node serving at `service` (MGET in batches). */
  async read(service: ServiceAddress, keys: string[], timeoutMs = 5000): Promise<Map<string, string | null>> {
    const found = await this.call<Record<string, string | null>>({ op: 'read', service, keys, timeoutMs });
    return new Map(Object.entries(found));
  }

  close(): void {
    this.child.stdin?.end();
    this.child.kill('SIGKILL');
  }
}

/**
 * Feeds a worker's events into a Ledger (ledger.ts: the acknowledged-write rules) and keeps what the fault
 * report needs: problems seen while running (a GET that contradicts the last acknowledged SET, an INCR that
 * goes backwards for its client, a wrong answer) and when each write was acknowledged, on which node.
 */
export class LedgerFeed {
  readonly ledger = new Ledger();
  readonly problems: string[] = [];
  /** Acknowledgement times (worker clock), in order, with the node that acknowledged. */
  readonly acks: { t: number; node: number }[] = [];
  commands = 0;
  times = 0;
  /** Highest INCR reply each client has seen per counter: a later one must be higher. */
  private seen = new Map<string, number>();

  readonly handle = (e: ClientEvent): void => {
    const L = this.ledger;
    switch (e.ev) {
      case 'begin':
        if (e.op === 'set') L.beginSet(e.key, e.value);
        else L.beginIncr(e.key);
        break;
      case 'ack':
        this.commands++;
        this.acks.push({ t: e.t, node: e.node });
        if (e.op === 'set') L.ackSet(e.key, e.value);
        else {
          const id = `${e.c}/${e.key}`;
          const p = L.ackIncr(e.key, e.reply, this.seen.get(id) ?? 0);
          if (p) this.problems.push(`client ${e.c} on node ${e.node}: ${p}`);
          this.seen.set(id, Math.max(this.seen.get(id) ?? 0, e.reply));
        }
        break;
      case 'get': {
        this.commands++;
        // Only client c writes its keys, one command at a time, and its events arrive in order: the ledger
        // holds now what it held when the GET was sent.
        const expected = L.expectedNow(e.key);
        if (expected !== undefined && e.reply !== expected) {
          this.problems.push(`client ${e.c} on node ${e.node}: GET ${e.key} answered ${JSON.stringify(e.reply)}, the last acknowledged SET wrote ${JSON.stringify(expected)}`);
        }
        break;
      }
      case 'time':
        this.commands++;
        this.times++;
        break;
      case 'bad':
        this.problems.push(`client ${e.c} on node ${e.node}: ${e.what}`);
        break;
    }
  };

  /**
   * Checks what the surviving primary holds against the ledger (ledger.ts rules) and re-baselines both the
   * ledger and the per-client INCR floors to it. Returns the lost or impossible writes.
   */
  verify(found: Map<string, string | null>): string[] {
    const problems = this.ledger.verify(found);
    // What a client may see next is what the survivor holds now (after a loss, lower than it saw before).
    const next = new Map<string, number>();
    for (const id of this.seen.keys()) next.set(id, Number(found.get(id.slice(id.indexOf('/') + 1)) ?? 0));
    this.seen = next;
    return problems;
  }

  /** Longest time without an acknowledged write in [from, to] (ms), counting the edges of the window. */
  longestGap(from: number, to: number): number {
    let last = from;
    let gap = 0;
    for (const a of this.acks) {
      if (a.t < from) continue;
      if (a.t > to) break;
      gap = Math.max(gap, a.t - last);
      last = a.t;
    }
    return Math.max(gap, to - last);
  }

  /** Writes acknowledged in [from, to], by node index. */
  acknowledgedIn(from: number, to: number): number[] {
    const by = [0, 0];
    for (const a of this.acks) if (a.t >= from && a.t <= to) by[a.node] = (by[a.node] ?? 0) + 1;
    return by;
  }
}
