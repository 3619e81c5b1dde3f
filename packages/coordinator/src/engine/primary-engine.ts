import { DomainError, DomainErrorCode, type Domain } from '@colo/domain';
import {
  ColoControl,
  EmulatorId,
  encodeLibxcDomainHeader,
  encodeLibxcImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeRecord,
  pageDataRecordPieces,
  GuestType,
  MAX_PFNS_PER_PAGE_DATA,
  StreamDecoder,
  type StreamItem,
} from '@colo/stream';
import type { Logger } from 'pino';
import { NODE_DEFAULTS } from '../defaults.js';
import { asCoordinatorError, CoordinatorError, CoordinatorErrorCode } from '../errors.js';
import { concat } from '../bytes.js';
import type { PrimaryEvent } from '../statechart/primary.js';
import type { CheckpointReason, ReplicationMode } from '../statechart/types.js';
import { CHECKPOINT_ACK_RECORD, decodeAckBody, encodeGuestIdentity, Extension, GUEST_IDENTITY_RECORD } from './extensions.js';
import type { CheckpointMeasurement, CheckpointPhases } from './measurement.js';
import type { GuestHooks } from './guest-hooks.js';
import { unionAscending, isStrictlyAscending } from './pfn-set.js';
import { EMULATOR_DELTA_RECORD, encodeStateDelta, PAGE_DELTA_RECORD, PageDeltaSender } from './page-delta.js';
import { PageCapture } from './page-capture.js';
import { decodeResendRequest, encodeResend, PAGE_RESEND_RECORD, PAGE_RESEND_REQUEST_RECORD } from './page-resend.js';

export interface PrecopyLimits {
  /** Live rounds before stop-and-copy (Xen: 5). */
  maxRounds: number;
  /** Stop the live rounds early once fewer pages than this are dirty (Xen: 50). */
  minDirtyPages: number;
}
export const DEFAULT_PRECOPY: PrecopyLimits = { maxRounds: NODE_DEFAULTS.checkpoint.precopyMaxRounds, minDirtyPages: NODE_DEFAULTS.checkpoint.precopyMinDirty };

export interface PrimaryEngineOptions {
  domain: Domain;
  /** Writes main-stream bytes; resolves when more may be written (backpressure). */
  send: (bytes: Uint8Array) => Promise<void>;
  /**
   * Optional, with whenWritten: writes the concatenation of `pieces` (in order with send()) without joining
   * them. PAGE_DATA then goes out as record headers plus views of guest memory, no copy on the primary.
   */
  sendPieces?: (pieces: readonly Uint8Array[]) => Promise<void>;
  /** Resolves when everything written so far has left the process (the views may change from then on). */
  whenWritten?: () => Promise<void>;
  mode: ReplicationMode;
  /** Extensions both sides negotiated in their hello. */
  extensions: readonly string[];
  precopy: PrecopyLimits;
  /**
   * Pages per PAGE_DATA record, 1..1024 (Xen batches up to 1024). The default, 255, makes a record (1,046,496
   * bytes) fit one 1 MiB transport frame, so the secondary gets whole records and never copies one together
   * from frames: a 1 GiB synchronisation went from 8.3 s to 6.0 s (one thread, profiled; docs/performance.md).
   */
  pagesPerRecord?: number;
  /** Events for the primary machine (back-channel records, completion of effects). */
  emit: (event: PrimaryEvent) => void;
  /** Called synchronously right before the guest is suspended, and right after it resumed (GuestHooks). */
  guestHooks?: GuestHooks;
  /**
   * Called while the guest is suspended and checkpoint `seq` is fixed: every record written or, for a captured
   * Remus checkpoint, its pages copied (tests hash memory here).
   */
  onCheckpointWritten?: (seq: number, domain: Domain) => void;
  logger?: Logger;
}

export const DEFAULT_PAGES_PER_RECORD = 255;

/** Xen 4.17 is what this stream claims to come from (the domain header's xen_major/xen_minor). */
const XEN_VERSION = { major: 4, minor: 17 };

/**
 * The primary's half of the checkpoint engine, one per attached secondary: turns the machine's actions into
 * records on the main stream, and back-channel records into machine events. Guest operations (suspend, read,
 * resume) run one at a time in the order the machine asked for them.
 */
export class PrimaryCheckpointEngine {
  private readonly o: PrimaryEngineOptions;
  private chain: Promise<void> = Promise.resolve();
  private aborted = false;
  private readonly backChannel = new StreamDecoder({ kind: 'back-channel' });
  private backChannelFailed = false;
  // Measurements of the checkpoint in progress.
  private cp: {
    seq: number;
    reason: CheckpointReason;
    linkIndex: number;
    startedAt: number;
    newSentAt?: number;
    dirtyAt?: number;
    suspendStart?: number;
    suspendEnd?: number;
    endWrittenAt?: number;
    peerDoneAt?: number;
    resumeStart?: number;
    resumeEnd?: number;
    pages: number;
    deltaPages: number;
    resentPages: number;
    bytes: number;
  } | null = null;
  /** Pre-copy progress of the initial synchronisation (for status and logs). */
  precopyRounds: { round: number; pages: number }[] = [];
  /** The live migration's progress while it runs (pre-copy round, pages of this round sent so far), else undefined. */
  syncProgress: { round: number; pagesSent: number; totalPages: number; startedAt: number } | undefined;

  /** With the page-delta extension: the copy of what the secondary holds, and the split into deltas. */
  private readonly deltas: PageDeltaSender | undefined;
  /** With the page-delta extension: the device state last sent (the base of the next EMULATOR_DELTA). */
  private sentDeviceState: Uint8Array | undefined;
  /** Captured checkpoints only (see `captures`): the pages copied at the suspend. */
  private readonly capture: PageCapture | undefined;
  /** A checkpoint captured and not yet sent: the resume sends it. */
  private captured: { deviceState: Uint8Array; head: Uint8Array[] } | undefined;

  constructor(opts: PrimaryEngineOptions) {
    this.o = opts;
    this.deltas = opts.extensions.includes(Extension.PAGE_DELTA) ? new PageDeltaSender(opts.domain.pageCount) : undefined;
    this.capture = this.captures ? new PageCapture(opts.domain.pageCount) : undefined;
  }

  /**
   * Whether a checkpoint is captured at the suspend and encoded and sent after the resume: Remus with page deltas
   * and acknowledgements. Remus, because its secondary does not run, so nothing waits for it before the resume;
   * acknowledgements, because they are what holds the guest's output until the secondary has the checkpoint
   * (without them output goes when the records are written). Page deltas, because their encoding (a pass over
   * each page against the copy last sent, about 1.7 us a page) is what would otherwise be the pause; whole pages
   * go out zero-copy as views of the suspended guest's memory, as fast as the copy a capture would make.
   */
  private get captures(): boolean {
    return this.o.mode === 'remus' && this.deltas !== undefined && this.acks;
  }

  private get acks(): boolean {
    return this.o.extensions.includes(Extension.CHECKPOINT_ACK);
  }

  /** Runs guest/stream operations strictly in order; a failure is reported once and stops the rest. */
  private run(what: string, op: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.aborted) return;
      try {
        await op();
      } catch (e) {
        if (this.aborted) return;
        this.aborted = true;
        if (e instanceof DomainError && e.code === DomainErrorCode.GUEST_LOST) {
          // Not the secondary's failure: this node's guest is gone.
          const error = new CoordinatorError(CoordinatorErrorCode.GUEST_LOST, `the guest is gone (while trying to ${what}): ${e.message}`, { cause: e });
          this.o.logger?.error({ err: error }, 'checkpoint engine: the guest is gone');
          this.o.emit({ type: 'GUEST_LOST', error });
          return;
        }
        const error = asCoordinatorError(e, CoordinatorErrorCode.PEER_LOST, `checkpoint engine failed to ${what}`);
        this.o.logger?.warn({ err: error }, 'checkpoint engine failed');
        this.o.emit({ type: 'SECONDARY_LOST', error });
      }
    });
  }

  /** Stops issuing operations (the secondary was dropped). Resolves when the current one has finished. */
  async abort(): Promise<void> {
    this.aborted = true;
    await this.chain;
  }

  /** Resolves when every queued operation has run. */
  idle(): Promise<void> {
    return this.chain;
  }

  /**
   * Starts measuring checkpoint `seq` at the first of its effects, whichever that is in the mode (the live
   * migration, NEW_CHECKPOINT in COLO, the suspend in Remus); later effects of the same checkpoint change nothing.
   */
  beginCheckpoint(seq: number, reason: CheckpointReason, linkIndex: number): void {
    if (this.cp?.seq === seq) return;
    this.cp = { seq, reason, linkIndex, startedAt: performance.now(), pages: 0, deltaPages: 0, resentPages: 0, bytes: 0 };
  }

  // ------------------------------------------------------------------------------------------ machine actions

  startLiveMigration(): void {
    this.run('start the live migration', async () => {
      const d = this.o.domain;
      const head: Uint8Array[] = [encodeLibxlHeader()];
      if (this.o.extensions.includes(Extension.GUEST_IDENTITY)) {
        head.push(
          encodeRecord({
            layer: 'libxl',
            kind: 'OPTIONAL',
            type: GUEST_IDENTITY_RECORD,
            body: encodeGuestIdentity({ uuid: d.uuid, name: d.name, pageCount: d.pageCount }),
          }),
        );
      }
      head.push(
        encodeRecord({ layer: 'libxl', kind: 'LIBXC_CONTEXT' }),
        encodeLibxcImageHeader(),
        encodeLibxcDomainHeader({ guestType: GuestType.X86_HVM, pageShift: 12, xenMajor: XEN_VERSION.major, xenMinor: XEN_VERSION.minor }),
        encodeRecord({ layer: 'libxc', kind: 'STATIC_DATA_END' }),
      );
      await this.write(concat(head));
      // Log-dirty mode marks every page dirty at first: round 1 sends the whole guest while it runs.
      d.enableLogDirty();
      this.precopyRounds = [];
      for (let round = 1; ; round++) {
        const pfns = d.readAndClearDirty();
        const progress = { round, pagesSent: 0, totalPages: pfns.length, startedAt: performance.now() };
        this.syncProgress = progress;
        await this.writePages(pfns, progress);
        this.precopyRounds.push({ round, pages: pfns.length });
        // The initial synchronisation's pages are its pre-copy rounds' and its stop-and-copy's, as its bytes are.
        if (this.cp) this.cp.pages += pfns.length;
        if (this.aborted) return;
        const stillDirty = d.peekDirty().length;
        if (round >= this.o.precopy.maxRounds || stillDirty < this.o.precopy.minDirtyPages) break;
      }
      this.syncProgress = undefined;
      this.o.emit({ type: 'PRECOPY_DONE' });
    });
  }

  sendNewCheckpoint(): void {
    this.run('send NEW_CHECKPOINT', async () => {
      if (this.cp) this.cp.newSentAt = performance.now();
      await this.write(encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_STATE', controlId: ColoControl.NEW_CHECKPOINT }));
    });
  }

  /** Suspend, send own dirty pages UNION the secondary's, then TSC, HVM_CONTEXT, HVM_PARAMS, CHECKPOINT, EMULATOR_*, CHECKPOINT_END. */
  suspendAndSendCheckpoint(secondaryDirty: readonly number[]): void {
    this.run('send a checkpoint', async () => {
      const d = this.o.domain;
      const cp = this.cp;
      if (cp) {
        cp.dirtyAt = performance.now();
        cp.suspendStart = cp.dirtyAt;
      }
      if (d.state === 'running') {
        this.o.guestHooks?.suspending(cp?.linkIndex);
        await d.suspend();
      }
      if (cp) cp.suspendEnd = performance.now();
      const own = d.readAndClearDirty();
      const pfns = secondaryDirty.length > 0 ? unionAscending(own, secondaryDirty.filter((p) => p < d.pageCount)) : own;
      if (cp) cp.pages += pfns.length;
      const head: Uint8Array[] = [
        encodeRecord({ layer: 'libxc', kind: 'X86_TSC_INFO', ...d.getTscInfo() }),
        encodeRecord({ layer: 'libxc', kind: 'HVM_CONTEXT', blob: d.getVcpuContext() }),
        encodeRecord({ layer: 'libxc', kind: 'HVM_PARAMS', params: d.getHvmParams() }),
        encodeRecord({ layer: 'libxc', kind: 'CHECKPOINT' }),
      ];
      const xenstore = d.getXenstore();
      if (xenstore.length > 0) {
        head.push(encodeRecord({ layer: 'libxl', kind: 'EMULATOR_XENSTORE_DATA', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, entries: xenstore }));
      }
      if (this.capture) {
        // Copied now, encoded and sent by the resume (resumeGuest): the machine resumes the guest on
        // CHECKPOINT_SENT and releases nothing before the secondary's ACK.
        this.capture.take(pfns, (pfn) => d.page(pfn), d.pages ? (first, count) => d.pages!(first, count) : undefined);
        this.captured = { deviceState: d.getDeviceState().slice(), head };
        if (cp) this.o.onCheckpointWritten?.(cp.seq, d);
        this.o.emit({ type: 'CHECKPOINT_SENT' });
        return;
      }
      // The closing records leave with the last page record: one socket write and, on the secondary, one
      // message for a small checkpoint instead of two (each a wake-up, a read and a statechart event).
      // Deltas: against what the secondary holds, except the pages it reported dirty itself (COLO: its own guest
      // changed them since the last checkpoint, so its copy is not the base; they go whole).
      await this.writePages(pfns, undefined, this.trailer(head, d.getDeviceState()), new Set(secondaryDirty));
      // Pages went out as views of guest memory: the guest must not run (and change them) before every byte
      // has reached the kernel. In COLO the READY wait covers this anyway; in Remus this is the transfer's end.
      if (this.zeroCopy) await this.o.whenWritten!();
      if (cp) cp.endWrittenAt = performance.now();
      if (cp) this.o.onCheckpointWritten?.(cp.seq, d);
      this.o.emit({ type: 'CHECKPOINT_SENT' });
    });
  }

  /** The records after a checkpoint's pages: `head` (context), the device state, CHECKPOINT_END. */
  private trailer(head: readonly Uint8Array[], deviceState: Uint8Array): Uint8Array {
    return concat([...head, this.deviceStateRecord(deviceState), encodeRecord({ layer: 'libxl', kind: 'CHECKPOINT_END' })]);
  }

  resumeGuest(): void {
    const cp = this.cp;
    if (cp && cp.peerDoneAt === undefined && this.o.mode === 'colo') cp.peerDoneAt = performance.now();
    this.run('resume the guest', async () => {
      if (cp) cp.resumeStart = performance.now();
      if (this.o.domain.state === 'suspended') {
        await this.o.domain.resume();
        this.o.guestHooks?.resumed();
      }
      if (cp) cp.resumeEnd = performance.now();
      const captured = this.captured;
      if (!captured) return;
      // A captured checkpoint: encoded and sent while the guest runs, from the copy taken at the suspend.
      this.captured = undefined;
      const capture = this.capture!;
      await this.writePages(capture.captured, undefined, this.trailer(captured.head, captured.deviceState), new Set(), capture);
      // The capture is reused by the next checkpoint, which follows this one's ACK; wait anyway, it costs nothing.
      if (this.zeroCopy) await this.o.whenWritten!();
      if (cp) cp.endWrittenAt = performance.now();
    });
  }

  /**
   * EMULATOR_CONTEXT, or with page deltas an EMULATOR_DELTA against the state the secondary holds (the one this
   * engine last sent) when that is smaller: a QEMU guest's 600 KB of device state barely changes between checkpoints.
   */
  private deviceStateRecord(state: Uint8Array): Uint8Array {
    // Remus only: a COLO secondary's guest runs between checkpoints, so its device state is not the one sent.
    const deltas = this.deltas !== undefined && this.o.mode === 'remus';
    const base = this.sentDeviceState;
    const body = deltas && base ? encodeStateDelta(state, base) : undefined;
    if (deltas) this.sentDeviceState = state.slice();
    if (body) return encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: EMULATOR_DELTA_RECORD, body });
    return encodeRecord({ layer: 'libxl', kind: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, blob: state });
  }

  /** The machine declared checkpoint complete: returns its measurement (after the queued resume has run). */
  async completeCheckpoint(): Promise<CheckpointMeasurement | undefined> {
    const cp = this.cp;
    if (!cp) return undefined;
    if (this.o.mode === 'remus' && this.acks && cp.peerDoneAt === undefined) cp.peerDoneAt = performance.now();
    this.cp = null;
    await this.chain;
    const end = performance.now();
    const s = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? 0 : Math.max(0, (b - a) / 1000));
    const phases: CheckpointPhases = {
      suspend: s(cp.suspendStart, cp.suspendEnd),
      transfer: s(cp.suspendEnd, cp.endWrittenAt),
      resume: s(cp.resumeStart, cp.resumeEnd),
    };
    if (cp.newSentAt !== undefined) phases.secondary_suspend = s(cp.newSentAt, cp.dirtyAt);
    if (cp.peerDoneAt !== undefined) phases.secondary_apply = s(cp.endWrittenAt, cp.peerDoneAt);
    return {
      seq: cp.seq,
      reason: cp.reason,
      linkIndex: cp.linkIndex,
      at: Date.now(),
      pauseSeconds: s(cp.suspendStart, cp.resumeEnd ?? end),
      ...(cp.suspendStart !== undefined ? { pauseWindow: { start: cp.suspendStart, end: cp.resumeEnd ?? end } } : {}),
      durationSeconds: (end - cp.startedAt) / 1000,
      phases,
      pages: cp.pages,
      deltaPages: cp.deltaPages,
      resentPages: cp.resentPages,
      bytes: cp.bytes,
    };
  }

  // ------------------------------------------------------------------------------------------ back channel

  /** Bytes from the secondary: records become machine events; anything else drops the secondary. */
  receiveBackChannel(chunk: Uint8Array): void {
    if (this.backChannelFailed) return;
    let items: StreamItem[];
    try {
      items = this.backChannel.push(chunk);
    } catch (e) {
      this.failBackChannel(asCoordinatorError(e, CoordinatorErrorCode.PEER_STREAM_ERROR, 'the back channel from the secondary is corrupt'));
      return;
    }
    for (const item of items) {
      const event = this.eventFor(item);
      if (event === null) continue;
      if (event instanceof CoordinatorError) {
        this.failBackChannel(event);
        return;
      }
      this.o.emit(event);
    }
  }

  private failBackChannel(error: CoordinatorError): void {
    this.backChannelFailed = true;
    this.o.emit({ type: 'SECONDARY_LOST', error });
  }

  /** A machine event, an error that drops the secondary, or null for a request this engine answers itself. */
  private eventFor(item: StreamItem): PrimaryEvent | CoordinatorError | null {
    if (item.item !== 'record') {
      return new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `unexpected ${item.item} on the back channel`);
    }
    const r = item.record;
    if (r.kind === 'CHECKPOINT_STATE') {
      switch (r.controlId) {
        case ColoControl.SVM_SUSPENDED:
          return { type: 'SECONDARY_SUSPENDED' };
        case ColoControl.SVM_READY:
          if (this.cp && this.cp.peerDoneAt === undefined) this.cp.peerDoneAt = performance.now();
          return { type: 'SECONDARY_READY' };
        case ColoControl.SVM_RESUMED:
          return { type: 'SECONDARY_RESUMED' };
        default:
          return new CoordinatorError(
            CoordinatorErrorCode.UNEXPECTED_CONTROL,
            `the secondary sent CHECKPOINT_STATE control_id ${r.controlId}, which only a primary may send (or which is unknown)`,
          );
      }
    }
    if (r.kind === 'CHECKPOINT_DIRTY_PFN_LIST') {
      if (!isStrictlyAscending(r.pfns)) {
        return new CoordinatorError(CoordinatorErrorCode.PEER_STREAM_ERROR, 'the secondary dirty pfn list is not ascending');
      }
      return { type: 'SECONDARY_DIRTY', pfns: r.pfns };
    }
    if (r.kind === 'OPTIONAL' && r.type === CHECKPOINT_ACK_RECORD && this.acks) {
      try {
        return { type: 'CHECKPOINT_ACK', seq: decodeAckBody(r.body) };
      } catch (e) {
        return asCoordinatorError(e, CoordinatorErrorCode.PEER_STREAM_ERROR, 'bad ACK');
      }
    }
    if (r.kind === 'OPTIONAL' && r.type === PAGE_RESEND_REQUEST_RECORD && this.answersResends) {
      try {
        this.resend(decodeResendRequest(r.body, this.o.domain.pageCount));
        return null;
      } catch (e) {
        return asCoordinatorError(e, CoordinatorErrorCode.PEER_STREAM_ERROR, 'bad PAGE_RESEND_REQUEST');
      }
    }
    if (r.kind === 'OPTIONAL') return new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `unnegotiated optional record 0x${r.type.toString(16)} on the back channel`);
    return new CoordinatorError(CoordinatorErrorCode.MISPLACED_RECORD, `record ${r.kind} does not belong on the back channel`);
  }

  /**
   * Whether a PAGE_RESEND_REQUEST can be answered: with page deltas, and where the primary sends nothing newer
   * before the secondary confirms the checkpoint (COLO's READY, Remus' ACK), so the copy as sent is the
   * checkpoint's (page-resend.ts).
   */
  private get answersResends(): boolean {
    return this.deltas !== undefined && (this.o.mode === 'colo' || this.acks);
  }

  /** The pages `pfns` whole, as the checkpoint in flight has them, on the main stream (PAGE_RESEND). */
  private resend(pfns: number[]): void {
    if (this.cp) this.cp.resentPages += pfns.length;
    this.o.logger?.warn({ pages: pfns.length, firstPfn: pfns[0] }, 'the secondary lacks the base of some delta pages: resending them whole');
    this.run('resend pages', async () => {
      for (const body of encodeResend(pfns, this.deltas!.sentPage)) {
        await this.write(encodeRecord({ layer: 'libxl', kind: 'OPTIONAL', type: PAGE_RESEND_RECORD, body }));
      }
    });
  }

  // ------------------------------------------------------------------------------------------ writing

  private async write(bytes: Uint8Array): Promise<void> {
    if (this.aborted) return;
    if (this.cp) this.cp.bytes += bytes.length;
    await this.o.send(bytes);
  }

  private get zeroCopy(): boolean {
    return this.o.sendPieces !== undefined && this.o.whenWritten !== undefined;
  }

  /**
   * PAGE_DATA for `pfns`, `pagesPerRecord` pages a record, then `trailer` (records that end the checkpoint) if
   * given. With sendPieces each record goes out as its header plus views of the guest's pages (copying every
   * page into a fresh record buffer cost the primary a copy and, worse, page faults on new memory for every
   * byte: about 0.7 s of a 1 GiB synchronisation), the trailer in the same call as the last record; otherwise
   * each record is encoded into one buffer.
   */
  private async writePages(
    pfns: ArrayLike<number>,
    progress?: { pagesSent: number },
    trailer?: Uint8Array,
    wholeForDeltas?: ReadonlySet<number>,
    source?: PageCapture,
  ): Promise<void> {
    const d = this.o.domain;
    const pageOf = source ? source.page : (pfn: number) => d.page(pfn);
    // A checkpoint's pages (never the synchronisation's: a running guest's pages may change under the send) go
    // as deltas where that is smaller; the rest go whole below, and the copy of what was sent follows them.
    if (this.deltas && wholeForDeltas) {
      const split = this.deltas.split(pfns, pageOf, wholeForDeltas);
      for (const body of split.bodies) {
        await this.write(encodeRecord({ layer: 'libxc', kind: 'OPTIONAL', type: PAGE_DELTA_RECORD, body }));
      }
      // Pages that did not change cost nothing: counted with the deltas (an empty one), sent as none.
      if (this.cp) this.cp.deltaPages += split.deltaPages + split.unchanged;
      pfns = split.whole;
    }
    const per = Math.min(MAX_PFNS_PER_PAGE_DATA, Math.max(1, this.o.pagesPerRecord ?? DEFAULT_PAGES_PER_RECORD));
    const pageRun = source ? source.pages : d.pages ? (first: number, count: number) => d.pages!(first, count) : undefined;
    const opts = { batch: per, pageRun };
    const sendPieces = this.zeroCopy ? this.o.sendPieces! : undefined;
    let trailerSent = false;
    for (let i = 0; i < pfns.length && !this.aborted; i += per) {
      const end = Math.min(pfns.length, i + per);
      const batch = pfns instanceof Uint32Array ? pfns.subarray(i, end) : Array.prototype.slice.call(pfns, i, end);
      // A checkpoint's whole pages become delta bases; of the synchronisation's only zero pages (PageDeltaSender).
      if (wholeForDeltas) this.deltas?.remember(batch, pageOf);
      else this.deltas?.synchronised(batch, pageOf);
      if (!sendPieces) {
        await this.write(encodePageData(batch, pageOf, opts));
        if (progress) progress.pagesSent += batch.length;
        continue;
      }
      const [pieces] = pageDataRecordPieces(batch, pageOf, opts);
      if (trailer && i + per >= pfns.length) {
        pieces!.push(trailer);
        trailerSent = true;
      }
      if (this.cp) for (const p of pieces!) this.cp.bytes += p.length;
      await sendPieces(pieces!);
      if (progress) progress.pagesSent += batch.length;
    }
    if (trailer && !trailerSent) await this.write(trailer);
  }
}
