import { createHash, randomUUID } from 'node:crypto';
import { PAGE_SIZE, type HvmParam, type TscInfo, type XenstoreEntry } from '@colo/stream';
import type { Domain, DomainState, MemoryStaging } from './domain.js';
import { DomainError, DomainErrorCode } from './errors.js';
import { GuestMemory } from './guest-memory.js';
import { checkPreallocatedSize, GuestMemoryStaging } from './memory-staging.js';
import { KvStore, StoreCorruptError } from './kv-store.js';
import { MIN_PAGES, planLayout, type Layout } from './layout.js';
import { RespParser, RespProtocolError, MAX_BULK_LENGTH } from './resp-parser.js';
import { ReplyWriter } from './resp-reply.js';
import { execute, Next, type ServiceContext } from './resp-service.js';
import { decodeDeviceState, encodeDeviceState } from './device-state.js';
import { decodeVcpuContext, encodeVcpuContext } from './vcpu-context.js';

export interface SimulatedGuestOptions {
  /** Default 'colo-guest'. */
  name?: string;
  /** Default: a random UUID. */
  uuid?: string;
  /** Guest RAM in bytes, a multiple of 4096, at least 64 KiB, at most 4 GiB. Default 256 MiB. */
  memoryBytes?: number;
  /** Pages per second the guest's "kernel timers" dirty in the background region while running. Default 0. */
  backgroundDirtyPagesPerSecond?: number;
  /** How often background activity runs, in ms. Default 10. */
  backgroundTickMs?: number;
  /** Uniform in [0, 1), for RANDOMKEY. Default Math.random. */
  random?: () => number;
  /** Milliseconds since the epoch (with a fraction for microseconds), for TIME. Default the wall clock. */
  clock?: () => number;
  /** Create the guest suspended (a restore target, a secondary waiting for its first checkpoint). Default false. */
  startSuspended?: boolean;
  /**
   * Memory of this guest's size faulted in ahead (preallocateMemory) for the first staging (a secondary's initial
   * synchronisation) to write into; later stagings take fresh memory. Its contents are not looked at.
   */
  preallocated?: SharedArrayBuffer;
}

export const DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024;
export const MAX_MEMORY_BYTES = 4 * 1024 * 1024 * 1024;

/** Default HVM parameters (Xen's HVM_PARAM_TIMER_MODE = 10, HVM_PARAM_PAE_ENABLED = 4). Carried, not interpreted. */
const DEFAULT_HVM_PARAMS: HvmParam[] = [
  { index: 4n, value: 1n },
  { index: 10n, value: 1n },
];

type QueuedEvent = { kind: 'open'; id: number } | { kind: 'close'; id: number } | { kind: 'input'; id: number; bytes: Uint8Array };

interface Connection {
  parser: RespParser;
}

function wallClock(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The embedded simulated guest: RAM with a dirty log, a RESP key-value service whose state lives entirely in
 * that RAM, background activity, and the vCPU/device/xenstore context a hypervisor would migrate.
 */
export class SimulatedGuest implements Domain {
  readonly uuid: string;
  readonly name: string;
  readonly pageCount: number;

  private readonly mem: GuestMemory;
  private readonly store: KvStore;
  private readonly layout: Layout;
  private readonly ctx: ServiceContext;
  private readonly out = new ReplyWriter();
  private readonly connections = new Map<number, Connection>();
  /** The virtual NIC's queue while suspended: not guest state (a checkpoint does not carry it). */
  private readonly queue: QueuedEvent[] = [];
  private readonly listeners = new Set<(id: number, bytes: Uint8Array | null) => void>();
  private readonly maxBulk: number;
  private readonly maxCommand: number;

  private _state: DomainState;
  private destroyed = false;
  /** Whether the guest has processed input: after that the hypervisor may write pages only while suspended. */
  private hasRun = false;
  private retired = 0n;
  private hvmParams: HvmParam[] = DEFAULT_HVM_PARAMS.map((p) => ({ ...p }));
  private tscInfo: TscInfo = { mode: 0, khz: 2_000_000, nsec: 0n, incarnation: 0 };
  private xenstore: XenstoreEntry[] = [];

  /** For the first staging only (see SimulatedGuestOptions.preallocated). */
  private preallocated: SharedArrayBuffer | undefined;

  private bgRate: number;
  private readonly bgTickMs: number;
  private bgTimer: NodeJS.Timeout | undefined;
  private bgLast = 0;
  private bgBudget = 0;
  private bgCursor = 0;

  constructor(options: SimulatedGuestOptions = {}) {
    const memoryBytes = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes % PAGE_SIZE !== 0 || memoryBytes < MIN_PAGES * PAGE_SIZE || memoryBytes > MAX_MEMORY_BYTES) {
      throw new DomainError(DomainErrorCode.BAD_OPTIONS, `memoryBytes must be a multiple of 4096 between ${MIN_PAGES * PAGE_SIZE} and ${MAX_MEMORY_BYTES}, got ${memoryBytes}`);
    }
    // Refused before anything is allocated (the staging would refuse it only at the synchronisation).
    if (options.preallocated) checkPreallocatedSize(options.preallocated, memoryBytes);
    const rate = options.backgroundDirtyPagesPerSecond ?? 0;
    if (!(rate >= 0) || !Number.isFinite(rate)) throw new DomainError(DomainErrorCode.BAD_OPTIONS, `backgroundDirtyPagesPerSecond must be >= 0, got ${rate}`);
    this.name = options.name ?? 'colo-guest';
    this.uuid = options.uuid ?? randomUUID();
    this.pageCount = memoryBytes / PAGE_SIZE;
    this.mem = new GuestMemory(this.pageCount);
    this.store = new KvStore(this.mem);
    this.store.format();
    this.layout = planLayout(this.pageCount);
    this.ctx = {
      store: this.store,
      memory: this.mem.bytes,
      clock: options.clock ?? wallClock,
      random: options.random ?? Math.random,
      guestName: this.name,
    };
    // One argument can be at most what the heap could hold; one command at most that plus framing.
    this.maxBulk = Math.min(MAX_BULK_LENGTH, this.store.capacityBytes);
    this.maxCommand = this.maxBulk + 1024 * 1024;
    this.bgRate = rate;
    this.bgTickMs = options.backgroundTickMs ?? 10;
    this.preallocated = options.preallocated;
    this._state = options.startSuspended ? 'suspended' : 'running';
    if (this._state === 'running') this.startBackground();
  }

  get state(): DomainState {
    return this._state;
  }

  // ------------------------------------------------------------------------------------------ run control

  async suspend(): Promise<void> {
    this.alive();
    this._state = 'suspended';
    this.stopBackground();
  }

  async resume(): Promise<void> {
    this.alive();
    if (this._state === 'running') return;
    this._state = 'running';
    // A listener may suspend the guest again while the queue drains (e.g. on an output miscompare): stop there.
    while (this._state === 'running' && this.queue.length > 0) this.dispatch(this.queue.shift()!);
    if (this._state === 'running') this.startBackground();
  }

  // ------------------------------------------------------------------------------------------ dirty log

  enableLogDirty(): void {
    this.alive();
    this.mem.logging = true;
    this.mem.dirty.markAll();
  }

  disableLogDirty(): void {
    this.alive();
    this.mem.logging = false;
    this.mem.dirty.clear();
  }

  readAndClearDirty(): Uint32Array {
    this.alive();
    return this.mem.dirty.collect(true);
  }

  peekDirty(): Uint32Array {
    this.alive();
    return this.mem.dirty.collect(false);
  }

  get logDirtyEnabled(): boolean {
    return this.mem.logging;
  }

  // ------------------------------------------------------------------------------------------ pages

  page(pfn: number): Uint8Array {
    this.alive();
    this.checkPfn(pfn);
    return this.mem.page(pfn);
  }

  pages(firstPfn: number, count: number): Uint8Array {
    this.alive();
    if (!Number.isInteger(count) || count < 1) throw new DomainError(DomainErrorCode.BAD_PFN, `a run of ${count} pages is not a run`);
    this.checkPfn(firstPfn);
    this.checkPfn(firstPfn + count - 1);
    return this.mem.bytes.subarray(firstPfn * PAGE_SIZE, (firstPfn + count) * PAGE_SIZE);
  }

  writePages(pfns: ArrayLike<number>, data: Uint8Array): void {
    this.alive();
    if (this._state === 'running' && this.hasRun) {
      throw new DomainError(DomainErrorCode.NOT_SUSPENDED, 'pages can be written only while the guest is suspended (or before it first runs)');
    }
    if (data.length !== pfns.length * PAGE_SIZE) {
      throw new DomainError(DomainErrorCode.BAD_PAGE_DATA, `writePages: ${pfns.length} pfns need ${pfns.length * PAGE_SIZE} bytes, got ${data.length}`);
    }
    for (let i = 0; i < pfns.length; i++) this.checkPfn(pfns[i]!);
    for (let i = 0; i < pfns.length; ) {
      // A run of consecutive pfns (the usual shape of a dirty set) is one copy; the order of writes is the
      // stream's, so a later copy of a page still wins.
      const first = pfns[i]!;
      let n = 1;
      while (i + n < pfns.length && pfns[i + n] === first + n) n++;
      this.mem.hypervisorWrite(first, data, i * PAGE_SIZE, n);
      i += n;
    }
    // The pages are the truth: re-read the store's layout (it is undefined if the pages hold no valid store).
    this.store.reload();
  }

  /** A staging copy of memory, adopted as writePages of the staged pages would apply (see Domain.stageMemory). */
  stageMemory(): MemoryStaging {
    this.alive();
    const preallocated = this.preallocated;
    this.preallocated = undefined;
    return new GuestMemoryStaging(this.pageCount, (bytes, staged) => {
      this.alive();
      if (this._state === 'running' && this.hasRun) {
        throw new DomainError(DomainErrorCode.NOT_SUSPENDED, 'staged memory can be adopted only while the guest is suspended (or before it first runs)');
      }
      this.mem.adopt(bytes, staged);
      // The service reads memory through the context: point it at the adopted buffer.
      this.ctx.memory = this.mem.bytes;
      this.store.reload();
    }, { preallocated });
  }

  private checkPfn(pfn: number): void {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.pageCount) {
      throw new DomainError(DomainErrorCode.BAD_PFN, `pfn ${pfn} is outside 0..${this.pageCount - 1}`);
    }
  }

  // ------------------------------------------------------------------------------------------ contexts

  getVcpuContext(): Uint8Array {
    return encodeVcpuContext(this.retired);
  }

  setVcpuContext(blob: Uint8Array): void {
    this.retired = decodeVcpuContext(blob);
  }

  getHvmParams(): HvmParam[] {
    return this.hvmParams.map((p) => ({ ...p }));
  }

  setHvmParams(params: HvmParam[]): void {
    this.hvmParams = params.map((p) => ({ ...p }));
  }

  getTscInfo(): TscInfo {
    return { ...this.tscInfo };
  }

  setTscInfo(info: TscInfo): void {
    this.tscInfo = { ...info };
  }

  getDeviceState(): Uint8Array {
    return encodeDeviceState({
      pageCount: this.pageCount,
      name: this.name,
      uuid: this.uuid,
      connections: [...this.connections].map(([id, c]) => ({ id, pending: c.parser.pending() })),
    });
  }

  /** Replaces the connection table and each connection's half-received command. The blob's name/uuid are informational. */
  setDeviceState(blob: Uint8Array): void {
    this.alive();
    const s = decodeDeviceState(blob);
    if (s.pageCount !== this.pageCount) {
      throw new DomainError(DomainErrorCode.BAD_DEVICE_STATE, `device state is for a guest of ${s.pageCount} pages, this one has ${this.pageCount}`);
    }
    this.connections.clear();
    for (const c of s.connections) {
      const conn = this.newConnection();
      conn.parser.setPending(c.pending);
      this.connections.set(c.id, conn);
    }
  }

  getXenstore(): XenstoreEntry[] {
    return this.xenstore.map((e) => ({ ...e }));
  }

  setXenstore(entries: XenstoreEntry[]): void {
    this.xenstore = entries.map((e) => ({ ...e }));
  }

  // ------------------------------------------------------------------------------------------ network

  openConnection(id: number): void {
    this.alive();
    checkConnectionId(id);
    this.enqueueOrRun({ kind: 'open', id });
  }

  closeConnection(id: number): void {
    this.alive();
    checkConnectionId(id);
    this.enqueueOrRun({ kind: 'close', id });
  }

  deliverInput(id: number, bytes: Uint8Array): void {
    this.alive();
    checkConnectionId(id);
    if (bytes.length === 0) return;
    // Queued input is copied: the caller may reuse its buffer before the guest resumes.
    this.enqueueOrRun({ kind: 'input', id, bytes: this._state === 'running' ? bytes : Uint8Array.from(bytes) });
  }

  onOutput(listener: (id: number, bytes: Uint8Array | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Connections the guest currently has open (after queued events are processed). */
  get openConnections(): number[] {
    return [...this.connections.keys()].sort((a, b) => a - b);
  }

  /** Input events waiting in the virtual NIC's queue (suspended guest). */
  get queuedEvents(): number {
    return this.queue.length;
  }

  private enqueueOrRun(e: QueuedEvent): void {
    if (this._state === 'suspended' || this.queue.length > 0) this.queue.push(e);
    else this.dispatch(e);
  }

  private dispatch(e: QueuedEvent): void {
    if (e.kind === 'open') {
      if (!this.connections.has(e.id)) this.connections.set(e.id, this.newConnection());
    } else if (e.kind === 'close') {
      this.connections.delete(e.id);
    } else {
      this.process(e.id, e.bytes);
    }
  }

  private newConnection(): Connection {
    return { parser: new RespParser({ maxBulkLength: this.maxBulk, maxCommandLength: this.maxCommand }) };
  }

  /** Runs every complete command in `bytes` in order and sends their replies as one chunk. */
  private process(id: number, bytes: Uint8Array): void {
    const conn = this.connections.get(id);
    if (!conn) return; // input for a connection the guest does not have (closed by it, or never opened): dropped
    this.hasRun = true;
    const out = this.out;
    let close = false;
    try {
      conn.parser.feed(bytes, (args) => {
        this.retired++;
        let next: Next;
        try {
          next = execute(args, out, this.ctx, id);
        } catch (e) {
          if (!(e instanceof StoreCorruptError)) throw e;
          out.error(`ERR guest store corrupt: ${e.message}`);
          next = Next.CONTINUE;
        }
        if (next === Next.CLOSE) {
          close = true;
          return false;
        }
        return true;
      });
    } catch (e) {
      if (!(e instanceof RespProtocolError)) throw e;
      out.error(`ERR Protocol error: ${e.message}`);
      close = true;
    }
    if (close) this.connections.delete(id);
    if (out.length > 0) this.emit(id, out.take());
    if (close) this.emit(id, null);
  }

  private emit(id: number, bytes: Uint8Array | null): void {
    for (const l of [...this.listeners]) l(id, bytes);
  }

  // ------------------------------------------------------------------------------------------ background

  /** Changes the background dirty rate (pages per second) of a running or suspended guest. */
  setBackgroundDirtyRate(pagesPerSecond: number): void {
    if (!(pagesPerSecond >= 0) || !Number.isFinite(pagesPerSecond)) throw new DomainError(DomainErrorCode.BAD_OPTIONS, `background dirty rate must be >= 0, got ${pagesPerSecond}`);
    this.bgRate = pagesPerSecond;
    if (this._state === 'running') {
      this.stopBackground();
      this.startBackground();
    }
  }

  private startBackground(): void {
    if (this.bgRate <= 0 || this.bgTimer) return;
    this.bgLast = performance.now();
    this.bgTimer = setInterval(() => this.backgroundTick(), this.bgTickMs);
    this.bgTimer.unref();
  }

  private stopBackground(): void {
    if (this.bgTimer) clearInterval(this.bgTimer);
    this.bgTimer = undefined;
  }

  /** A guest kernel's timers: bump a counter in the next pages of the background region. Nothing reads them. */
  private backgroundTick(): void {
    if (this._state !== 'running') return;
    const now = performance.now();
    this.bgBudget += (this.bgRate * (now - this.bgLast)) / 1000;
    this.bgLast = now;
    const n = Math.min(Math.floor(this.bgBudget), this.layout.bgPageCount);
    this.bgBudget -= Math.floor(this.bgBudget);
    for (let i = 0; i < n; i++) {
      const pfn = this.layout.bgFirstPfn + (this.bgCursor++ % this.layout.bgPageCount);
      const off = pfn * PAGE_SIZE;
      this.mem.setU32(off, (this.mem.u32(off) + 1) >>> 0);
    }
  }

  /** The pfns of the background region (tests, docs). */
  get backgroundRegion(): { first: number; count: number } {
    return { first: this.layout.bgFirstPfn, count: this.layout.bgPageCount };
  }

  // ------------------------------------------------------------------------------------------ inspection

  /** SHA-256 of all guest memory, hex: equal digests mean byte-identical memory. */
  memoryDigest(): string {
    return createHash('sha256').update(this.mem.bytes).digest('hex');
  }

  /** Whether the pages hold a valid store (false after writing pages that are not a simulated guest's). */
  get storeValid(): boolean {
    try {
      this.store.keyCount;
      return true;
    } catch {
      return false;
    }
  }

  /** Number of keys in the service's store. */
  get keyCount(): number {
    return this.store.keyCount;
  }

  /** The value of a key as a copy, or undefined (tests and tools; clients use GET). */
  readKey(key: string | Uint8Array): Buffer | undefined {
    const v = this.store.valueView(typeof key === 'string' ? Buffer.from(key) : key);
    return v ? Buffer.from(v) : undefined;
  }

  /** Every key (bucket order). */
  keys(): Buffer[] {
    return [...this.store.keys()];
  }

  destroy(): void {
    if (this.destroyed) return;
    this.stopBackground();
    this.destroyed = true;
    this.listeners.clear();
    this.connections.clear();
    this.queue.length = 0;
  }

  private alive(): void {
    if (this.destroyed) throw new DomainError(DomainErrorCode.DESTROYED, `guest ${this.name} was destroyed`);
  }
}

function checkConnectionId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new DomainError(DomainErrorCode.BAD_OPTIONS, `connection id must be an integer 0..2^32-1, got ${id}`);
  }
}
