import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuError, QemuErrorCode } from './errors.js';
import { QmpClient, type QmpEvent } from './qmp.js';

/**
 * One QEMU process running one guest, started and supervised by colo: guest RAM in a shared file (readable and
 * writable from outside, so checkpoints can read and write pages), QMP on a unix socket, the guest's service
 * reached through QEMU user networking's host forward on 127.0.0.1 (nothing on the host's network changes).
 * QEMU is never daemonised: it is this process's child, and its exit is the guest's end (`onExit`). stop() and
 * kill() always leave nothing behind: the process is gone and its RAM file and socket are deleted.
 */
export type Accelerator = 'kvm' | 'tcg';

export interface QemuMachineOptions {
  /** Bootable kernel and initramfs (scripts/guest.sh builds both). */
  kernel: string;
  initrd: string;
  /** Guest memory in bytes: a multiple of 2 MiB, at least 64 MiB. */
  memoryBytes: number;
  /** kvm on real hosts (the default); tcg (software emulation) where KVM is unusable, such as nested VMs. */
  accel?: Accelerator;
  /** Guest name and identity (QEMU -name, -uuid). */
  name?: string;
  uuid?: string;
  /** Where the guest's service is forwarded from (127.0.0.1:port on this host) and its port inside the guest. */
  forward: { hostPort: number; guestPort: number };
  /** The QEMU binary. Default qemu-system-x86_64 from PATH. */
  qemuBinary?: string;
  /** Directory for the RAM file (default /dev/shm: the guest's memory is this machine's memory). */
  ramDir?: string;
  /** Where the guest's serial console is written (default: a file beside the QMP socket, deleted on stop). */
  consoleLog?: string;
  /** Bound on QEMU's start (until QMP answers) and on each QMP command. Defaults 30 s and 5 s. */
  startTimeoutMs?: number;
  commandTimeoutMs?: number;
  /** Kernel command line added to `console=ttyS0`. */
  append?: string;
  /**
   * Start from a checkpoint instead of booting: this file is the guest's RAM (the machine takes it over and
   * deletes it when it ends), and QEMU waits for its device and vCPU state (restore(): `-incoming defer`).
   */
  incoming?: { ramFile: string };
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What QEMU printed last (its stderr), for the operator. */
  stderr: string;
  /** The guest console's last lines (a guest that panicked or powered off ends QEMU with code 0). */
  console?: string;
}

export type RunState = 'running' | 'paused' | 'other';

/** util-linux's setpriv, which can set the parent-death signal before it execs QEMU. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** Machines of this process whose QEMU may still run: killed if this process exits first. */
const live = new Set<QemuMachine>();
let exitHandler = false;
const TAG = /^colo-qemu-(\d+)-[0-9a-f]{6}(\.ram)?$/;

/**
 * RAM files (and monitor folders) of machines whose owning process is gone (killed before its cleanup ran) are
 * this host's memory held for nothing: deleted whenever a machine is made. A file whose owner lives is left alone.
 */
export function sweepLeftovers(dir = '/dev/shm'): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = TAG.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(dir, n), { recursive: true, force: true });
    }
  }
}

function installExitHandler(): void {
  if (exitHandler) return;
  exitHandler = true;
  // Synchronous, as 'exit' requires: a QEMU never outlives the process that supervises it.
  process.on('exit', () => {
    for (const m of live) m.killNow();
  });
}

export class QemuMachine {
  readonly name: string;
  readonly uuid: string;
  readonly memoryBytes: number;
  /** The guest's RAM, as a file any process of this host can map. */
  readonly ramPath: string;
  readonly qmpPath: string;
  readonly consoleLog: string;
  readonly forward: { host: string; port: number };
  private readonly o: QemuMachineOptions;
  private child: ChildProcess | undefined;
  private qmp: QmpClient | undefined;
  private exitInfo: QemuExit | undefined;
  private readonly exitListeners = new Set<(e: QemuExit) => void>();
  private stderr = '';
  private readonly dir: string;

  constructor(o: QemuMachineOptions) {
    if (!existsSync(o.kernel)) throw new QemuError(QemuErrorCode.BAD_CONFIG, `no kernel at ${o.kernel} (scripts/guest.sh builds one)`);
    if (!existsSync(o.initrd)) throw new QemuError(QemuErrorCode.BAD_CONFIG, `no initramfs at ${o.initrd}`);
    const mib = o.memoryBytes / (1024 * 1024);
    if (!Number.isInteger(mib / 2) || mib < 64) throw new QemuError(QemuErrorCode.BAD_CONFIG, `guest memory ${o.memoryBytes} bytes: a multiple of 2 MiB, at least 64 MiB`);
    if ((o.accel ?? 'kvm') !== 'kvm' && o.accel !== 'tcg') throw new QemuError(QemuErrorCode.BAD_CONFIG, `accelerator ${String(o.accel)}: kvm or tcg`);
    this.o = o;
    this.name = o.name ?? 'colo-guest';
    this.uuid = o.uuid ?? randomUUID();
    this.memoryBytes = o.memoryBytes;
    // pid and a random part: several machines of one process, and a dead process's leftovers are recognisable.
    const tag = `colo-qemu-${process.pid}-${randomBytes(3).toString('hex')}`;
    if (o.incoming && !existsSync(o.incoming.ramFile)) throw new QemuError(QemuErrorCode.BAD_CONFIG, `no RAM file at ${o.incoming.ramFile} to start from`);
    this.ramPath = o.incoming?.ramFile ?? join(o.ramDir ?? '/dev/shm', `${tag}.ram`);
    this.dir = join(tmpdir(), tag);
    this.qmpPath = join(this.dir, 'qmp.sock');
    this.consoleLog = o.consoleLog ?? join(this.dir, 'console.log');
    this.forward = { host: '127.0.0.1', port: o.forward.hostPort };
    sweepLeftovers(o.ramDir ?? '/dev/shm');
    sweepLeftovers(tmpdir());
  }

  /** The QEMU command line this machine runs (for logs and docs). */
  args(): string[] {
    const o = this.o;
    const mib = this.memoryBytes / (1024 * 1024);
    return [
      '-name', this.name, '-uuid', this.uuid,
      '-accel', o.accel ?? 'kvm',
      '-m', `${mib}M`,
      '-object', `memory-backend-file,id=ram0,size=${mib}M,mem-path=${this.ramPath},share=on`,
      '-machine', 'pc,memory-backend=ram0',
      '-kernel', o.kernel, '-initrd', o.initrd,
      '-append', `console=ttyS0 quiet panic=-1 ${o.append ?? ''}`.trim(),
      '-display', 'none', '-monitor', 'none', '-serial', `file:${this.consoleLog}`,
      '-no-reboot',
      '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${o.forward.hostPort}-:${o.forward.guestPort}`,
      '-device', 'virtio-net-pci,netdev=n0',
      '-qmp', `unix:${this.qmpPath},server=on,wait=off`,
      ...(o.incoming ? ['-incoming', 'defer'] : []),
    ];
  }

  /** Starts QEMU and connects to its monitor. The guest boots; waitForService() tells when it serves. */
  async start(): Promise<void> {
    if (this.child) throw new QemuError(QemuErrorCode.BAD_CONFIG, 'this machine was already started');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const binary = this.o.qemuBinary ?? 'qemu-system-x86_64';
    // setpriv --pdeathsig: the kernel kills QEMU when this process dies, even by SIGKILL (no exit handler runs
    // then): a guest never outlives the node that protects it. Without setpriv, the exit handler covers the rest.
    const child = SETPRIV
      ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', binary, ...this.args()], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(binary, this.args(), { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    live.add(this);
    installExitHandler();
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (e) => {
        // Never started (no such binary): there will be no 'exit'; this is its end.
        if (child.pid === undefined && !this.exitInfo) {
          live.delete(this);
          this.exitInfo = { code: null, signal: null, stderr: e.message };
          this.cleanFiles();
        }
        reject(new QemuError(QemuErrorCode.START_FAILED, `could not run ${binary}: ${e.message}`, { cause: e }));
      });
    });
    // 'close', not 'exit': it comes once QEMU's stderr is read to the end, so its last words are in exitInfo.
    child.once('close', (code, signal) => {
      live.delete(this);
      this.exitInfo = { code, signal, stderr: this.stderr.trim(), console: consoleTail(this.consoleLog) };
      this.qmp?.close();
      this.cleanFiles();
      for (const cb of this.exitListeners) cb(this.exitInfo);
    });
    try {
      await spawned;
      this.qmp = await QmpClient.connect(this.qmpPath, {
        timeoutMs: this.o.startTimeoutMs ?? 30_000,
        commandTimeoutMs: this.o.commandTimeoutMs ?? 5000,
        alive: () => this.exitInfo === undefined,
      });
    } catch (e) {
      const endedByItself = this.exitInfo !== undefined;
      await this.kill();
      // QEMU that ended while starting (it refused its arguments) may do so before or after creating its
      // monitor's socket: either way it is a failed start, and its last words say why.
      if (e instanceof QemuError && (e.code === QemuErrorCode.START_FAILED || (e.code === QemuErrorCode.EXITED && (endedByItself || this.stderr !== '')))) {
        const why = this.stderr ? `: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}` : '';
        throw new QemuError(QemuErrorCode.START_FAILED, `QEMU did not start${why}`, { cause: e });
      }
      throw e;
    }
  }

  /** The process's pid (undefined before start). */
  get pid(): number | undefined {
    return this.child?.pid;
  }
  /** How QEMU ended, once it has. */
  get exited(): QemuExit | undefined {
    return this.exitInfo;
  }

  /** Called once when QEMU exits, for whatever reason (the guest is gone). */
  onExit(cb: (e: QemuExit) => void): () => void {
    this.exitListeners.add(cb);
    return () => this.exitListeners.delete(cb);
  }
  onEvent(cb: (e: QmpEvent) => void): () => void {
    if (!this.qmp) throw new QemuError(QemuErrorCode.BAD_CONFIG, 'the machine is not started');
    return this.qmp.onEvent(cb);
  }

  /** A QMP command; a machine that exited rejects with EXITED. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    if (this.exitInfo) return Promise.reject(this.exitedError());
    if (!this.qmp) return Promise.reject(new QemuError(QemuErrorCode.BAD_CONFIG, 'the machine is not started'));
    return this.qmp.execute<T>(command, args, timeoutMs ?? this.o.commandTimeoutMs ?? 5000).catch((e: unknown) => {
      throw this.exitInfo ? this.exitedError() : e;
    });
  }

  /** Stops the vCPUs (QMP stop): no guest instruction runs and no page changes until resume(). */
  async pause(): Promise<void> {
    await this.execute('stop');
  }
  async resume(): Promise<void> {
    await this.execute('cont');
  }
  async runState(): Promise<RunState> {
    const s = await this.execute<{ status: string; running: boolean }>('query-status');
    return s.running ? 'running' : s.status === 'paused' ? 'paused' : 'other';
  }

  /**
   * Waits until `probe` (a client of the guest's service on forward.host:forward.port) succeeds, trying every
   * 200 ms; rejects GUEST_NOT_READY after `timeoutMs`, EXITED if QEMU ends first.
   */
  async waitForService(probe: (host: string, port: number) => Promise<boolean>, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (this.exitInfo) throw this.exitedError();
      if (await probe(this.forward.host, this.forward.port).catch(() => false)) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) throw new QemuError(QemuErrorCode.GUEST_NOT_READY, `the guest's service on ${this.forward.host}:${this.forward.port} did not answer within ${timeoutMs} ms (console: ${this.consoleLog})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Asks QEMU to quit; kills it if it has not exited within `graceMs`. Resolves once it is gone. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.child || this.exitInfo) return this.cleanFiles();
    const gone = this.exitPromise();
    this.qmp?.execute('quit', undefined, graceMs).catch(() => {});
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }

  /** SIGKILL (also ends a stopped process); resolves once it is gone and its files are deleted. */
  async kill(): Promise<void> {
    if (!this.child || this.exitInfo) return this.cleanFiles();
    const gone = this.exitPromise();
    this.child.kill('SIGKILL');
    await gone;
  }

  /** SIGKILL and delete the files at once, without waiting (this process is exiting). */
  killNow(): void {
    if (this.child && !this.exitInfo) this.child.kill('SIGKILL');
    this.cleanFiles();
  }

  private exitPromise(): Promise<void> {
    return new Promise((resolve) => {
      if (this.exitInfo) return resolve();
      this.onExit(() => resolve());
    });
  }

  private exitedError(): QemuError {
    const x = this.exitInfo!;
    // Code 0 with -no-reboot: the guest powered off or reset itself (a kernel panic, or a guest too small for
    // its kernel and initramfs, which resets before its console prints anything).
    const said = x.stderr || (x.code === 0 ? (x.console ?? 'the guest powered off or reset before its console printed anything (too little memory?)') : '');
    return new QemuError(QemuErrorCode.EXITED, `QEMU exited (${x.signal ?? `code ${x.code}`})${said ? `: ${said.split('\n').slice(-2).join(' | ')}` : ''}`);
  }

  private cleanFiles(): void {
    rmSync(this.ramPath, { force: true });
    // The folder holds the monitor socket and, unless the caller named its own, the console log.
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The last few lines of a guest console log (read before the log is removed), or undefined. */
function consoleTail(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'latin1').slice(-1500);
    const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
    return lines.length > 0 ? lines.slice(-4).join('\n') : undefined;
  } catch {
    return undefined;
  }
}

/** A probe for waitForService: the TCP port accepts and answers `send` with something starting with `expect`. */
export function tcpProbe(send: string, expect: string, timeoutMs = 1000): (host: string, port: number) => Promise<boolean> {
  return (host, port) =>
    new Promise((resolve) => {
      const s = connect({ host, port });
      let got = '';
      const done = (ok: boolean) => {
        clearTimeout(timer);
        s.destroy();
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      s.once('connect', () => s.write(send));
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (got.length >= expect.length) done(got.startsWith(expect));
      });
      s.once('error', () => done(false));
      s.once('close', () => done(false));
    });
}
