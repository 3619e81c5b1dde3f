import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startLocalArbiterServer, type LocalArbiterServer } from '@colo/coordinator';
import { getStatus, type NodeStatusDoc } from '../client/admin-client.js';
import { withNodeHeapFlags } from '../runtime/node-flags.js';
import { RotatingLog } from './rotating-log.js';

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
  /** When the current process started (performance.now()), and how many in a row ended by themselves within QUICK_EXIT_MS. */
  startedAt: number;
  quickExits: number;
}

/** A node process that ends sooner than this after its start counts as a quick exit (a start that fails). */
const QUICK_EXIT_MS = 30_000;
/** Restart delays after quick exits in a row: 1 s, doubling, at most 30 s (as systemd's RestartSteps would). */
const RESTART_DELAY_MS = { first: 1000, max: 30_000 };

/** `colo pair` refused: another one runs in the same directory, or an address it needs is taken (exit 3). */
export class PairInUseError extends Error {
  override readonly name = 'PairInUseError';
}

export class PairSupervisor {
  readonly nodes: [PairNode, PairNode];
  readonly tokenFile: string;
  /** The pre-shared key both nodes' links authenticate with. */
  private readonly pskFile: string;
  private readonly opts: PairOptions;
  private stopping = false;
  private logs = new Map<string, RotatingLog>();
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
    const dir = (this.dir = resolve(opts.dir));
    this.pskFile = join(dir, 'psk');
    this.tokenFile = join(dir, 'admin-token');
    const mk = (name: 'a' | 'b', i: number): PairNode => ({
      name,
      id: `node-${name}`,
      adminUrl: `http://${opts.host}:${opts.adminPort + i}`,
      service: { host: opts.host, port: opts.servicePort + i },
      replicationUrl: `ws://${opts.host}:${opts.replicationPort + i}`,
      configFile: join(dir, `node-${name}.yaml`),
      logFile: join(dir, `node-${name}.log`),
      restarts: 0,
      startedAt: 0,
      quickExits: 0,
    });
    this.nodes = [mk('a', 0), mk('b', 1)];
    this.arbiterSocket = join(dir, 'arbiter.sock');
    if (opts.arbiter === 'etcd' && !opts.etcd) throw new Error('the etcd arbiter needs the URL of an etcd (--etcd http://HOST:2379)');
  }

  /** The state directory (configs, keys, logs, the arbiter's socket, the lock). */
  readonly dir: string;
  private readonly lockFile = () => join(this.dir, 'pair.pid');
  private locked = false;

  /**
   * Claims the state directory and checks every address the pair listens on, before anything is written: a second
   * `colo pair` must not overwrite a running pair's key and token, nor report itself up on the first one's ports.
   */
  private async claim(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = this.lockFile();
    for (let attempt = 0; ; attempt++) {
      try {
        writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        this.locked = true;
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
        const pid = Number(readFileSync(lock, 'utf8').trim());
        if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
          throw new PairInUseError(`a colo pair already runs in ${this.dir} (pid ${pid}); stop it first, or give another --dir`);
        }
        rmSync(lock, { force: true }); // left by a pair that ended without cleaning up
      }
    }
    const o = this.opts;
    const addresses = [o.servicePort, o.adminPort, ...(this.opts.blackhole ? [] : [o.replicationPort])].flatMap((p) => [p, p + 1]);
    for (const port of addresses) {
      const taken = await inUse(o.host, port);
      if (taken) {
        this.release();
        throw new PairInUseError(`${o.host}:${port} is in use (${taken}): another colo pair or another program holds it; choose other ports (--service-port, --admin-port, --replication-port)`);
      }
    }
  }

  private release(): void {
    if (!this.locked) return;
    this.locked = false;
    rmSync(this.lockFile(), { force: true });
  }

  /** Fresh secrets for this run: the link's pre-shared key and the admin token, readable by this user only. */
  private writeSecrets(): void {
    writeFileSync(this.pskFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    writeFileSync(this.tokenFile, randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
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
        // A pair on one machine is for trying and drilling: `colo drill` crashes its primary through POST /crash.
        admin: { listen: `${opts.host}:${opts.adminPort + i}`, token_file: this.tokenFile, allow_crash: true },
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
    await this.claim();
    this.writeSecrets();
    this.writeConfigs();
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
      log = new RotatingLog(n.logFile);
      this.logs.set(n.id, log);
    }
    const into = log;
    const child = spawn(cmd!, [...args, 'node', '--config', n.configFile, '--node-role', role], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env },
    });
    child.stdout!.on('data', (d: Buffer) => into.write(d));
    child.stderr!.on('data', (d: Buffer) => into.write(d));
    n.process = child;
    n.startedAt = performance.now();
    this.onEvent(`${n.id}: started as ${role} (pid ${child.pid}, log ${n.logFile})`);
    child.on('exit', (code, signal) => {
      if (n.process === child) n.process = undefined;
      if (this.stopping) return;
      // A node killed by a signal (a drill, a crash, an operator) did not fail to start: only exits of its own
      // soon after a start count towards the back-off.
      n.quickExits = signal === null && performance.now() - n.startedAt < QUICK_EXIT_MS ? n.quickExits + 1 : 0;
      this.onEvent(`${n.id}: exited (${signal ?? `code ${code}`})`);
      if (this.opts.blackhole) return;
      void this.rejoin(n);
    });
  }

  /**
   * Before restarting a node whose last starts ended quickly: a node that cannot start (a taken port, a bad
   * setting on its host) is retried at 1, 2, 4 ... 30 s, not as fast as it fails. A node that ran for a while
   * (a crash in a drill, a lost decision) restarts at once.
   */
  private async backOff(n: PairNode): Promise<void> {
    if (n.quickExits < 2) return;
    const delay = Math.min(RESTART_DELAY_MS.max, RESTART_DELAY_MS.first * 2 ** (n.quickExits - 2));
    this.onEvent(`${n.id}: restarting in ${delay / 1000} s (${n.quickExits} quick exits in a row; see ${n.logFile})`);
    await new Promise((r) => setTimeout(r, delay));
  }

  /** A node died: once the other node acts as primary, start this one again as its secondary. */
  private async rejoin(n: PairNode): Promise<void> {
    await this.backOff(n);
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
    for (const l of this.logs.values()) l.close();
    this.logs.clear();
    await this.arbiterServer?.close();
    this.release();
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why host:port cannot be listened on (EADDRINUSE, EACCES, ...), or undefined when it can. */
function inUse(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolveCheck) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) => resolveCheck(e.code ?? e.message));
    server.listen(port, host, () => server.close(() => resolveCheck(undefined)));
  });
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
