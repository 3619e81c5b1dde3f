import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startLocalArbiterServer, type LocalArbiterServer } from '@colo/coordinator';
import { getStatus, type NodeStatusDoc } from '../client/admin-client.js';
import { withNodeHeapFlags } from '../runtime/node-flags.js';

/**
 * `colo pair`: both nodes of a pair on this machine, as two separate `colo node` processes, the embedded
 * default behind `npm start`. It writes each node's config, key and token into a state directory, starts node A
 * as primary and node B as its secondary, and keeps the pair protected: when a node process dies (a crash in a
 * drill, a kill), it starts it again as a secondary of whichever node is primary now (re-protection).
 *
 * With the `local` arbiter (the default) it also holds the pair's epoch record and serves it to both nodes on a
 * unix socket in the state directory: a node that loses its peer acts alone only after winning the next epoch
 * there, so a frozen or partitioned node can never serve beside the other (docs/architecture.md, "The arbiter").
 */
export interface PairOptions {
  dir: string;
  mode: 'colo' | 'remus';
  memory: string;
  host: string;
  /** First port of each kind; node B uses +1. */
  servicePort: number;
  adminPort: number;
  replicationPort: number;
  dirtyRate: number;
  /** More settings for both nodes' configs, merged section by section into what the supervisor writes. */
  extra: Record<string, unknown>;
  logLevel: string;
  /** Who decides which node acts alone after they lose each other (default local: this supervisor). */
  arbiter?: 'local' | 'none' | 'etcd';
  /** etcd: the members' client URLs, comma separated (an etcd the user started). */
  etcd?: string;
  /**
   * A QEMU virtual machine instead of the simulated guest (Remus mode): its kernel, initramfs, accelerator, and
   * the first of two host ports its service is forwarded to (node B's is the next one).
   */
  qemu?: { kernel: string; initrd: string; accel: 'kvm' | 'tcg'; forwardPort: number };
  /** Command that runs the colo CLI (default: this very process's node + script). */
  coloCommand?: string[];
  /**
   * Remus blackhole: node A alone, checkpointing into nothing (remus.blackhole); no secondary, no arbiter, and a
   * node that exits is not restarted (there is nothing to rejoin).
   */
  blackhole?: boolean;
}

export interface PairNode {
  name: 'a' | 'b';
  id: string;
  adminUrl: string;
  service: { host: string; port: number };
  replicationUrl: string;
  configFile: string;
  logFile: string;
  process?: ChildProcess;
  restarts: number;
}

export class PairSupervisor {
  readonly nodes: [PairNode, PairNode];
  readonly tokenFile: string;
  /** The pre-shared key both nodes' links authenticate with. */
  private readonly pskFile: string;
  private readonly opts: PairOptions;
  private stopping = false;
  private logs = new Map<string, WriteStream>();
  private watchdog: NodeJS.Timeout | undefined;
  private fencing = false;
  private arbiterServer: LocalArbiterServer | undefined;
  /** etcd: this run's name for the pair in etcd's key space (a fresh one whenever both nodes start afresh). */
  private etcdPair = `colo-pair-${randomBytes(4).toString('hex')}`;
  /** The local arbiter's unix socket (in the state directory). */
  readonly arbiterSocket: string;
  onEvent: (line: string) => void = () => {};

  constructor(opts: PairOptions) {
    this.opts = opts;
    const dir = resolve(opts.dir);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const psk = (this.pskFile = join(dir, 'psk'));
    this.tokenFile = join(dir, 'admin-token');
    writeFileSync(psk, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    writeFileSync(this.tokenFile, randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
    const mk = (name: 'a' | 'b', i: number): PairNode => ({
      name,
      id: `node-${name}`,
      adminUrl: `http://${opts.host}:${opts.adminPort + i}`,
      service: { host: opts.host, port: opts.servicePort + i },
      replicationUrl: `ws://${opts.host}:${opts.replicationPort + i}`,
      configFile: join(dir, `node-${name}.yaml`),
      logFile: join(dir, `node-${name}.log`),
      restarts: 0,
    });
    this.nodes = [mk('a', 0), mk('b', 1)];
    this.arbiterSocket = join(dir, 'arbiter.sock');
    if (opts.arbiter === 'etcd' && !opts.etcd) throw new Error('the etcd arbiter needs the URL of an etcd (--etcd http://HOST:2379)');
    this.writeConfigs();
  }

  /** Who decides for the pair, as both nodes' configs say it. */
  get arbiterKind(): 'local' | 'none' | 'etcd' {
    if (this.opts.blackhole) return 'none';
    return this.opts.arbiter ?? 'local';
  }

  private writeConfigs(): void {
    const opts = this.opts;
    const psk = this.pskFile;
    const arbiter =
      this.arbiterKind === 'local'
        ? { kind: 'local', endpoints: `unix:${this.arbiterSocket}` }
        : this.arbiterKind === 'etcd'
          ? { kind: 'etcd', endpoints: opts.etcd, pair: this.etcdPair }
          : { kind: 'none' };
    for (const [i, n] of this.nodes.entries()) {
      const other = this.nodes[1 - i]!;
      const config = merge({
        node: { id: n.id, mode: opts.mode },
        guest: opts.qemu
          ? { kind: 'qemu', memory: opts.memory, kernel: opts.qemu.kernel, initrd: opts.qemu.initrd, accel: opts.qemu.accel, forward: `127.0.0.1:${opts.qemu.forwardPort + i}` }
          : { memory: opts.memory, dirty_rate: opts.dirtyRate },
        replication: { listen: `${opts.host}:${opts.replicationPort + i}`, peer: other.replicationUrl, psk_file: psk },
        service: { listen: `${n.service.host}:${n.service.port}` },
        admin: { listen: `${opts.host}:${opts.adminPort + i}`, token_file: this.tokenFile },
        arbiter,
        ...(opts.blackhole ? { remus: { blackhole: true } } : {}),
        log: { level: opts.logLevel },
      }, opts.extra);
      writeFileSync(n.configFile, `# written by colo pair\n${stringify(config)}`);
    }
  }

  private coloCommand(): string[] {
    return this.opts.coloCommand ?? [process.execPath, ...withNodeHeapFlags(process.execArgv), process.argv[1]!];
  }

  /**
   * Starts node A as primary and node B as its secondary, once A listens for it (a secondary that dials too
   * early fails to start), and watches for two primaries.
   */
  async start(): Promise<void> {
    if (this.arbiterKind === 'local') {
      this.arbiterServer = await startLocalArbiterServer(this.arbiterSocket);
      this.onEvent(`local arbiter: ${this.arbiterSocket}`);
    }
    if (this.stopping) return;
    this.spawnNode(this.nodes[0], 'primary');
    if (this.opts.blackhole) return;
    void this.whenListening(this.nodes[0], 30_000).then(() => {
      if (!this.stopping) this.spawnNode(this.nodes[1], 'secondary');
    });
    this.watchdog = setInterval(() => void this.fenceSplitBrain(), 500);
    this.watchdog.unref();
  }

  /** Resolves when `n` reports a replication listener (or after `timeoutMs`: the secondary then retries by restart). */
  private async whenListening(n: PairNode, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stopping && Date.now() < deadline) {
      const s = await getStatus(n.adminUrl, 1000).catch(() => undefined);
      if (s?.role === 'primary' && s.listening) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Two primaries (a secondary promoted itself while the old primary kept running, e.g. after `colo failover`):
   * docs/operations.md, "Split brain": stop the node with the lower epoch and re-add it as a secondary. The
   * exit handler restarts it as a secondary of the newer primary. Ties are left alone (no way to tell).
   */
  private async fenceSplitBrain(): Promise<void> {
    if (this.fencing || this.stopping) return;
    this.fencing = true;
    try {
      const [a, b] = await this.statuses();
      if (a?.role !== 'primary' || b?.role !== 'primary' || a.epoch === b.epoch || this.stopping) return;
      const [loser, winner] = a.epoch < b.epoch ? [this.nodes[0], this.nodes[1]] : [this.nodes[1], this.nodes[0]];
      const child = loser.process;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      this.onEvent(`${loser.id} (epoch ${Math.min(a.epoch, b.epoch)}) and ${winner.id} (epoch ${Math.max(a.epoch, b.epoch)}) both act as primary: stopping ${loser.id}, the older, to re-add it as a secondary`);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.kill('SIGTERM');
      await exited;
      clearTimeout(timer);
    } finally {
      this.fencing = false;
    }
  }

  private spawnNode(n: PairNode, role: 'primary' | 'secondary'): void {
    const [cmd, ...args] = this.coloCommand();
    let log = this.logs.get(n.id);
    if (!log) {
      log = createWriteStream(n.logFile, { flags: 'a' });
      this.logs.set(n.id, log);
    }
    const child = spawn(cmd!, [...args, 'node', '--config', n.configFile, '--node-role', role], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    n.process = child;
    this.onEvent(`${n.id}: started as ${role} (pid ${child.pid}, log ${n.logFile})`);
    child.on('exit', (code, signal) => {
      if (n.process === child) n.process = undefined;
      if (this.stopping) return;
      this.onEvent(`${n.id}: exited (${signal ?? `code ${code}`})`);
      if (this.opts.blackhole) return;
      void this.rejoin(n);
    });
  }

  /** A node died: once the other node acts as primary, start this one again as its secondary. */
  private async rejoin(n: PairNode): Promise<void> {
    const other = this.nodes.find((x) => x !== n)!;
    for (let attempt = 0; !this.stopping; attempt++) {
      const s = await getStatus(other.adminUrl, 1000).catch(() => undefined);
      if (s?.role === 'primary') break;
      if (!other.process && attempt > 50) {
        // Both processes exited: no node holds the guest any more, so the epoch record protects nothing. Only
        // this supervisor, which saw both exit, may say so to the arbiter (an operator's decision elsewhere).
        this.arbiterServer?.store.reset(null);
        if (this.arbiterKind === 'etcd') {
          this.etcdPair = `colo-pair-${randomBytes(4).toString('hex')}`;
          this.writeConfigs();
        }
        this.onEvent(`both nodes are down; restarting ${n.id} as primary from an empty guest`);
        this.spawnNode(n, 'primary');
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (this.stopping) return;
    n.restarts++;
    this.spawnNode(n, 'secondary');
  }

  async statuses(): Promise<(NodeStatusDoc | undefined)[]> {
    return Promise.all(this.nodes.map((n) => getStatus(n.adminUrl, 1000).catch(() => undefined)));
  }

  /** Stops both nodes (SIGTERM, then SIGKILL after the grace period). */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    await Promise.all(
      this.nodes.map(
        (n) =>
          new Promise<void>((resolveStop) => {
            const child = n.process;
            if (!child || child.exitCode !== null || child.signalCode !== null) return resolveStop();
            const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
            child.once('exit', () => {
              clearTimeout(timer);
              resolveStop();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    for (const l of this.logs.values()) l.end();
    await this.arbiterServer?.close();
  }

  /** etcd: the pair's name in etcd's key space now. */
  get etcdPairName(): string | undefined {
    return this.arbiterKind === 'etcd' ? this.etcdPair : undefined;
  }

  /** The local arbiter's record now (undefined without a local arbiter): for tests and status. */
  arbiterRecord(): { epoch: number; holder: string } | null | undefined {
    return this.arbiterServer?.store.peek();
  }
}

/** `extra` merged into `base` section by section (extra: { replication: { max_bandwidth } } keeps the rest). */
function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    const plain = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
    out[k] = plain(b) && plain(v) ? merge(b, v) : v;
  }
  return out;
}
