import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainError, DomainErrorCode, type Domain, type DomainState } from '@colo/domain';
import type { HvmParam, TscInfo, XenstoreEntry } from '@colo/stream';
import { loadDeviceState, readGuestPages, saveDeviceState, writeGuestPages } from './checkpoint.js';
import { QemuError, QemuErrorCode } from './errors.js';
import { QemuMachine, sweepLeftovers, tcpProbe, type QemuMachineOptions } from './machine.js';
import { RamMirror, unionPfns } from './ram-mirror.js';

/**
 * A QEMU virtual machine behind colo's `Domain` interface. The primary's domain boots a guest and, at each
 * suspend, scans its RAM file against the mirror of what the peer holds (ram-mirror.ts) while QEMU saves its
 * device and vCPU state (QEMU's migration stream without shared RAM); readAndClearDirty() gives the pages that
 * changed since it last gave any, and page() reads them from the mirror. A standby
 * domain (a Remus secondary) holds a RAM file of its own that checkpoints write into, and the last device state;
 * its QEMU starts only at resume(), from them (a takeover).
 *
 * What goes where in Xen's stream: PAGE_DATA carries the RAM; EMULATOR_CONTEXT carries QEMU's whole device and
 * vCPU state (as Xen carries QEMU's device state there); HVM_CONTEXT carries only a small marker naming the
 * format, since QEMU's vCPU state is inside its own stream; HVM_PARAMS and the xenstore data are empty.
 * The network: colo's proxy owns the clients and reaches the guest's service through QEMU's host forward on
 * 127.0.0.1, one TCP connection per client connection.
 */
export interface QemuDomainOptions {
  kernel: string;
  initrd: string;
  qemuBinary?: string;
  accel?: QemuMachineOptions['accel'];
  /** Where the guest's service is reached from this host (127.0.0.1:hostPort), and its port inside the guest. */
  forward: { hostPort: number; guestPort: number };
  name?: string;
  uuid?: string;
  /** Until the guest's service answers after boot or takeover. Default 120 s. */
  serviceTimeoutMs?: number;
  /** Threads a checkpoint's RAM scan is split across (RamMirror). Default: the host's cores, at most 4. */
  scanThreads?: number;
}

const PAGE = 4096;
/** Connects to the guest under way at once (16 at once always worked here, 50 did not). */
const CONNECTS_AT_ONCE = 8;
/** The longest one connect to the guest holds up the next ones. */
const CONNECT_TURN_MS = 2000;
/** HVM_CONTEXT for a QEMU guest: a marker, the state itself travels in EMULATOR_CONTEXT. */
const VCPU_MARKER = new TextEncoder().encode('colo-qemu-vcpu-state-in-emulator-context/1');

export class QemuDomain implements Domain {
  readonly uuid: string;
  readonly name: string;
  readonly pageCount: number;
  private machine: QemuMachine | undefined;
  private readonly o: QemuDomainOptions;
  /** Standby: the RAM file checkpoints are written into, until the takeover's QEMU owns it. */
  private standbyRam: string | undefined;
  private runState: DomainState;
  private readonly workDir: string;
  /** The RAM as the pages readAndClearDirty() gave leave it (made at the first of them). */
  private mirror: RamMirror | undefined;
  /**
   * Pages a scan took into the mirror that readAndClearDirty() has not given yet: the mirror already holds
   * them, so they are remembered until given (a suspend whose checkpoint never asked keeps them for the next).
   */
  private unsent: Uint32Array = new Uint32Array(0);
  private logDirty = false;
  private everythingNext = false;
  private deviceState: Uint8Array = new Uint8Array(0);
  private readonly connections = new Map<number, Socket>();
  /** Input for connections still waiting for their turn to connect (see openConnection). */
  private readonly waiting = new Map<number, Buffer[]>();
  private readonly connectQueue: (() => Promise<void>)[] = [];
  private connectsUnderWay = 0;
  private readonly outputListeners = new Set<(id: number, bytes: Uint8Array | null) => void>();
  private readonly lostListeners = new Set<(why: string) => void>();
  private destroyed = false;

  private constructor(o: QemuDomainOptions, pageCount: number, state: DomainState) {
    this.o = o;
    this.pageCount = pageCount;
    this.runState = state;
    this.name = o.name ?? 'colo-qemu-guest';
    this.uuid = o.uuid ?? crypto.randomUUID();
    this.workDir = mkdtempSync(join(tmpdir(), 'colo-qemu-domain-'));
  }

  /** Boots a guest (the primary's): resolves once its service answers. */
  static async boot(o: QemuDomainOptions & { memoryBytes: number }): Promise<QemuDomain> {
    const d = new QemuDomain(o, o.memoryBytes / PAGE, 'running');
    d.machine = d.newMachine(o.memoryBytes);
    d.watch(d.machine);
    try {
      await d.machine.start();
      await d.machine.waitForService(tcpProbe('PING\r\n', '+PONG'), o.serviceTimeoutMs ?? 120_000);
    } catch (e) {
      d.destroy();
      throw e;
    }
    return d;
  }

  /** A standby guest of `pageCount` pages (a secondary's): no QEMU until resume() takes over. */
  static standby(o: QemuDomainOptions & { pageCount: number; ramDir?: string }): QemuDomain {
    sweepLeftovers(o.ramDir ?? '/dev/shm');
    const d = new QemuDomain(o, o.pageCount, 'suspended');
    // Named as QemuMachine names its RAM files, so that a node killed before its cleanup leaves nothing that the
    // next machine's sweep does not remove.
    d.standbyRam = join(o.ramDir ?? '/dev/shm', `colo-qemu-${process.pid}-${randomBytes(3).toString('hex')}.ram`);
    const fd = openSync(d.standbyRam, 'w');
    try {
      ftruncateSync(fd, o.pageCount * PAGE);
    } finally {
      closeSync(fd);
    }
    return d;
  }

  get state(): DomainState {
    return this.runState;
  }

  async suspend(): Promise<void> {
    this.alive();
    if (this.runState === 'suspended') return;
    const m = this.machine!;
    await guestOp(async () => {
      await m.pause();
      this.runState = 'suspended';
      // The RAM scan (worker threads) and QEMU's device-state save run at once: neither touches the other.
      const scan = this.logDirty && this.mirror && !this.everythingNext ? this.mirror.scan(m.ramPath) : undefined;
      const [dirty, devices] = await Promise.all([scan, saveDeviceState(m, this.workDir)]);
      if (dirty) this.unsent = unionPfns(this.unsent, dirty);
      this.deviceState = devices;
    });
  }

  async resume(): Promise<void> {
    this.alive();
    if (this.runState === 'running') return;
    if (!this.machine) {
      // The takeover: a QEMU on the standby RAM file, given the last device state.
      const m = this.newMachine(this.pageCount * PAGE, this.standbyRam);
      this.machine = m;
      this.watch(m);
      this.standbyRam = undefined;
      await m.start();
      await loadDeviceState(m, this.deviceState, this.workDir);
      await m.resume();
      this.runState = 'running';
      await m.waitForService(tcpProbe('PING\r\n', '+PONG'), this.o.serviceTimeoutMs ?? 120_000);
      return;
    }
    await guestOp(() => this.machine!.resume());
    this.runState = 'running';
  }

  enableLogDirty(): void {
    this.logDirty = true;
    this.everythingNext = true;
  }
  disableLogDirty(): void {
    this.logDirty = false;
  }

  readAndClearDirty(): Uint32Array {
    if (!this.logDirty || !this.machine) return new Uint32Array(0);
    const ram = this.machine.ramPath;
    if (this.everythingNext || !this.mirror) {
      // Every page: the mirror takes the whole file (torn if the guest runs: the next rounds send what changed).
      this.mirror ??= new RamMirror(this.pageCount * PAGE, { threads: this.o.scanThreads });
      this.mirror.load(ram);
      this.everythingNext = false;
      this.unsent = new Uint32Array(0);
      return allPages(this.pageCount);
    }
    // Suspended, the scan of suspend() found them; running (a pre-copy round), they are found now.
    const dirty = this.runState === 'suspended' ? this.unsent : unionPfns(this.unsent, this.mirror.scanSync(ram, true));
    this.unsent = new Uint32Array(0);
    return dirty;
  }

  peekDirty(): Uint32Array {
    if (!this.logDirty || !this.machine) return new Uint32Array(0);
    if (this.everythingNext || !this.mirror) return allPages(this.pageCount);
    return unionPfns(this.unsent, this.mirror.scanSync(this.machine.ramPath, false));
  }

  page(pfn: number): Uint8Array {
    return this.pages(pfn, 1);
  }
  pages(firstPfn: number, count: number): Uint8Array {
    if (firstPfn < 0 || firstPfn + count > this.pageCount) throw new DomainError(DomainErrorCode.BAD_PFN, `pages ${firstPfn}..${firstPfn + count - 1} outside 0..${this.pageCount - 1}`);
    // A standby's pages are its RAM file's, as the checkpoints wrote them (the base of a page delta).
    if (this.standbyRam) return readGuestPages(this.standbyRam, firstPfn, count);
    if (!this.mirror) throw new DomainError(DomainErrorCode.BAD_PFN, 'no pages read yet: enableLogDirty() and readAndClearDirty() first');
    return this.mirror.pages.subarray(firstPfn * PAGE, (firstPfn + count) * PAGE);
  }

  writePages(pfns: ArrayLike<number>, data: Uint8Array): void {
    this.alive();
    if (this.runState !== 'suspended') throw new DomainError(DomainErrorCode.NOT_SUSPENDED, 'pages are written into a QEMU guest only while it is suspended');
    for (let i = 0; i < pfns.length; i++) if (!(pfns[i]! >= 0 && pfns[i]! < this.pageCount)) throw new DomainError(DomainErrorCode.BAD_PFN, `pfn ${pfns[i]} outside 0..${this.pageCount - 1}`);
    if (data.byteLength !== pfns.length * PAGE) throw new DomainError(DomainErrorCode.BAD_PAGE_DATA, `${data.byteLength} bytes for ${pfns.length} pages`);
    writeGuestPages(this.standbyRam ?? this.machine!.ramPath, pfns, data);
  }

  getVcpuContext(): Uint8Array {
    return VCPU_MARKER.slice();
  }
  setVcpuContext(blob: Uint8Array): void {
    if (blob.length !== VCPU_MARKER.length || !blob.every((b, i) => b === VCPU_MARKER[i])) {
      throw new DomainError(DomainErrorCode.BAD_VCPU_CONTEXT, 'an HVM_CONTEXT that is not a QEMU guest\'s (its vCPU state travels in EMULATOR_CONTEXT)');
    }
  }
  getHvmParams(): HvmParam[] {
    return [];
  }
  setHvmParams(_params: HvmParam[]): void {}
  getTscInfo(): TscInfo {
    return { mode: 0, khz: 0, nsec: 0n, incarnation: 0 };
  }
  setTscInfo(_info: TscInfo): void {}
  getDeviceState(): Uint8Array {
    return this.deviceState;
  }
  setDeviceState(blob: Uint8Array): void {
    this.deviceState = blob.slice();
  }
  getXenstore(): XenstoreEntry[] {
    return [];
  }
  setXenstore(_entries: XenstoreEntry[]): void {}

  /**
   * Connections reach the guest a few connects at a time: QEMU's user networking, given a burst of connects
   * (50 at once), left some of them waiting forever, while 16 at once, or 60 one after another, all worked.
   * Input for a connection whose turn has not come waits in `waiting`.
   */
  openConnection(id: number): void {
    if (!this.machine || this.destroyed) return;
    const { host, port } = this.machine.forward;
    const s = new Socket();
    this.connections.set(id, s);
    this.waiting.set(id, []);
    s.on('data', (b: Buffer) => this.emit(id, b));
    const ended = () => {
      this.waiting.delete(id);
      if (this.connections.get(id) !== s) return;
      this.connections.delete(id);
      this.emit(id, null);
    };
    s.on('close', ended);
    s.on('error', ended);
    this.connectSoon(() => {
      if (this.connections.get(id) !== s) return Promise.resolve();
      return new Promise<void>((done) => {
        // Bounded: a connect that neither succeeds nor fails does not hold up the connections after it.
        const timer = setTimeout(done, CONNECT_TURN_MS);
        const settled = () => {
          clearTimeout(timer);
          done();
        };
        s.once('connect', () => {
          s.setNoDelay(true);
          const queued = this.waiting.get(id) ?? [];
          this.waiting.delete(id);
          for (const b of queued) s.write(b);
          settled();
        });
        s.once('close', settled);
        s.connect({ host, port });
      });
    });
  }

  /** Runs `connect` when fewer than CONNECTS_AT_ONCE connects are under way. */
  private connectSoon(connect: () => Promise<void>): void {
    const next = () => {
      const start = this.connectQueue.shift();
      if (!start) return;
      this.connectsUnderWay++;
      void start().finally(() => {
        this.connectsUnderWay--;
        next();
      });
    };
    this.connectQueue.push(connect);
    if (this.connectsUnderWay < CONNECTS_AT_ONCE) next();
  }
  closeConnection(id: number): void {
    const s = this.connections.get(id);
    this.connections.delete(id);
    this.waiting.delete(id);
    s?.destroy();
  }
  deliverInput(id: number, bytes: Uint8Array): void {
    const queued = this.waiting.get(id);
    if (queued) queued.push(Buffer.from(bytes));
    else this.connections.get(id)?.write(bytes);
  }
  onOutput(listener: (id: number, bytes: Uint8Array | null) => void): () => void {
    this.outputListeners.add(listener);
    return () => this.outputListeners.delete(listener);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const s of this.connections.values()) s.destroy();
    this.connections.clear();
    this.waiting.clear();
    this.connectQueue.length = 0;
    this.machine?.killNow();
    this.mirror?.close();
    if (this.standbyRam) rmSync(this.standbyRam, { force: true });
    rmSync(this.workDir, { recursive: true, force: true });
  }

  /**
   * Called once if the guest's QEMU ends while this domain is in use (it crashed, was killed, or exited on its
   * own): the guest is gone, and the node that protects it must stop so that its peer takes over.
   */
  onLost(cb: (why: string) => void): () => void {
    this.lostListeners.add(cb);
    return () => this.lostListeners.delete(cb);
  }

  /** The machine running this guest now (undefined for a standby): for status and tests. */
  get qemu(): QemuMachine | undefined {
    return this.machine;
  }

  private watch(m: QemuMachine): void {
    m.onExit((e) => {
      if (this.destroyed) return;
      const why = `QEMU (pid ${m.pid}) exited (${e.signal ?? `code ${e.code}`})${e.stderr ? `: ${e.stderr.split('\n').slice(-2).join(' | ')}` : ''}`;
      for (const cb of this.lostListeners) cb(why);
    });
  }

  private emit(id: number, bytes: Uint8Array | null): void {
    for (const cb of this.outputListeners) cb(id, bytes);
  }

  private alive(): void {
    if (this.destroyed) throw new DomainError(DomainErrorCode.DESTROYED, 'the QEMU domain was destroyed');
  }

  private newMachine(memoryBytes: number, ramFile?: string): QemuMachine {
    return new QemuMachine({
      kernel: this.o.kernel,
      initrd: this.o.initrd,
      qemuBinary: this.o.qemuBinary,
      accel: this.o.accel,
      memoryBytes,
      name: this.name,
      uuid: this.uuid,
      forward: this.o.forward,
      incoming: ramFile ? { ramFile } : undefined,
    });
  }
}

/**
 * A QEMU that exited or stopped answering means the guest is gone; one that can no longer save its device state
 * (a failed migrate) has a guest that can no longer be protected, and its last checkpoint is on the peer. Both are
 * DomainError GUEST_LOST, their cause kept: the node steps down and its peer takes over from the last checkpoint,
 * which holds everything a client was told. Its output since that checkpoint was never released.
 */
const GUEST_GONE = new Set<string>([QemuErrorCode.EXITED, QemuErrorCode.QMP_TIMEOUT, QemuErrorCode.MIGRATE_FAILED]);
async function guestOp(op: () => Promise<void>): Promise<void> {
  try {
    await op();
  } catch (e) {
    if (e instanceof QemuError && GUEST_GONE.has(e.code)) {
      const what = e.code === QemuErrorCode.MIGRATE_FAILED ? 'cannot save its state' : 'is gone';
      throw new DomainError(DomainErrorCode.GUEST_LOST, `the guest's QEMU ${what}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

function allPages(n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}
