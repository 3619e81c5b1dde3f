import type { Domain } from '@colo/domain';
import { DEFAULT_COMPARE_TIMEOUT_MS, DEFAULT_MAX_HELD_BYTES, OutputComparator } from './comparator.js';
import { ProxyError, ProxyErrorCode } from './errors.js';
import { HoldClock } from './hold-clock.js';
import { InputLog } from './input-log.js';
import { Listeners } from './listeners.js';
import { emptyRequests, newOutputTotals, type OutputTotals, type ProxyMetrics } from './metrics.js';
import { RemusOutputBuffer } from './remus-buffer.js';
import { FrameBatcher } from './frame-batcher.js';
import { ServiceListener } from './service.js';
import type { ConnectionId, InputEvent, InputKind, OutputBytes, ProtectionMode, ProxyCheckpointReason, ProxyLink } from './types.js';
import { DELIVERED_BYTES, encodeBarrier, INPUT_HEAD_BYTES, ProxyFrameDecoder, writeDelivered, writeInputHead } from './wire.js';

export interface PrimaryProxyOptions {
  domain: Domain;
  /** Where clients connect. Omit to drive input through input() only (embedding, tests). */
  service?: { host?: string; port?: number; maxPendingOutputBytes?: number };
  /** The first connection id (a promoted secondary starts above every id its guest may know). Default 1. */
  firstConnectionId?: number;
  /** COLO: output waiting this long for its twin asks for a checkpoint. Default NODE_DEFAULTS.checkpoint. */
  compareTimeoutMs?: number;
  /** How often held output is checked for staleness. Default compareTimeoutMs / 4 (at least 5 ms). */
  staleCheckIntervalMs?: number;
  /** Held output bounds (COLO and Remus), per connection and in total. Default NODE_DEFAULTS.output. */
  maxHeldPerConnection?: number;
  maxHeldTotal?: number;
  /** Stop reading clients while this many input bytes wait for the guest (e.g. during a checkpoint). Default 8 MiB. */
  maxPendingInputBytes?: number;
  /** The largest proxy-link frame accepted from the secondary. */
  maxFrameBytes?: number;
  /** Where comparisons and client bytes are counted (the node's, over every proxy it makes). Default: its own. */
  totals?: OutputTotals;
  /** Gets how long each piece of guest output was held before it went to its client, in seconds (HoldClock). */
  observeHold?: (seconds: number) => void;
  now?: () => number;
}

/** How a secondary is attached (attachSecondary). */
export interface AttachOptions {
  /**
   * The secondary understands DELIVERED frames (extension input-watermark, negotiated on the proxy link): the
   * primary ends each batch with its delivered watermark so the secondary keeps only input it may still have to
   * deliver again. Default false (an older secondary would refuse the frame).
   */
  inputWatermark?: boolean;
}

/** Per client connection: what the proxy needs to end it exactly once. */
interface ConnectionEnd {
  /** The client's close was delivered to the guest: no more input or output for this connection. */
  clientClosed: boolean;
  /** A close (the guest's, or the client's own once its replies were out) was released. */
  ended: boolean;
}

/**
 * The output proxy of the active primary. Client events get one total order (InputLog) and reach the guest only
 * while it runs outside a checkpoint; with a COLO secondary they are mirrored to it and the guests' outputs are
 * compared (OutputComparator); with a Remus secondary output waits for the checkpoint acknowledgement
 * (RemusOutputBuffer); alone, output passes straight through. The node runtime drives it through the hooks
 * attachSecondary / secondaryLost / beforeSuspend / afterResume / checkpointComplete / ack.
 */
export class PrimaryProxy {
  readonly domain: Domain;
  readonly #opts: PrimaryProxyOptions;
  readonly #log: InputLog;
  readonly #service: ServiceListener | null;
  readonly #released = new Listeners<[ConnectionId, OutputBytes]>();
  readonly #needed = new Listeners<[ProxyCheckpointReason]>();
  readonly #linkErrors = new Listeners<[ProxyError]>();
  readonly #ends = new Map<ConnectionId, ConnectionEnd>();
  readonly #offOutput: () => void;
  #mode: ProtectionMode | null = null;
  #link: ProxyLink | null = null;
  /** The last DELIVERED watermark sent to the attached secondary (-1: none yet). */
  #watermarkSent = -1;
  /** Frames to the secondary, one link message per event-loop turn. */
  #out: FrameBatcher | null = null;
  #offLink: (() => void) | null = null;
  #comparator: OutputComparator | null = null;
  #remus: RemusOutputBuffer | null = null;
  #staleTimer: ReturnType<typeof setInterval> | null = null;
  #running: boolean;
  /** The checkpoint between beforeSuspend and checkpointComplete (COLO keeps input out meanwhile). */
  #inFlight: number | null = null;
  #lastCompleted = 0;
  #inputPaused = false;
  #closed = false;
  /**
   * Output the compare/hold machinery let go but the arbiter does not allow out yet, in release order:
   * `decision` from secondaryLost() to continueAlone() (the secondary may have taken over: only a node that won
   * the next epoch releases what it alone produced), `record` from holdUntilRecorded() to recorded() (until the
   * arbiter records the pair as protected, a restart of this node as primary would be allowed, and what the
   * secondary backed would be lost with it).
   */
  readonly #arbiterHold = { decision: false, record: false, queue: [] as Array<[ConnectionId, OutputBytes]>, bytes: 0 };
  readonly #requests = emptyRequests();
  readonly #totals: OutputTotals;
  readonly #holdClock: HoldClock | undefined;
  readonly #guest: Domain;

  constructor(options: PrimaryProxyOptions) {
    this.domain = options.domain;
    this.#guest = options.domain;
    this.#opts = options;
    this.#totals = options.totals ?? newOutputTotals();
    this.#holdClock = options.observeHold ? new HoldClock(options.observeHold) : undefined;
    this.#log = new InputLog({ deliver: (e) => this.#deliver(e) });
    this.#running = options.domain.state === 'running';
    this.#service = options.service
      ? new ServiceListener({
          ...options.service,
          firstConnectionId: options.firstConnectionId ?? 1,
          onEvent: (conn, kind, bytes) => this.input(conn, kind, bytes),
        })
      : null;
    this.#offOutput = options.domain.onOutput((conn, bytes) => this.#guestOutput(conn, bytes));
  }

  /** Opens the client service (if configured) and lets input reach a running guest. */
  async start(): Promise<{ host: string; port: number } | null> {
    const address = this.#service ? await this.#service.listen() : null;
    this.#updateGate();
    return address;
  }

  get service(): ServiceListener | null {
    return this.#service;
  }
  get protection(): ProtectionMode | 'unprotected' {
    return this.#mode ?? 'unprotected';
  }
  /** The last input seq the guest processed. */
  get lastDeliveredSeq(): number {
    return this.#log.lastDelivered;
  }

  /** Output that may reach clients (the service writes it; tests and embedders may listen too). */
  onRelease(listener: (conn: ConnectionId, bytes: OutputBytes) => void): () => void {
    return this.#released.add(listener);
  }
  /** The proxy wants a checkpoint. Listeners may call beforeSuspend() synchronously. */
  onCheckpointNeeded(listener: (reason: ProxyCheckpointReason) => void): () => void {
    return this.#needed.add(listener);
  }
  /** The secondary sent bytes that are not a valid proxy stream: the node should drop that secondary. */
  onLinkError(listener: (error: ProxyError) => void): () => void {
    return this.#linkErrors.add(listener);
  }

  /**
   * A client event (the service calls this; embedders may too): numbered, mirrored to a COLO secondary, and
   * delivered to the guest when the gate is open.
   */
  input(conn: ConnectionId, kind: InputKind, bytes?: Uint8Array): InputEvent {
    if (this.#closed) throw new ProxyError(ProxyErrorCode.CLOSED, 'the primary proxy is closed');
    const seq = this.#log.lastAppended + 1;
    const event: InputEvent = kind === 'data' ? { seq, conn, kind, bytes: bytes ?? new Uint8Array(0) } : { seq, conn, kind };
    if (kind === 'data') this.#totals.clientBytesIn += event.bytes!.byteLength;
    // Mirror before delivering, so the barrier a delivery may trigger never overtakes the event on the link.
    this.#mirror(event);
    this.#log.append(event);
    this.#checkInputBackpressure();
    return event;
  }

  /**
   * A synchronised secondary joins. COLO: input is mirrored from now on (including what waits for the guest)
   * and output is compared; Remus: output waits for acknowledgements. Until the first checkpoint completes,
   * all output is held (the secondary has no state to back it yet).
   */
  attachSecondary(link: ProxyLink, mode: ProtectionMode, options: AttachOptions = {}): void {
    if (this.#mode !== null) {
      throw new ProxyError(ProxyErrorCode.INVALID_STATE, `a ${this.#mode} secondary is already attached; call secondaryLost() first`);
    }
    this.#mode = mode;
    this.#link = link;
    this.#watermarkSent = -1;
    this.#out = new FrameBatcher(link, undefined, options.inputWatermark ? () => this.#appendWatermark() : undefined);
    // Checkpoint numbers belong to one secondary's link: the node counts them from 1 again for each secondary
    // (and the secondary tags its output from generation 1). Keeping the last secondary's count would tag
    // Remus output with an epoch the new numbering reaches only after as many checkpoints (replies held for
    // seconds), and make COLO treat the new secondary's output as an old generation (ignored, then stale).
    this.#lastCompleted = 0;
    const release = (conn: ConnectionId, bytes: OutputBytes) => this.#release(conn, bytes);
    const checkpointNeeded = (reason: ProxyCheckpointReason) => this.#requestCheckpoint(reason);
    const bounds = { maxHeldPerConnection: this.#opts.maxHeldPerConnection, maxHeldTotal: this.#opts.maxHeldTotal };
    if (mode === 'colo') {
      this.#comparator = new OutputComparator({
        ...bounds,
        compareTimeoutMs: this.#opts.compareTimeoutMs,
        generation: this.#lastCompleted,
        results: this.#totals.compare,
        now: this.#opts.now,
        release,
        checkpointNeeded,
      });
      const timeout = this.#opts.compareTimeoutMs ?? DEFAULT_COMPARE_TIMEOUT_MS;
      this.#staleTimer = setInterval(() => this.#comparator?.tick(), this.#opts.staleCheckIntervalMs ?? Math.max(5, timeout / 4));
      this.#staleTimer.unref();
    } else {
      this.#remus = new RemusOutputBuffer({ ...bounds, openEpoch: this.#lastCompleted + 1, release, checkpointNeeded });
    }
    const decoder = new ProxyFrameDecoder({ maxFrameBytes: this.#opts.maxFrameBytes });
    this.#offLink = link.onData((chunk) => {
      if (this.#link !== link) return;
      try {
        for (const m of decoder.push(chunk)) {
          if (m.type === 'output') this.#comparator?.pushSecondary(m.generation, m.conn, m.bytes);
          else throw new ProxyError(ProxyErrorCode.UNKNOWN_MESSAGE, `a secondary sent a ${m.type.toUpperCase()} message, which only a primary sends`);
        }
      } catch (e) {
        this.#offLink?.();
        this.#offLink = null;
        this.#linkErrors.emit(e instanceof ProxyError ? e : new ProxyError(ProxyErrorCode.MALFORMED_FRAME, String(e), { cause: e }));
      }
    });
    for (const e of this.#log.pending()) this.#mirror(e);
    this.#updateGate();
  }

  /**
   * The secondary is gone, and it may have taken over: output it did not back stays held and input waits for
   * the guest, until continueAlone() (this node won the next epoch) or close() (it lost: nothing more leaves).
   */
  secondaryLost(): void {
    // The decision supersedes recording the pair: whoever wins the next epoch holds the record alone.
    this.#arbiterHold.decision = true;
    this.#arbiterHold.record = false;
    this.#offLink?.();
    this.#offLink = null;
    this.#link = null;
    this.#out?.discard();
    this.#out = null;
    this.#stopStaleTimer();
    const comparator = this.#comparator;
    const remus = this.#remus;
    this.#comparator = null;
    this.#remus = null;
    this.#mode = null;
    this.#inFlight = null;
    comparator?.onSecondaryLost();
    remus?.onSecondaryLost();
    this.#updateGate();
  }

  /**
   * The node lost its peer and asks the arbiter: from now on nothing leaves and no input reaches the guest until
   * continueAlone() or close(). secondaryLost() does this too; this covers a node that loses a replication link
   * before (or without) a proxy link.
   */
  holdForDecision(): void {
    if (this.#closed || this.#arbiterHold.decision) return;
    this.#arbiterHold.decision = true;
    this.#arbiterHold.record = false;
    this.#updateGate();
  }

  /** This node won the epoch after losing its secondary: held output leaves in order and it serves unprotected. */
  continueAlone(): void {
    this.#arbiterHold.decision = false;
    this.#flushArbiterHold();
  }

  /** Output leaves only once recorded() is called (a secondary is attaching: the arbiter must record the pair). */
  holdUntilRecorded(): void {
    this.#arbiterHold.record = true;
  }

  /** The arbiter records the pair as protected: output held for it leaves. */
  recorded(): void {
    this.#arbiterHold.record = false;
    this.#flushArbiterHold();
  }

  /**
   * Checkpoint k is starting: input stops reaching the guest at once. Returns N_k, the last input seq the guest
   * processed (its state, as checkpointed, includes exactly the events up to N_k), and sends BARRIER{k, N_k}.
   */
  beforeSuspend(k: number): number {
    this.#running = false;
    if (this.#mode !== null) this.#inFlight = k;
    this.#log.close();
    const n = this.#log.lastDelivered;
    if (this.#link) {
      this.#send(encodeBarrier(k, n));
      // The secondary waits for this barrier to realign: it goes now, with the input before it.
      this.#out?.flush();
    }
    this.#remus?.onCheckpointStarted(k);
    return n;
  }

  /** The guest runs again. In COLO, input waits until the checkpoint is also complete. */
  afterResume(): void {
    this.#running = true;
    this.#updateGate();
  }

  /** Checkpoint k is complete on the secondary (COLO: it is READY): held output is backed, comparison realigns. */
  checkpointComplete(k: number): void {
    this.#lastCompleted = Math.max(this.#lastCompleted, k);
    if (this.#inFlight !== null && k >= this.#inFlight) this.#inFlight = null;
    this.#comparator?.onCheckpointComplete(k);
    this.#updateGate();
  }

  /** Remus: the secondary acknowledged that it holds checkpoint k completely. */
  ack(k: number): void {
    this.#remus?.ack(k);
  }

  metrics(): ProxyMetrics {
    return {
      protection: this.protection,
      compare: { ...this.#totals.compare },
      heldBytes: (this.#comparator?.heldBytes ?? 0) + (this.#remus?.heldBytes ?? 0) + this.#arbiterHold.bytes,
      arbiterHold: this.#arbiterHold.decision ? 'decision' : this.#arbiterHold.record ? 'record' : null,
      bytesIn: this.#totals.clientBytesIn,
      bytesOut: this.#totals.clientBytesOut,
      checkpointRequests: { ...this.#requests },
      lastDeliveredSeq: this.#log.lastDelivered,
      pendingInputEvents: this.#log.pendingEvents,
      retainedInputEvents: this.#log.retainedEvents,
    };
  }

  /** Stops serving: closes every client, detaches from the guest and the link. Held output is not released. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#arbiterHold.queue = [];
    this.#arbiterHold.bytes = 0;
    this.#log.close();
    this.#stopStaleTimer();
    this.#offLink?.();
    this.#offOutput();
    await this.#service?.close();
  }

  #deliver(e: InputEvent): void {
    switch (e.kind) {
      case 'open':
        this.#ends.set(e.conn, { clientClosed: false, ended: false });
        this.#guest.openConnection(e.conn);
        break;
      case 'data':
        this.#guest.deliverInput(e.conn, e.bytes!);
        break;
      case 'close': {
        this.#guest.closeConnection(e.conn);
        const end = this.#ends.get(e.conn);
        if (end === undefined || end.ended) {
          this.#ends.delete(e.conn);
          break;
        }
        end.clientClosed = true;
        // The guest has all it will ever send on this connection: end the client once that is released.
        if (this.#comparator) this.#comparator.closeLocally(e.conn);
        else if (this.#remus) this.#remus.push(e.conn, null);
        else this.#release(e.conn, null);
        break;
      }
    }
  }

  #guestOutput(conn: ConnectionId, bytes: OutputBytes): void {
    if (bytes !== null) this.#holdClock?.written(conn, bytes.byteLength);
    if (this.#comparator) this.#comparator.pushPrimary(conn, bytes);
    else if (this.#remus) this.#remus.push(conn, bytes);
    else this.#release(conn, bytes);
  }

  #release(conn: ConnectionId, bytes: OutputBytes): void {
    const hold = this.#arbiterHold;
    if (hold.decision || hold.record) {
      if (this.#closed) return;
      hold.queue.push([conn, bytes]);
      hold.bytes += bytes?.byteLength ?? 0;
      if (hold.bytes > (this.#opts.maxHeldTotal ?? DEFAULT_MAX_HELD_BYTES)) this.#updateGate();
      return;
    }
    this.#releaseNow(conn, bytes);
  }

  #flushArbiterHold(): void {
    const hold = this.#arbiterHold;
    if (hold.decision || hold.record || this.#closed) return;
    const queue = hold.queue;
    hold.queue = [];
    hold.bytes = 0;
    for (const [conn, bytes] of queue) this.#releaseNow(conn, bytes);
    this.#updateGate();
  }

  #releaseNow(conn: ConnectionId, bytes: OutputBytes): void {
    const end = this.#ends.get(conn);
    if (end === undefined || end.ended) return; // a second close, or output after one: nothing to send
    if (bytes === null) {
      end.ended = true;
      if (end.clientClosed) this.#ends.delete(conn);
      this.#holdClock?.ended(conn);
    } else {
      this.#totals.clientBytesOut += bytes.byteLength;
      this.#holdClock?.released(conn, bytes.byteLength);
    }
    this.#service?.write(conn, bytes);
    this.#released.emit(conn, bytes);
  }

  /**
   * Ends a batch to the secondary with DELIVERED{lastDelivered} when that moved since the last one: the
   * secondary then forgets the input it delivered up to it (InputLog.forgetDelivered) instead of keeping
   * everything since the last checkpoint. Input is mirrored before it is delivered here, so by the time the batch
   * leaves (the end of the event-loop turn) its events are usually delivered and the watermark covers them.
   */
  #appendWatermark(): void {
    const w = this.#log.lastDelivered;
    if (w === this.#watermarkSent || this.#out === null) return;
    const at = this.#out.reserve(DELIVERED_BYTES);
    writeDelivered(this.#out.buffer, at, w);
    this.#watermarkSent = w;
  }

  #mirror(e: InputEvent): void {
    if (this.#link === null) return;
    // Remus needs no input, only the connection table (so a promoted secondary can close the old clients).
    if (this.#mode !== 'colo' && e.kind === 'data') return;
    const out = this.#out!;
    const bytes = e.kind === 'data' ? e.bytes : undefined;
    const n = bytes === undefined ? 0 : bytes.byteLength;
    const at = out.reserve(INPUT_HEAD_BYTES + n);
    try {
      writeInputHead(out.buffer, at, e);
    } catch (err) {
      out.unreserve(at);
      throw err;
    }
    if (n > 0) out.buffer.set(bytes!, at + INPUT_HEAD_BYTES);
  }

  #send(bytes: Uint8Array): void {
    // A failed send means the link is gone; the node learns that from the link itself and calls secondaryLost().
    this.#out?.push(bytes);
  }

  #requestCheckpoint(reason: ProxyCheckpointReason): void {
    this.#requests[reason]++;
    this.#needed.emit(reason);
  }

  #updateGate(): void {
    if (this.#closed) return;
    const hold = this.#arbiterHold;
    // Deciding: the guest gets no input (what it would answer could not leave anyway). Waiting for the record:
    // input stops only once the held output reaches the bound, so a slow arbiter cannot exhaust memory.
    const held = hold.decision || hold.bytes > (this.#opts.maxHeldTotal ?? DEFAULT_MAX_HELD_BYTES);
    const open = this.#running && !held && (this.#mode !== 'colo' || this.#inFlight === null);
    if (open) this.#log.open();
    else this.#log.close();
    this.#checkInputBackpressure();
  }

  #checkInputBackpressure(): void {
    if (!this.#service) return;
    const limit = this.#opts.maxPendingInputBytes ?? 8 * 1024 * 1024;
    if (!this.#inputPaused && this.#log.pendingBytes > limit) {
      this.#inputPaused = true;
      this.#service.pauseInput();
    } else if (this.#inputPaused && this.#log.pendingBytes <= limit / 2) {
      this.#inputPaused = false;
      this.#service.resumeInput();
    }
  }

  #stopStaleTimer(): void {
    if (this.#staleTimer) clearInterval(this.#staleTimer);
    this.#staleTimer = null;
  }
}
