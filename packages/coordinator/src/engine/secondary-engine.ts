import type { Domain } from '@colo/domain';
import { ColoControl, DEFAULT_MAX_RECORD_LENGTH, encodeRecord, LibxlType, StreamDecoder, type StreamItem } from '@colo/stream';
import type { Logger } from 'pino';
import { asCoordinatorError, CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { NODE_DEFAULTS } from '../defaults.js';
import type { SecondaryEvent } from '../statechart/secondary.js';
import type { ReplicationMode } from '../statechart/types.js';
import { CHECKPOINT_ACK_RECORD, decodeGuestIdentity, encodeAckBody, Extension, GUEST_IDENTITY_RECORD, type GuestIdentity } from './extensions.js';
import { decodeDeltaBody, EMULATOR_DELTA_RECORD, PAGE_DELTA_RECORD } from './page-delta.js';
import { LIBXL_HEADER_BYTES, RecordFramer, unitBytes } from './framing.js';
import { ArenaPool } from './page-arena.js';
import { PendingCheckpoint } from './pending-checkpoint.js';
import type { GuestHooks } from './guest-hooks.js';
import { decodeResend, encodeResendRequest, PAGE_RESEND_RECORD, PAGE_RESEND_REQUEST_RECORD } from './page-resend.js';
import { concat } from '../bytes.js';

export interface SecondaryEngineOptions {
  mode: ReplicationMode;
  extensions: readonly string[];
  /** Writes back-channel bytes. */
  send: (bytes: Uint8Array) => Promise<void>;
  /** Creates (or returns) the guest the primary describes. Called once, when the identity is known. */
  hostGuest: (identity: GuestIdentity | undefined) => Domain;
  emit: (event: SecondaryEvent) => void;
  /** Called synchronously right before the guest is suspended, and right after it resumed. */
  guestHooks?: GuestHooks;
  /**
   * Called right after checkpoint `index` (0 = initial synchronisation) is applied, guest still suspended, with
   * when its first record arrived and when its apply ended (performance.now(), ms) and its pages.
   */
  onCheckpointApplied?: (index: number, domain: Domain, timing: AppliedCheckpointTiming) => void;
  maxRecordLength?: number;
  /**
   * Longest time a partly received record may stay incomplete (ms). Catches a primary that stalls mid-record
   * while the link stays alive, in states where the machine runs no timer of its own (COLO running, Remus standby).
   */
  stallTimeoutMs?: number;
  logger?: Logger;
}

/** Upper bound of the interval between coalesced STREAM_PROGRESS reports (a tenth of the stall timeout if less). */
const MAX_PROGRESS_INTERVAL_MS = 20;

/** The secondary's side of one checkpoint, for its own diagnostics (observability/slow-checkpoints.ts). */
export interface AppliedCheckpointTiming {
  /** First record of the checkpoint buffered (or now, for a checkpoint with none before its end). */
  start: number;
  /** Apply done. */
  end: number;
  pages: number;
}

/**
 * The secondary's half of the checkpoint engine: cuts the main stream into records, validates them with the
 * codec, buffers a whole checkpoint (PendingCheckpoint) and turns the handshake records into machine events;
 * performs the machine's actions (suspend and report dirty pages, apply, READY/RESUMED, ACK) on the Domain and
 * the back channel.
 */
export class SecondaryCheckpointEngine {
  private readonly o: SecondaryEngineOptions;
  private readonly framer: RecordFramer;
  /** Page data comes as the pieces it arrived in (views of the socket's reads): PendingCheckpoint copies it once. */
  private readonly decoder = new StreamDecoder({ kind: 'libxl', pageDataPieces: true });
  /** Memory for buffered pages, reused from one checkpoint to the next (see PageArena). */
  private readonly arenas = new ArenaPool();
  private pending = new PendingCheckpoint(this.arenas);
  /** CHECKPOINT_ENDs seen: the first checkpoint (the initial synchronisation) may be staged, later ones not. */
  private checkpointsReceived = 0;
  /** Checkpoints received whole (CHECKPOINT_END seen), oldest first, waiting for the machine's apply. */
  private received: PendingCheckpoint[] = [];
  private failed = false;
  /** Complete records seen since the last STREAM_PROGRESS (see emit). */
  private progressPending = false;
  /** A STREAM_PROGRESS went out since the last other event: further ones only restart the stall timer. */
  private progressRun = false;
  private lastProgressAt = 0;
  /** The trailing STREAM_PROGRESS of a run whose reports were coalesced (see flushProgress). */
  private progressTimer: NodeJS.Timeout | undefined;
  /** Least time between two STREAM_PROGRESS of one run; 0 reports every delivery. */
  private readonly progressIntervalMs: number;
  private chain: Promise<void> = Promise.resolve();
  /** True between CHECKPOINT_END and the next libxc record: in COLO the libxl layer reads CHECKPOINT_STATE here. */
  private atCheckpointBoundary = false;
  private identity: GuestIdentity | undefined;
  domain: Domain | undefined;
  /** Checkpoints applied on this link (0 = the initial synchronisation). */
  applied = 0;
  /** The device state the last applied checkpoint carried, as the primary sent it (page-delta extension). */
  private deviceState: Uint8Array | undefined;
  receivedBytes = 0;
  /** Delta pages whose base this copy lacked, asked for and received whole (PAGE_RESEND), on this link. */
  resentPages = 0;
  /** While an apply waits for pages it asked to be resent: the checkpoint, and how the wait ends. */
  private resendWait: { cp: PendingCheckpoint; done: () => void; failed: (e: CoordinatorError) => void } | undefined;

  constructor(opts: SecondaryEngineOptions) {
    this.o = opts;
    this.progressIntervalMs = opts.stallTimeoutMs ? Math.min(MAX_PROGRESS_INTERVAL_MS, opts.stallTimeoutMs / 10) : 0;
    this.framer = new RecordFramer({ firstHeaderBytes: LIBXL_HEADER_BYTES, maxRecordLength: opts.maxRecordLength ?? DEFAULT_MAX_RECORD_LENGTH });
  }

  // ------------------------------------------------------------------------------------------ main stream in

  private stallTimer: NodeJS.Timeout | undefined;

  private watchPartialRecord(progress: boolean): void {
    if (progress || this.framer.pendingBytes === 0 || this.failed) {
      clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
    }
    if (this.framer.pendingBytes > 0 && !this.stallTimer && !this.failed && this.o.stallTimeoutMs) {
      const ms = this.o.stallTimeoutMs;
      this.stallTimer = setTimeout(() => {
        this.fail(new CoordinatorError(CoordinatorErrorCode.PHASE_TIMEOUT, `the primary stalled mid-record: ${this.framer.pendingBytes} bytes of an incomplete record for ${ms} ms`));
      }, ms);
      this.stallTimer.unref?.();
    }
  }

  /**
   * How many of the most recently received bytes this engine may still reference as views: the record not yet
   * complete (the framer's queue) and anything the decoder holds (nothing, between whole records). Everything
   * else the pending checkpoint keeps is copied when its record completes (pages, context blobs), so the
   * link may read the stream into reused memory (DataListenerOptions).
   */
  get retainedBytes(): number {
    return this.framer.pendingBytes + this.decoder.buffered;
  }

  receive(chunk: Uint8Array): void {
    if (this.failed) return;
    this.receivedBytes += chunk.length;
    let units = 0;
    try {
      for (const unit of this.framer.push(chunk)) {
        units++;
        if (this.failed) return;
        if (unit.kind === 'record' && this.atCheckpointBoundary && this.o.mode === 'colo' && unit.type === LibxlType.CHECKPOINT_STATE) {
          this.handleControl(unitBytes(unit));
          continue;
        }
        if (unit.kind === 'record' && this.atCheckpointBoundary && unit.type === PAGE_RESEND_RECORD) {
          this.handleResend(unitBytes(unit));
          continue;
        }
        if (unit.kind === 'record') this.atCheckpointBoundary = false;
        for (const piece of unit.pieces) for (const item of this.decoder.push(piece)) this.handle(item);
      }
    } catch (e) {
      this.fail(asCoordinatorError(e, CoordinatorErrorCode.PEER_STREAM_ERROR, 'the main stream from the primary is corrupt'));
    }
    this.flushProgress();
    this.watchPartialRecord(units > 0);
  }

  private fail(error: CoordinatorError): void {
    this.resendWait?.failed(error);
    if (this.failed) return;
    this.failed = true;
    clearTimeout(this.stallTimer);
    this.clearProgressTimer();
    this.emit({ type: 'PRIMARY_LOST', error });
  }

  /** CHECKPOINT_STATE read by the libxl layer at a checkpoint boundary (COLO). Decoded with the codec's rules. */
  private handleControl(bytes: Uint8Array): void {
    const probe = new StreamDecoder({ kind: 'back-channel' });
    const [item] = probe.push(bytes);
    if (!item || item.item !== 'record' || item.record.kind !== 'CHECKPOINT_STATE') {
      throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'malformed CHECKPOINT_STATE record');
    }
    const id = item.record.controlId;
    if (id !== ColoControl.NEW_CHECKPOINT) {
      throw new CoordinatorError(
        CoordinatorErrorCode.UNEXPECTED_CONTROL,
        `the primary sent CHECKPOINT_STATE control_id ${id}; only NEW_CHECKPOINT (0) travels primary to secondary`,
      );
    }
    this.emit({ type: 'NEW_CHECKPOINT' });
  }

  /** A PAGE_RESEND at the checkpoint boundary: pages the apply in progress asked for (page-resend.ts). */
  private handleResend(bytes: Uint8Array): void {
    const wait = this.resendWait;
    if (!wait) throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'PAGE_RESEND that was not asked for');
    const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
    if (bytes.length < 8 + length) throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'PAGE_RESEND shorter than its length');
    const r = decodeResend(bytes.subarray(8, 8 + length), this.ensureDomain().pageCount);
    wait.cp.resend(r.pfns, r.data);
    if (!r.last) return;
    if (wait.cp.missingPages > 0) throw new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, `the primary's PAGE_RESEND ended ${wait.cp.missingPages} pages short`);
    wait.done();
  }

  private handle(item: StreamItem): void {
    this.pending.startedAt ??= performance.now();
    if (item.item !== 'record') {
      if (item.item === 'libxc-domain-header' && item.header.pageShift !== 12) {
        throw new CoordinatorError(CoordinatorErrorCode.GUEST_MISMATCH, `page shift ${item.header.pageShift} is not supported`);
      }
      return;
    }
    const r = item.record;
    switch (r.kind) {
      case 'OPTIONAL':
        if (r.type === GUEST_IDENTITY_RECORD && this.o.extensions.includes(Extension.GUEST_IDENTITY) && !this.identity) {
          this.identity = decodeGuestIdentity(r.body);
          this.ensureDomain();
        }
        if (r.type === PAGE_DELTA_RECORD) {
          // Skipping it would lose pages: a primary that sends deltas unasked is not followed.
          if (!this.o.extensions.includes(Extension.PAGE_DELTA)) throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'PAGE_DELTA without the page-delta extension');
          const d = this.ensureDomain();
          // A copy: the record may be a view of a read the link reuses.
          this.pending.addDeltas(decodeDeltaBody(Uint8Array.from(r.body), d.pageCount));
        }
        if (r.type === PAGE_RESEND_RECORD) throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'PAGE_RESEND inside a checkpoint');
        if (r.type === EMULATOR_DELTA_RECORD) {
          if (!this.o.extensions.includes(Extension.PAGE_DELTA)) throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'EMULATOR_DELTA without the page-delta extension');
          this.pending.setDeviceStateDelta(r.body);
        }
        // Other optional records may be skipped (stream-format.md).
        break;
      case 'LIBXC_CONTEXT':
      case 'STATIC_DATA_END':
      case 'X86_CPUID_POLICY':
      case 'X86_MSR_POLICY':
        this.ensureDomain();
        break;
      case 'PAGE_DATA': {
        const d = this.ensureDomain();
        if (this.checkpointsReceived === 0 && this.pending.pageCount === 0 && !this.pending.staged && d.stageMemory) {
          // The initial synchronisation carries the whole memory: stage it in a copy the guest adopts at apply
          // (one copy per page, nothing buffered) rather than buffer 1 GiB of records and copy them at the end.
          const staging = d.stageMemory();
          if (staging) this.pending.stageInto(staging);
        }
        this.pending.addPages(r, d.pageCount);
        break;
      }
      case 'X86_TSC_INFO':
        this.pending.setTsc({ mode: r.mode, khz: r.khz, nsec: r.nsec, incarnation: r.incarnation });
        break;
      case 'HVM_CONTEXT':
        this.pending.setVcpuContext(r.blob);
        break;
      case 'HVM_PARAMS':
        this.pending.setHvmParams(r.params);
        break;
      case 'CHECKPOINT':
        this.pending.libxcComplete = true;
        break;
      case 'EMULATOR_CONTEXT':
        this.pending.setDeviceState(r.blob);
        break;
      case 'EMULATOR_XENSTORE_DATA':
        this.pending.setXenstore(r.entries);
        break;
      case 'CHECKPOINT_END':
        if (!this.pending.complete) {
          throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'CHECKPOINT_END before the libxc CHECKPOINT and vCPU context');
        }
        this.atCheckpointBoundary = true;
        this.received.push(this.pending);
        this.checkpointsReceived++;
        this.pending = new PendingCheckpoint(this.arenas);
        this.emit({ type: 'CHECKPOINT_RECEIVED' });
        return;
      case 'CHECKPOINT_STATE':
        // Outside a checkpoint boundary (or in Remus) a control record is out of place.
        throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `CHECKPOINT_STATE(${r.controlId}) where the handshake does not allow it`);
      case 'END':
        throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, 'the primary ended the stream (END) while replicating');
      default:
        throw new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `record ${r.kind} does not belong in a checkpointed HVM stream`);
    }
    this.progressPending = true;
  }

  /**
   * Every event goes out through here. Complete records are reported as one STREAM_PROGRESS per received chunk
   * instead of one per record (a 1 GiB synchronisation was 4,000 statechart transitions, ~100 ms): the machine
   * reacts to a run of them exactly as to one (restart the stall timer, or refuse data out of place), and the
   * pending one is sent before any other event, so the order the machine sees is the stream's.
   */
  private emit(event: SecondaryEvent): void {
    // Records followed by their CHECKPOINT_END: the END alone tells the machine what the run of them would
    // (every state that takes records takes the END; every state that refuses records refuses the END the same
    // way), so a small checkpoint arriving in one message costs one transition, not two.
    if (event.type === 'CHECKPOINT_RECEIVED') this.progressPending = false;
    if (this.progressPending) this.sendProgress();
    this.clearProgressTimer();
    this.progressRun = false;
    this.o.emit(event);
  }

  /**
   * Reports the records of one delivery. The first report after any other event goes out at once (it may move
   * the machine: standby -> receiving, or data out of place); the rest of a run only restart the machine's stall
   * timer, so they are coalesced to one per progressIntervalMs (a 50,000-page checkpoint was ~200 transitions
   * of 40-90 us each, on the secondary, which is what bounds a large checkpoint). The last of a run is sent late
   * rather than dropped: the stall timer may fire later than stallTimeout after the last record, never earlier.
   */
  private flushProgress(): void {
    if (!this.progressPending || this.failed) return;
    const now = performance.now();
    const due = this.lastProgressAt + this.progressIntervalMs;
    if (!this.progressRun || now >= due) {
      this.sendProgress(now);
      return;
    }
    this.progressTimer ??= setTimeout(() => {
      this.progressTimer = undefined;
      if (this.progressPending && !this.failed) this.sendProgress();
    }, due - now);
    this.progressTimer.unref?.();
  }

  private sendProgress(now = performance.now()): void {
    this.progressPending = false;
    this.progressRun = true;
    this.lastProgressAt = now;
    this.o.emit({ type: 'STREAM_PROGRESS' });
  }

  private clearProgressTimer(): void {
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
  }

  private ensureDomain(): Domain {
    if (!this.domain) this.domain = this.o.hostGuest(this.identity);
    if (this.identity && this.domain.pageCount !== this.identity.pageCount) {
      throw new CoordinatorError(
        CoordinatorErrorCode.GUEST_MISMATCH,
        `the primary's guest has ${this.identity.pageCount} pages, the local guest ${this.domain.pageCount}`,
      );
    }
    return this.domain;
  }

  // ------------------------------------------------------------------------------------------ machine actions

  private run(what: string, op: () => Promise<void>): void {
    // Operations run even after the stream failed: an apply already asked for completes (the checkpoint is
    // whole), and the node waits for idle() before it resumes the guest for a takeover.
    this.chain = this.chain.then(async () => {
      try {
        await op();
      } catch (e) {
        this.fail(asCoordinatorError(e, CoordinatorErrorCode.PEER_LOST, `secondary failed to ${what}`));
      }
    });
  }

  idle(): Promise<void> {
    return this.chain;
  }

  /** Suspends for the checkpoint to apply next (its index: those applied so far). */
  private async suspendGuest(d: Domain): Promise<void> {
    this.o.guestHooks?.suspending(this.applied);
    await d.suspend();
  }

  private async resumeGuest(d: Domain): Promise<void> {
    await d.resume();
    this.o.guestHooks?.resumed();
  }

  /** COLO step 2: suspend, then SUSPENDED and this guest's dirty pages on the back channel. */
  suspendAndReportDirty(): void {
    this.run('suspend and report dirty pages', async () => {
      const d = this.ensureDomain();
      if (d.state === 'running') await this.suspendGuest(d);
      const dirty = Array.from(d.readAndClearDirty());
      await this.o.send(
        concat([
          encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_SUSPENDED }),
          encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: dirty }),
        ]),
      );
      this.emit({ type: 'GUEST_SUSPENDED' });
    });
  }

  /** Applies the buffered checkpoint in one go (the guest is suspended or has never run). */
  applyCheckpoint(): void {
    this.run('apply the checkpoint', async () => {
      const d = this.ensureDomain();
      if (d.state === 'running') await this.suspendGuest(d);
      const cp = this.received.shift();
      if (!cp) throw new CoordinatorError(CoordinatorErrorCode.INVALID_STATE, 'asked to apply a checkpoint that was not received');
      if (this.asksResends) {
        const missing = cp.buildDeltas(d);
        if (missing.length > 0) await this.askResend(cp, missing);
      }
      // The device state as received (whole or rebuilt from its delta): the next EMULATOR_DELTA's base.
      this.deviceState = cp.applyTo(d, this.deviceState) ?? this.deviceState;
      const timing: AppliedCheckpointTiming = { start: cp.startedAt ?? performance.now(), end: performance.now(), pages: cp.pageCount };
      const index = this.applied++;
      if (index === 0) {
        // From now on the guest's own writes matter (COLO: they are reported at each checkpoint).
        d.enableLogDirty();
        d.readAndClearDirty();
      }
      this.o.onCheckpointApplied?.(index, d, timing);
      this.emit({ type: 'CHECKPOINT_APPLIED' });
      // A later checkpoint that arrived whole while this one waited to be applied (Remus: the primary does not
      // wait for our ACK) was announced while the machine was applying, which ignores CHECKPOINT_RECEIVED:
      // announce it again now, so checkpoints are applied one by one, in order, none skipped.
      if (this.received.length > 0) this.emit({ type: 'CHECKPOINT_RECEIVED' });
    });
  }

  /**
   * Whether delta pages whose base this copy lacks are asked for whole rather than refused with the checkpoint:
   * where the primary keeps the checkpoint's pages until this side confirms it (page-resend.ts).
   */
  private get asksResends(): boolean {
    const x = this.o.extensions;
    return x.includes(Extension.PAGE_DELTA) && (this.o.mode === 'colo' || x.includes(Extension.CHECKPOINT_ACK));
  }

  /**
   * Asks for `pfns` whole (PAGE_RESEND_REQUEST) and waits for them; the checkpoint stays unapplied meanwhile and
   * is dropped if the link fails or the answer does not come within the stall timeout.
   */
  private async askResend(cp: PendingCheckpoint, pfns: number[]): Promise<void> {
    this.o.logger?.warn({ pages: pfns.length, firstPfn: pfns[0] }, 'this copy lacks the base of some delta pages: asking the primary for them whole');
    const ms = this.o.stallTimeoutMs ?? NODE_DEFAULTS.checkpoint.stallTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<void>((resolve, reject) => {
      this.resendWait = { cp, done: resolve, failed: reject };
      timer = setTimeout(() => reject(new CoordinatorError(CoordinatorErrorCode.PHASE_TIMEOUT, `the primary did not resend ${cp.missingPages} pages within ${ms} ms`)), ms);
    });
    try {
      if (this.failed) throw new CoordinatorError(CoordinatorErrorCode.PEER_LOST, 'the link failed before the pages could be asked for');
      await this.o.send(encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: PAGE_RESEND_REQUEST_RECORD, body: encodeResendRequest(pfns) }));
      await answered;
      this.resentPages += pfns.length;
    } catch (e) {
      cp.discard();
      throw e;
    } finally {
      clearTimeout(timer);
      this.resendWait = undefined;
    }
  }

  /** COLO steps 4-5: READY, resume, RESUMED. */
  readyAndResume(): void {
    this.run('resume after the checkpoint', async () => {
      const d = this.ensureDomain();
      await this.o.send(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_READY }));
      if (d.state === 'suspended') await this.resumeGuest(d);
      await this.o.send(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_RESUMED }));
    });
  }

  /** Remus: acknowledge checkpoint `index` when the extension was negotiated (Xen sends nothing here). */
  acknowledge(index: number): void {
    if (!this.o.extensions.includes(Extension.CHECKPOINT_ACK)) return;
    this.run('acknowledge the checkpoint', async () => {
      await this.o.send(encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: CHECKPOINT_ACK_RECORD, body: encodeAckBody(index) }));
    });
  }

  /**
   * Forgets the half-received checkpoint and stops reading the stream: none of it reaches the guest. A checkpoint
   * already received whole and being applied is not half-received: its apply completes.
   */
  discard(): void {
    this.resendWait?.failed(new CoordinatorError(CoordinatorErrorCode.PEER_LOST, 'the link to the primary was given up'));
    this.failed = true;
    clearTimeout(this.stallTimer);
    this.clearProgressTimer();
    this.pending.discard();
    this.pending = new PendingCheckpoint(this.arenas);
  }

  get pendingPages(): number {
    return this.pending.pageCount;
  }
}
