import { execFileSync, spawn as spawnChild, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * A network "lab" for fault tests: one Linux network namespace per host, all joined by a bridge that lives in
 * a namespace of its own, with private addresses that exist only inside the lab. Faults are nftables rules
 * inside the hosts' namespaces, so cutting a link drops every packet of it, including those of TCP connections
 * already established (there is no "ct state established accept" anywhere: a cut is a cable pulled out).
 *
 * Nothing is ever added to the root namespace: no address, no route, no rule. Code that must talk to a host of
 * the lab runs inside another host of it (`spawn(host, ...)`).
 *
 * Namespace names carry the owning process's pid (`colo-<pid>-<run>-<host>`), so a later run can tell the
 * leftovers of a crashed run (owner dead) from a lab still in use by a test running in parallel (owner alive).
 */

export type Direction = 'both' | 'in' | 'out';

export interface LabHost {
  /** The short name the test uses ('a', 'b', 'e', 'c', ...). */
  name: string;
  /** The network namespace's name. */
  ns: string;
  /** The host's address on the lab's bridge. */
  addr: string;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Lab {
  /** What the test called it (for messages). */
  readonly name: string;
  /** The prefix of every namespace of this lab. */
  readonly prefix: string;
  readonly hosts: Readonly<Record<string, LabHost>>;
  /** The address of `host` on the bridge. */
  addr(host: string): string;
  /** Runs a command inside `host`'s namespace to completion. Rejects only when it cannot be started or times out. */
  exec(host: string, cmd: string, args?: string[], timeoutMs?: number): Promise<ExecResult>;
  /** Starts a long-lived process inside `host`'s namespace; `destroy()` kills it if it is still running. */
  spawn(host: string, cmd: string, args?: string[], options?: SpawnOptions): ChildProcess;
  /**
   * Drops traffic between `from` and `to`: 'out' the packets `from` sends to `to`, 'in' those it receives from
   * `to`, 'both' both (default). The rules live in `from`'s namespace.
   */
  cut(from: string, to: string, options?: { direction?: Direction }): Promise<void>;
  /** Cuts `host` from every other host of the lab, both ways (its loopback still works). */
  isolate(host: string): Promise<void>;
  /** Removes every cut. */
  heal(): Promise<void>;
  /** The cuts in force, as "a -x- b (both)" strings, for fault schedules in test output. */
  cuts(): string[];
  /** Kills every process in the lab's namespaces and deletes them. Safe to call more than once. */
  destroy(): Promise<void>;
}

const PREFIX = 'colo-';
/** colo-<pid>-<run>-<host>: see the module comment. */
const NAME_RE = /^colo-(\d+)-([0-9a-f]{4})-([a-z0-9]+)$/;
/** The machine's rules: test addresses come from 10.200.0.0/16 only (every lab is its own bridge, so they repeat). */
const SUBNET = '10.200.0';
const TABLE = 'colo_lab';
const DEFAULT_HOSTS = ['a', 'b', 'e', 'c'];

const live = new Set<LabImpl>();
let handlersInstalled = false;

/**
 * Creates a lab of `hosts` (default a, b, e, c), each with `lo` up and an address 10.200.0.<n>/24 on the lab's
 * bridge. First removes the leftovers of earlier runs whose owning process is dead. Throws, naming what is
 * missing, when the machine cannot host a lab (not root, no `ip`, no `nft`, no namespace support): a fault
 * test that cannot fault must fail, never pass or skip.
 */
export async function createLab(name: string, hosts: string[] = DEFAULT_HOSTS): Promise<Lab> {
  checkPrerequisites();
  sweepLeftovers();
  if (new Set(hosts).size !== hosts.length || hosts.some((h) => !/^[a-z][a-z0-9]{0,5}$/.test(h) || h === 'x')) {
    throw new Error(`createLab(${name}): host names must be distinct, short, lower-case, not 'x' (the bridge): ${hosts.join(', ')}`);
  }
  const lab = new LabImpl(name, `${PREFIX}${process.pid}-${randomBytes(2).toString('hex')}`, hosts);
  live.add(lab);
  installExitHandlers();
  try {
    lab.build();
  } catch (e) {
    lab.destroySync();
    throw new Error(`createLab(${name}): could not build the lab: ${(e as Error).message}`, { cause: e });
  }
  return lab;
}

function checkPrerequisites(): void {
  const missing: string[] = [];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) missing.push(`root (running as uid ${process.getuid()})`);
  for (const tool of ['ip', 'nft']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (r.status !== 0) missing.push(`the '${tool}' command (${tool === 'nft' ? 'apt-get install nftables' : 'apt-get install iproute2'})`);
  }
  if (missing.length > 0) {
    throw new Error(`cannot create a network namespace lab: missing ${missing.join('; ')}. This test needs real namespaces and nftables; it does not skip.`);
  }
}

/** Runs `ip` (or another command) synchronously; throws with its stderr. */
function run(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`);
  }
}

function listNamespaces(): string[] {
  // "name (id: 3)" or just "name" per line.
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter(Boolean);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills every process inside namespace `ns` (SIGKILL also ends stopped ones) and deletes it. */
function removeNamespace(ns: string): void {
  for (let round = 0; round < 5; round++) {
    const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
    const pids = (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('sleep', ['0.05']);
  }
  spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' });
}

/** Removes the namespaces of earlier labs whose owning process no longer exists (a crashed or killed run). */
function sweepLeftovers(): void {
  const byOwner = new Map<number, string[]>();
  for (const ns of listNamespaces()) {
    const m = NAME_RE.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (!byOwner.has(pid)) byOwner.set(pid, []);
    byOwner.get(pid)!.push(ns);
  }
  for (const [pid, names] of byOwner) {
    if (pid === process.pid || pidAlive(pid)) continue;
    for (const ns of names) removeNamespace(ns);
  }
}

/**
 * Cleanup that runs however the test process ends: a normal exit, Ctrl-C, a SIGTERM from the runner. The
 * handlers are synchronous (the 'exit' event allows nothing else). A signal is re-raised afterwards, so the
 * process still dies of it when nobody else handles it.
 */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const all = () => {
    for (const lab of [...live]) lab.destroySync();
  };
  process.on('exit', all);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      all();
      process.off(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

interface Cut {
  from: string;
  to: string;
  direction: Direction;
}

class LabImpl implements Lab {
  readonly hosts: Record<string, LabHost> = {};
  private readonly bridgeNs: string;
  private readonly children = new Set<ChildProcess>();
  private readonly activeCuts: Cut[] = [];
  private destroyed = false;
  readonly name: string;
  readonly prefix: string;

  constructor(name: string, prefix: string, hostNames: string[]) {
    this.name = name;
    this.prefix = prefix;
    this.bridgeNs = `${prefix}-x`;
    hostNames.forEach((h, i) => {
      this.hosts[h] = { name: h, ns: `${prefix}-${h}`, addr: `${SUBNET}.${i + 1}` };
    });
  }

  build(): void {
    run('ip', ['netns', 'add', this.bridgeNs]);
    run('ip', ['-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', this.bridgeNs, 'link', 'set', 'br0', 'up']);
    for (const h of Object.values(this.hosts)) {
      run('ip', ['netns', 'add', h.ns]);
      // Both ends are created straight inside their namespaces: no interface ever appears in the root
      // namespace, so the names cannot collide with the machine's or another lab's. The host's end is `lab0`,
      // never a name the machine's own interfaces use.
      run('ip', ['link', 'add', 'lab0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', `p-${h.name}`, 'netns', this.bridgeNs]);
      run('ip', ['-n', this.bridgeNs, 'link', 'set', `p-${h.name}`, 'master', 'br0']);
      run('ip', ['-n', this.bridgeNs, 'link', 'set', `p-${h.name}`, 'up']);
      run('ip', ['-n', h.ns, 'link', 'set', 'lo', 'up']);
      // IPv4 only: the cuts match IPv4 addresses, so no IPv6 (link-local) path may exist around them.
      spawnSync('ip', ['netns', 'exec', h.ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.lab0.disable_ipv6=1']);
      run('ip', ['-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'lab0']);
      run('ip', ['-n', h.ns, 'link', 'set', 'lab0', 'up']);
    }
  }

  private host(h: string): LabHost {
    const x = this.hosts[h];
    if (!x) throw new Error(`lab ${this.name}: no host '${h}' (hosts: ${Object.keys(this.hosts).join(', ')})`);
    if (this.destroyed) throw new Error(`lab ${this.name} was destroyed`);
    return x;
  }

  addr(h: string): string {
    return this.host(h).addr;
  }

  exec(h: string, cmd: string, args: string[] = [], timeoutMs = 30_000): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const child = this.spawn(h, cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d) => (stdout += d));
      child.stderr!.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${cmd} ${args.join(' ')} in ${h} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
      }, timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  spawn(h: string, cmd: string, args: string[] = [], options: SpawnOptions = {}): ChildProcess {
    // `ip netns exec` joins the namespace and then execs the command: the child's pid is the command's own, so
    // signals (SIGSTOP to freeze a node, SIGKILL) reach it and not a wrapper.
    const child = spawnChild('ip', ['netns', 'exec', this.host(h).ns, cmd, ...args], options);
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
    return child;
  }

  async cut(from: string, to: string, options: { direction?: Direction } = {}): Promise<void> {
    const direction = options.direction ?? 'both';
    const src = this.host(from);
    const dst = this.host(to);
    if (src === dst) throw new Error(`lab ${this.name}: cannot cut ${from} from itself`);
    this.ensureTable(src);
    // `add rule` appends to a chain that has no accept rules at all: established flows are dropped too.
    if (direction !== 'in') this.nft(src, `add rule inet ${TABLE} output ip daddr ${dst.addr} counter drop`);
    if (direction !== 'out') this.nft(src, `add rule inet ${TABLE} input ip saddr ${dst.addr} counter drop`);
    this.activeCuts.push({ from, to, direction });
  }

  async isolate(h: string): Promise<void> {
    for (const other of Object.keys(this.hosts)) if (other !== h) await this.cut(h, other, { direction: 'both' });
  }

  async heal(): Promise<void> {
    for (const h of new Set(this.activeCuts.map((c) => c.from))) {
      this.nft(this.host(h), `delete table inet ${TABLE}`);
    }
    this.activeCuts.length = 0;
  }

  cuts(): string[] {
    return this.activeCuts.map((c) => `${c.from} ${c.direction === 'both' ? '-x-' : c.direction === 'out' ? '-x>' : '<x-'} ${c.to}`);
  }

  private ensureTable(h: LabHost): void {
    if (this.activeCuts.some((c) => c.from === h.name)) return;
    // Priority -10: before any other filter a namespace could have (there are none in a fresh one).
    this.nft(
      h,
      [
        `add table inet ${TABLE}`,
        `add chain inet ${TABLE} input { type filter hook input priority -10; policy accept; }`,
        `add chain inet ${TABLE} output { type filter hook output priority -10; policy accept; }`,
      ].join('\n'),
    );
  }

  private nft(h: LabHost, script: string): void {
    run('ip', ['netns', 'exec', h.ns, 'nft', '-f', '-'], script + '\n');
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const c of this.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    // Anything else still inside (a grandchild, a process started by hand) dies with its namespace.
    for (const h of Object.values(this.hosts)) removeNamespace(h.ns);
    removeNamespace(this.bridgeNs);
  }
}
