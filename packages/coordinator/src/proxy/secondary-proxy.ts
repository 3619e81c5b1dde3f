import { NODE_DEFAULTS } from '../defaults.js';
import type { Domain } from '@colo/domain';
import { ProxyError, ProxyErrorCode } from './errors.js';
import { InputLog } from './input-log.js';
import { FrameBatcher } from './frame-batcher.js';
import { Listeners } from './listeners.js';
import { emptyRequests, newOutputTotals, type OutputTotals, type ProxyMetrics } from './metrics.js';
import { PrimaryProxy, type PrimaryProxyOptions } from './primary-proxy.js';
import type { ConnectionId, InputEvent, ProtectionMode, ProxyLink } from './types.js';
import { encodeOutput, OUTPUT_HEAD_BYTES, outputRoom, ProxyFrameDecoder, writeOutputHead } from './wire.js';

export interface SecondaryProxyOptions {
  domain: Domain;
  link: ProxyLink;
  mode: ProtectionMode;
  /** How long checkpointApplied() waits for the primary's barrier. Default the phase timeout (NODE_DEFAULTS.checkpoint). */
  barrierTimeoutMs?: number;
  /** The largest proxy-link frame accepted from the primary. */
  maxFrameBytes?: number;
  /** Where mirrored input and compared output bytes are counted (the node's, over every proxy). Default: its own. */
  totals?: OutputTotals;
}

/**
 * The output proxy of a secondary. COLO: it feeds the primary's mirrored input to its own guest in the same
 * total order, and sends its guest's output back tagged with its generation (checkpoints applied) for
 * comparison; at each checkpoint it realigns its input on the primary's barrier. Remus: its guest does not run,
 * it only follows the connection table. On failover, promote() turns it into a primary proxy.
 */
export class SecondaryProxy {
  readonly domain: Domain;
  readonly mode: ProtectionMode;
  /** OUTPUT frames to the primary, one link message per event-loop turn. */
  readonly #out: FrameBatcher;
  readonly #barrierTimeoutMs: number;
  readonly #log: InputLog;
  readonly #linkErrors = new Listeners<[ProxyError]>();
  readonly #offOutput: () => void;
  #offLink: (() => void) | null;
  #generation = 0;
  #inCheckpoint = false;
  /**
   * COLO: a checkpoint is applied but its barrier has not arrived yet, so the log is not realigned: the gate
   * stays closed even if the node resumes the guest meanwhile (it does, right after applying). Opening it
   * would deliver input the checkpoint already holds, and the late rewind would find the gate open.
   */
  #awaitingBarrier = false;
  #running = false;
  #done = false;
  /** BARRIER{k, N} received, by k (they may arrive before the node reports the checkpoint). */
  readonly #barriers = new Map<number, number>();
  #waiter: { k: number; resolve: (n: number) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> } | null = null;
  /** Connections the old primary's clients had open, as far as this side can know. */
  readonly #live = new Set<ConnectionId>();
  /** Client closes received but not yet known to be in this guest's state (seq above the applied barrier). */
  #recentCloses: { seq: number; conn: ConnectionId }[] = [];
  #maxConn = 0;
  readonly #totals: OutputTotals;
  readonly #guest: Domain;

  constructor(options: SecondaryProxyOptions) {
    this.domain = options.domain;
    this.#guest = options.domain;
    this.mode = options.mode;
    this.#totals = options.totals ?? newOutputTotals();
    this.#out = new FrameBatcher(options.link);
    this.#barrierTimeoutMs = options.barrierTimeoutMs ?? NODE_DEFAULTS.checkpoint.phaseTimeoutMs;
    this.#log = new InputLog({ deliver: (e) => this.#deliver(e), retainDelivered: true, firstSeq: null });
    this.#offOutput = options.domain.onOutput((conn, bytes) => {
      // Output before the first checkpoint comes from no consistent state: nothing to compare it with.
      if (this.mode !== 'colo' || this.#generation === 0 || this.#done) return;
      this.#totals.comparedBytesOut += bytes?.byteLength ?? 0;
      // The usual reply fits one frame: head and bytes are written straight into the batch.
      if (bytes !== null && bytes.byteLength > outputRoom()) {
        this.#out.push(encodeOutput(this.#generation, conn, bytes));
        return;
      }
      const n = bytes === null ? 0 : bytes.byteLength;
      const out = this.#out;
      const at = out.reserve(OUTPUT_HEAD_BYTES + n);
      try {
        writeOutputHead(out.buffer, at, this.#generation, conn, bytes);
      } catch (err) {
        out.unreserve(at);
        throw err;
      }
      if (n > 0) out.buffer.set(bytes!, at + OUTPUT_HEAD_BYTES);
    });
    const decoder = new ProxyFrameDecoder({ maxFrameBytes: options.maxFrameBytes });
    this.#offLink = options.link.onData((chunk) => {
      if (this.#done) return;
      try {
        for (const m of decoder.push(chunk)) {
          if (m.type === 'input') this.#received(m.event);
          else if (m.type === 'barrier') this.#barrier(m.checkpoint, m.lastSeq);
          else if (m.type === 'delivered') this.#primaryDelivered(m.lastSeq);
          else throw new ProxyError(ProxyErrorCode.UNKNOWN_MESSAGE, 'a primary sent an OUTPUT message, which only a secondary sends');
        }
      } catch (e) {
        this.#offLink?.();
        this.#offLink = null;
        this.#linkErrors.emit(e instanceof ProxyError ? e : new ProxyError(ProxyErrorCode.MALFORMED_FRAME, String(e), { cause: e }));
      }
    });
  }

  /** The number of the last checkpoint applied (0 before the first): the tag on this side's output. */
  get generation(): number {
    return this.#generation;
  }
  get lastDeliveredSeq(): number {
    return this.#log.lastDelivered;
  }

  /** The primary's stream is not valid proxy traffic: the node should treat the primary link as broken. */
  onLinkError(listener: (error: ProxyError) => void): () => void {
    return this.#linkErrors.add(listener);
  }

  /** Checkpoint k begins (NEW received): input stops reaching the guest, which the node suspends. */
  checkpointStarted(_k: number): void {
    this.#inCheckpoint = true;
    this.#running = false;
    this.#log.close();
  }

  /**
   * Checkpoint k is applied: the guest now holds the primary's state as of the barrier's N_k. COLO: waits (at
   * most timeoutMs) for BARRIER k, then drops input up to N_k and queues the rest (including events this guest
   * had processed and the checkpoint undid) for after resume. Rejects with BARRIER_TIMEOUT if it never comes.
   */
  async checkpointApplied(k: number, timeoutMs: number = this.#barrierTimeoutMs): Promise<void> {
    if (this.#done) throw new ProxyError(ProxyErrorCode.CLOSED, 'the secondary proxy was promoted or closed');
    this.#inCheckpoint = true;
    this.#running = false;
    this.#log.close();
    // Remus does not wait: its guest does not run on mirrored input; the barrier only trims the close list.
    this.#awaitingBarrier = this.mode === 'colo';
    const n = this.mode === 'colo' ? await this.#waitBarrier(k, timeoutMs) : this.#barriers.get(k);
    if (this.#done) return;
    if (this.mode === 'colo') {
      // The node may have resumed the guest while the barrier was on its way: close the gate for the rewind.
      this.#log.close();
      this.#log.rewindTo(n!);
    }
    this.#awaitingBarrier = false;
    this.#generation = Math.max(this.#generation, k);
    if (n !== undefined) this.#recentCloses = this.#recentCloses.filter((c) => c.seq > n);
    for (const key of this.#barriers.keys()) if (key <= k) this.#barriers.delete(key);
    this.#updateGate();
  }

  /** The guest runs again (after a checkpoint, or after the node discarded an incomplete one). */
  resumed(): void {
    this.#inCheckpoint = false;
    this.#running = true;
    this.#updateGate();
  }

  /**
   * Failover: this node's guest takes over. Input still queued is dropped (no client saw a reply to it: every
   * released reply matched this guest's own output), the old clients' connections are closed in the guest, and
   * a primary proxy with its own service listener starts, with ids above any the guest may know.
   */
  async promote(options: Omit<PrimaryProxyOptions, 'domain' | 'firstConnectionId'> = {}): Promise<PrimaryProxy> {
    const primary = this.handOver(options);
    await primary.start();
    return primary;
  }

  /**
   * promote() without opening the service: the primary proxy this one becomes, its start() still to call (again,
   * after a failure, for a caller that retries opening the service).
   */
  handOver(options: Omit<PrimaryProxyOptions, 'domain' | 'firstConnectionId'> = {}): PrimaryProxy {
    this.close();
    const ids = new Set<ConnectionId>([...this.#live, ...this.#recentCloses.map((c) => c.conn)]);
    for (const id of guestConnections(this.domain)) ids.add(id);
    let max = this.#maxConn;
    for (const id of ids) {
      max = Math.max(max, id);
      this.domain.closeConnection(id);
    }
    return new PrimaryProxy({ ...options, domain: this.domain, firstConnectionId: max + 1 });
  }

  /** Stops following the primary (link listener, guest output). */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#out.discard();
    this.#log.close();
    this.#offLink?.();
    this.#offOutput();
    if (this.#waiter) {
      clearTimeout(this.#waiter.timer);
      this.#waiter.reject(new ProxyError(ProxyErrorCode.CLOSED, 'the secondary proxy was promoted or closed while waiting for a barrier'));
      this.#waiter = null;
    }
  }

  metrics(): ProxyMetrics {
    return {
      protection: 'unprotected',
      compare: { match: 0, miscompare: 0, stale: 0 },
      heldBytes: 0,
      bytesIn: this.#totals.mirroredBytesIn,
      bytesOut: this.#totals.comparedBytesOut,
      checkpointRequests: emptyRequests(),
      lastDeliveredSeq: this.#log.lastDelivered,
      pendingInputEvents: this.#log.pendingEvents,
      retainedInputEvents: this.#log.retainedEvents,
    };
  }

  #received(e: InputEvent): void {
    this.#maxConn = Math.max(this.#maxConn, e.conn);
    if (e.kind === 'open') this.#live.add(e.conn);
    else if (e.kind === 'close') {
      this.#live.delete(e.conn);
      this.#recentCloses.push({ seq: e.seq, conn: e.conn });
    }
    this.#totals.mirroredBytesIn += e.bytes?.byteLength ?? 0;
    // Remus mirrors only the connection table: this guest does not run until it takes over.
    if (this.mode === 'colo') this.#log.append(e);
  }

  /**
   * DELIVERED{w}: the primary's guest has processed input up to w, so every later barrier names w or more. A
   * barrier already here and not yet applied will rewind to its own N (at most w): what lies above that stays.
   */
  #primaryDelivered(w: number): void {
    let keepAbove = w;
    for (const n of this.#barriers.values()) if (n < keepAbove) keepAbove = n;
    this.#log.forgetDelivered(keepAbove);
  }

  #barrier(k: number, n: number): void {
    this.#barriers.set(k, n);
    if (this.#waiter && this.#waiter.k === k) {
      clearTimeout(this.#waiter.timer);
      this.#waiter.resolve(n);
      this.#waiter = null;
    }
  }

  #waitBarrier(k: number, timeoutMs: number): Promise<number> {
    const n = this.#barriers.get(k);
    if (n !== undefined) return Promise.resolve(n);
    if (this.#waiter) {
      throw new ProxyError(ProxyErrorCode.INVALID_STATE, `already waiting for the barrier of checkpoint ${this.#waiter.k}`);
    }
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        reject(
          new ProxyError(
            ProxyErrorCode.BARRIER_TIMEOUT,
            `no barrier for checkpoint ${k} from the primary within ${timeoutMs} ms: the proxy link is stalled; input cannot be realigned, resynchronise this secondary`,
          ),
        );
      }, timeoutMs);
      this.#waiter = { k, resolve, reject, timer };
    });
  }

  #deliver(e: InputEvent): void {
    if (e.kind === 'data') this.#guest.deliverInput(e.conn, e.bytes!);
    else if (e.kind === 'open') this.#guest.openConnection(e.conn);
    else this.#guest.closeConnection(e.conn);
  }

  #updateGate(): void {
    if (!this.#done && this.mode === 'colo' && this.#running && !this.#inCheckpoint && !this.#awaitingBarrier && this.#generation > 0) this.#log.open();
    else this.#log.close();
  }
}

/** The guest's own connection table, when the Domain offers one (the simulated guest does). */
function guestConnections(domain: Domain): number[] {
  const ids = (domain as { openConnections?: unknown }).openConnections;
  return Array.isArray(ids) ? ids.filter((x): x is number => typeof x === 'number') : [];
}
